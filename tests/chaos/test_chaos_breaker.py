"""Chaos: a primary outage, a flapping primary, and every candidate down (breakers on a fake clock)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx

from tests.chaos.conftest import RigFactory
from tests.chaos.support import FALLBACK, PRIMARY, Rig

FAIL_MAX = 3
RESET_S = 30.0
# minCalls above anything these tests send: the breakers trip on consecutive failures only.
OUTAGE_HEALTH = {
    "breaker": {"failMax": FAIL_MAX, "resetTimeout": "30s", "maxResetTimeout": "120s"},
    "minCalls": 1000,
}


def _burst(gw: Rig, url: str, n: int) -> list[httpx.Response]:
    """``n`` requests at once, each from its own client."""

    def one(_: int) -> httpx.Response:
        return gw.ask(url, "burst", client=gw.client())

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_outage_opens_the_breaker_at_fail_max_probes_once_and_closes_after_recovery(
    rig: RigFactory,
) -> None:
    gw = rig(health=OUTAGE_HEALTH)
    openai = gw.sims["openai"]
    url = gw.session()
    answers: list[dict[str, Any]] = [gw.ok(url) for _ in range(3)]
    assert {a["servedModel"] for a in answers} == {PRIMARY}

    openai.set_faults(status_always=503)
    calls_before = openai.request_count
    for _ in range(FAIL_MAX):  # closed until exactly failMax consecutive failures
        assert gw.breaker("openai") == "closed"
        answers.append(gw.ok(url))
    assert gw.breaker("openai") == "open"
    assert openai.request_count - calls_before == FAIL_MAX

    # Open: the primary is not called at all, every client is served by the fallback.
    opened_calls = openai.request_count
    answers += [gw.ok(url) for _ in range(10)]
    burst = _burst(gw, url, 10)
    assert openai.request_count == opened_calls

    # Reset timeout over, primary still down and slow: exactly one probe among concurrent requests.
    openai.set_faults(latency_ms=300)
    gw.clock.advance(RESET_S + 0.1)
    burst += _burst(gw, url, 10)
    assert openai.request_count == opened_calls + 1
    assert gw.breaker("openai") == "open"
    reopened = gw.provider("openai")["breaker"]["resetTimeoutSeconds"]
    assert reopened == 2 * RESET_S  # a failed probe: a longer open period

    # Recovery: nothing changes before the reset timeout; the first request after it closes.
    openai.clear_faults()
    gw.clock.advance(reopened - 0.5)
    answers.append(gw.ok(url))
    assert openai.request_count == opened_calls + 1
    assert gw.breaker("openai") == "open"
    gw.clock.advance(0.6)
    probe = gw.ok(url)
    assert probe["servedModel"] == PRIMARY
    assert gw.breaker("openai") == "closed"
    probes = 2
    assert openai.request_count - opened_calls <= probes
    answers += [gw.ok(url) for _ in range(3)]
    assert {a["servedModel"] for a in answers[-3:]} == {PRIMARY}

    assert all(r.status_code == 200 for r in burst)
    assert {r.json()["routing"]["servedModel"] for r in burst} == {FALLBACK}
    metrics = gw.metrics()
    transitions = {
        state: metrics.value("gateway_breaker_transitions_total", provider="openai", to_state=state)
        for state in ("open", "half-open", "closed")
    }
    assert transitions == {"open": 2, "half-open": 2, "closed": 1}


def test_flapping_primary_gets_growing_open_periods_capped_and_clients_never_fail(
    rig: RigFactory,
) -> None:
    gw = rig(
        health={
            "breaker": {"failMax": 2, "resetTimeout": "10s", "maxResetTimeout": "40s"},
            "minCalls": 1000,
        }
    )
    openai = gw.sims["openai"]
    url = gw.session()
    statuses: list[int] = []
    open_periods: list[float] = []
    for _ in range(5):
        openai.set_faults(status_always=503)  # down ...
        while gw.breaker("openai") != "open":
            statuses.append(gw.ask(url).status_code)
        open_periods.append(gw.provider("openai")["breaker"]["resetTimeoutSeconds"])
        statuses += [gw.ask(url).status_code for _ in range(3)]
        openai.clear_faults()  # ... up again: the probe closes the breaker
        gw.clock.advance(open_periods[-1] + 0.1)
        response = gw.ask(url)
        statuses.append(response.status_code)
        assert response.json()["routing"]["servedModel"] == PRIMARY
        assert gw.breaker("openai") == "closed"

    assert open_periods == [10, 20, 40, 40, 40]
    assert statuses.count(200) / len(statuses) >= 0.999

    # Stable for longer than the longest open period: the next trip starts from the base again.
    gw.clock.advance(100)
    openai.set_faults(status_always=503)
    while gw.breaker("openai") != "open":
        assert gw.ask(url).status_code == 200
    assert gw.provider("openai")["breaker"]["resetTimeoutSeconds"] == 10


def test_all_candidates_down_is_one_attempt_each_then_503_with_retry_after(
    rig: RigFactory,
) -> None:
    gw = rig(health=OUTAGE_HEALTH)
    openai, gemini = gw.sims["openai"], gw.sims["gemini"]
    url = gw.session()
    openai.set_faults(status_always=503)
    gemini.set_faults(status_always=500)

    failed = gw.ask(url)
    assert failed.status_code == 503
    assert int(failed.headers["retry-after"]) >= 1
    body = failed.json()
    assert body["code"] == "no_provider_available"
    assert [(a["provider"], a["outcome"]) for a in body["details"]["attempts"]] == [
        ("openai", "server_error"),
        ("gemini", "server_error"),
    ]
    assert (openai.request_count, gemini.request_count) == (1, 1)

    # One healthy candidate is enough, at once.
    gemini.clear_faults()
    recovered = gw.ok(url)
    assert recovered["servedModel"] == FALLBACK
    assert (openai.request_count, gemini.request_count) == (2, 2)


def test_all_breakers_open_is_a_single_panic_attempt_and_recovers_with_the_first_healthy(
    rig: RigFactory,
) -> None:
    gw = rig(health=OUTAGE_HEALTH)
    openai, gemini = gw.sims["openai"], gw.sims["gemini"]
    url = gw.session()
    openai.set_faults(status_always=503)
    gemini.set_faults(status_always=503)
    while gw.breaker("openai") != "open" or gw.breaker("gemini") != "open":
        calls = openai.request_count + gemini.request_count
        failed = gw.ask(url)
        assert failed.status_code == 503
        assert "retry-after" in failed.headers
        attempted = [a for a in failed.json()["details"]["attempts"] if a["outcome"] != "skipped"]
        assert len({a["provider"] for a in attempted}) == len(attempted)  # at most one each
        assert openai.request_count + gemini.request_count - calls == len(attempted) <= 2

    calls = openai.request_count + gemini.request_count
    failed = gw.ask(url)  # every breaker open: one panic attempt, on the one opened first
    assert failed.status_code == 503
    assert int(failed.headers["retry-after"]) >= 1
    assert openai.request_count + gemini.request_count - calls == 1

    openai.clear_faults()
    routing = gw.ok(url)
    assert routing["reason"] == "panic"
    assert routing["servedModel"] == PRIMARY

    # The other candidate healthy instead: back as soon as its breaker lets a probe through.
    openai.set_faults(status_always=503)
    gemini.clear_faults()
    gw.clock.advance(RESET_S + 0.1)
    routing = gw.ok(url)
    assert routing["servedModel"] == FALLBACK
