"""Pure parts of the simulator: answers, fault plans, redaction and specs."""

from __future__ import annotations

import threading

import pytest

from gateway.sim.answer import Prompt, Turn, compose_answer, split_chunks
from gateway.sim.faults import FaultError, FaultPlan, Faults
from gateway.sim.requestlog import REDACTED, RequestLog, redact_headers, redact_query
from gateway.sim.spec import SimSpec


def test_chunks_are_words_with_their_following_whitespace() -> None:
    assert split_chunks("Hello  big\nworld") == ("Hello  ", "big\n", "world")
    assert "".join(split_chunks("  lead and trail  ")) == "  lead and trail  "
    assert split_chunks("") == ()


def test_answer_echoes_last_user_turn_and_counts_words() -> None:
    prompt = Prompt(
        (
            Turn("system", "be nice"),
            Turn("user", "first"),
            Turn("assistant", "ok"),
            Turn("user", "a b"),
        )
    )
    answer = compose_answer("p", "m", prompt)
    assert answer.text == "Hello from p/m: you said 'a b'"
    assert answer.prompt_tokens == 6
    assert answer.completion_tokens == 7
    assert not answer.truncated


def test_answer_is_truncated_by_max_tokens() -> None:
    answer = compose_answer("p", "m", Prompt((Turn("user", "x"),), max_tokens=2), reply="a b c d")
    assert (answer.text, answer.completion_tokens, answer.truncated) == ("a b ", 2, True)


def test_faults_update_merges_and_draw_consumes_the_queue() -> None:
    faults = Faults()
    faults.update(statuses=[503, 429], retry_after=2)
    faults.update(latency_ms=10)
    assert faults.plan == FaultPlan(statuses=(503, 429), retry_after=2, latency_ms=10)
    assert [faults.draw().status for _ in range(3)] == [503, 429, None]
    assert faults.draw().latency_ms == 10
    assert faults.reset().is_clear


@pytest.mark.parametrize(
    "changes",
    [
        {"statuses": [200]},
        {"statuses": "503"},
        {"status_always": 600},
        {"latency_ms": -5},
        {"hang": 1},
        {"cut_after_chunks": 1.5},
        {"error_message": 3},
    ],
)
def test_invalid_fault_values_are_rejected(changes: dict[str, object]) -> None:
    faults = Faults()
    with pytest.raises(FaultError):
        faults.update(**changes)  # type: ignore[arg-type]
    assert faults.plan.is_clear


def test_json_fault_fields_are_camel_case() -> None:
    faults = Faults()
    plan = faults.update_from_json({"statusAlways": 503, "stallAfterChunks": 2})
    assert plan.status_always == 503
    assert plan.stall_after_chunks == 2
    assert plan.to_json()["statusAlways"] == 503
    with pytest.raises(FaultError, match="status_always"):
        faults.update_from_json({"status_always": 503})


def test_each_queued_status_is_drawn_exactly_once_across_threads() -> None:
    faults = Faults()
    faults.update(statuses=[500] * 200)
    drawn: list[int | None] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            status = faults.draw().status
            with lock:
                drawn.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert drawn.count(500) == 200
    assert drawn.count(None) == 200


def test_secrets_are_redacted_in_headers_and_query() -> None:
    headers = redact_headers(
        {"authorization": "Bearer sk-1", "x-api-key": "k", "x-goog-api-key": "g", "accept": "*/*"}
    )
    assert headers == {
        "authorization": f"Bearer {REDACTED}",
        "x-api-key": REDACTED,
        "x-goog-api-key": REDACTED,
        "accept": "*/*",
    }
    assert redact_query({"key": "g", "alt": "sse"}) == {"key": REDACTED, "alt": "sse"}

    log = RequestLog()
    seq = log.add(
        time=0.0,
        method="GET",
        path="/",
        query={"key": "g"},
        headers={"api-key": "a"},
        model=None,
        stream=False,
        body=None,
    )
    log.set_status(seq, 204)
    (record,) = log.snapshot()
    assert (record.status, record.query["key"], record.headers["api-key"]) == (
        204,
        REDACTED,
        REDACTED,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "wire": "openai"},
        {"name": "a:b", "wire": "openai"},
        {"name": "a", "wire": "soap"},
        {"name": "a", "wire": "openai", "port": 70000},
        {"name": "a", "wire": "openai", "prefix": "v1/"},
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        SimSpec(**kwargs)  # type: ignore[arg-type]
