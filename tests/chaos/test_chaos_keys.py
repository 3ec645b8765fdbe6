"""Chaos: a provider key removed at runtime, and a key the provider starts rejecting."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass

from tests.chaos.conftest import RigFactory
from tests.chaos.support import FALLBACK, PRIMARY, wait_for


@dataclass(frozen=True)
class Answer:
    sent: float  # monotonic time the request left the client
    done: float
    status: int
    served: str | None
    reason: str | None


def test_key_removed_at_runtime_fails_no_request_and_the_primary_gets_no_call_until_restored(
    rig: RigFactory,
) -> None:
    gw = rig()
    openai = gw.sims["openai"]
    key = gw.env["OPENAI_API_KEY"]
    stop = threading.Event()
    answers: list[Answer] = []
    lock = threading.Lock()

    def client_loop(url: str) -> None:
        own = gw.client()
        while not stop.is_set():
            sent = time.monotonic()
            response = gw.ask(url, "load", client=own)
            routing = response.json().get("routing") if response.status_code == 200 else None
            answer = Answer(
                sent,
                time.monotonic(),
                response.status_code,
                routing["servedModel"] if routing else None,
                routing["reason"] if routing else None,
            )
            with lock:
                answers.append(answer)

    def count() -> int:
        with lock:
            return len(answers)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(client_loop, gw.session()) for _ in range(4)]
        try:
            wait_for(lambda: count() >= 20)
            del gw.env["OPENAI_API_KEY"]
            assert gw.reload()["openai"] == "not-configured"
            gw.wait_idle("openai")  # calls admitted before the reload have finished
            gone, calls_when_gone, gone_at = time.monotonic(), openai.request_count, count()
            wait_for(lambda: count() >= gone_at + 60)
            calls_while_gone = openai.request_count - calls_when_gone

            gw.env["OPENAI_API_KEY"] = key
            restoring = time.monotonic()
            assert gw.reload()["openai"] == "available"
            restored, calls_when_restored, restored_at = (
                time.monotonic(),
                openai.request_count,
                count(),
            )
            wait_for(lambda: count() >= restored_at + 40)
        finally:
            stop.set()
        for worker in workers:
            worker.result()

    assert {a.status for a in answers} == {200}
    assert calls_while_gone == 0
    # Requests sent after the key was gone and answered before it came back: all by the fallback.
    during = {(a.served, a.reason) for a in answers if a.sent > gone and a.done < restoring}
    assert during == {(FALLBACK, "not_configured")}
    # Requests sent once the key is back: all by the primary again.
    after = {a.served for a in answers if a.sent > restored}
    assert after == {PRIMARY}
    assert openai.request_count > calls_when_restored


def test_rejected_key_fails_over_once_then_keeps_the_primary_out_until_reload(
    rig: RigFactory,
) -> None:
    gw = rig()
    openai = gw.sims["openai"]
    url = gw.session()
    assert gw.ok(url)["servedModel"] == PRIMARY
    before = gw.metrics()
    assert before.value("gateway_provider_up", provider="openai") == 1

    openai.set_faults(status_always=401)
    first = gw.ok(url)
    assert [a["outcome"] for a in first["attempts"]] == ["auth_error", "success"]
    assert first["servedModel"] == FALLBACK
    for _ in range(10):
        routing = gw.ok(url)
        assert routing["reason"] == "not_configured"
        assert routing["attempts"][0]["outcome"] == "skipped"
    assert openai.request_count == 2  # the healthy call and the one 401

    after = gw.metrics()
    # What an alert watches: the auth-error counter moved and the provider is down.
    assert (
        after.value("gateway_upstream_requests_total", provider="openai", outcome="auth_error") == 1
    )
    assert after.value("gateway_provider_up", provider="openai") == 0
    view = gw.provider("openai")
    assert view["keyRejected"] is True
    assert view["status"] == "not-configured"

    openai.clear_faults()  # the operator fixed the key; the gateway learns it at the reload
    assert gw.ok(url)["servedModel"] == FALLBACK
    assert openai.request_count == 2
    assert gw.reload()["openai"] == "available"
    assert gw.metrics().value("gateway_provider_up", provider="openai") == 1
    assert gw.ok(url)["servedModel"] == PRIMARY
    assert openai.request_count == 3
