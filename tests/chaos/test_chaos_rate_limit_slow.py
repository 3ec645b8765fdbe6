"""Chaos: a primary answering 429 with Retry-After, and a primary far over its latency SLO."""

from __future__ import annotations

import time

from tests.chaos.conftest import RigFactory
from tests.chaos.support import FALLBACK, PRIMARY, p95

RETRY_AFTER_S = 20


def test_429_with_retry_after_keeps_the_primary_out_for_exactly_that_long(
    rig: RigFactory,
) -> None:
    gw = rig(health={"minCalls": 1})
    openai = gw.sims["openai"]
    url = gw.session()
    openai.set_faults(statuses=[429], retry_after=RETRY_AFTER_S)

    first = gw.ok(url)
    assert [a["outcome"] for a in first["attempts"]] == ["rate_limited", "success"]
    assert first["servedModel"] == FALLBACK
    for _ in range(RETRY_AFTER_S - 1):  # every second of the cooling period, on the fake clock
        gw.clock.advance(1)
        routing = gw.ok(url)
        assert (routing["servedModel"], routing["reason"]) == (FALLBACK, "cooling")
    gw.clock.advance(0.9)
    assert gw.ok(url)["reason"] == "cooling"
    assert openai.request_count == 1

    gw.clock.advance(0.2)
    assert gw.ok(url)["servedModel"] == PRIMARY
    assert openai.request_count == 2

    # A rate limit says nothing about the provider's health.
    view = gw.provider("openai")
    assert view["breaker"]["state"] == "closed"
    assert view["stats"]["errors"] == 0
    assert view["stats"]["errorRate"] == 0
    metrics = gw.metrics()
    assert (
        metrics.value("gateway_upstream_requests_total", provider="openai", outcome="rate_limited")
        == 1
    )
    cooled = metrics.value("gateway_fallbacks_total", from_provider="openai", reason="cooling")
    assert cooled == RETRY_AFTER_S + 1  # every answer while cooling, the first one included
    assert metrics.value("gateway_breaker_transitions_total", provider="openai") == 0


def test_primary_far_over_its_slo_is_demoted_and_clients_see_the_fallbacks_latency(
    rig: RigFactory,
) -> None:
    gw = rig(
        health={"minCalls": 3, "window": "60s"},
        routes={
            "fast": {
                "primary": "openai:gpt-4o-mini",
                "fallbacks": ["groq:llama3-70b-8192"],
                "sloMs": 100,
            }
        },
    )
    openai = gw.sims["openai"]
    url = gw.session()
    openai.set_faults(latency_ms=500)
    route = {"X-Gateway-Route": "fast"}
    for _ in range(3):  # enough calls for a p95
        assert gw.ok(url, **route)["servedModel"] == PRIMARY

    client_ms: list[float] = []
    for _ in range(30):
        started = time.monotonic()
        routing = gw.ok(url, **route)
        client_ms.append((time.monotonic() - started) * 1000)
        assert (routing["servedModel"], routing["reason"]) == ("groq:llama3-70b-8192", "slow")
        assert routing["fallback"] is True
    assert openai.request_count == 3

    primary_p95 = gw.provider("openai")["stats"]["latencyP95Ms"]
    fallback_p95 = gw.provider("groq")["stats"]["latencyP95Ms"]
    assert primary_p95 >= 500
    # The client pays the fallback's latency plus the gateway's own overhead, not the primary's.
    assert p95(client_ms) <= fallback_p95 + 150
    assert p95(client_ms) < primary_p95 / 2
    metrics = gw.metrics()
    assert (
        metrics.value("gateway_routing_decisions_total", reason="slow", decision="fallback") == 30
    )
    assert (
        metrics.value(
            "gateway_fallbacks_total", from_provider="openai", to_provider="groq", reason="slow"
        )
        == 30
    )

    # Once the slow calls leave the statistics window, the primary gets its chance again.
    openai.clear_faults()
    gw.clock.advance(61)
    assert gw.ok(url, **route)["servedModel"] == PRIMARY
