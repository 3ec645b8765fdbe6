"""Chaos: client errors pass through untouched, and the gateway's own overload spares the providers."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tests.chaos.conftest import RigFactory
from tests.chaos.support import PRIMARY, Rig


def _health_untouched(gw: Rig) -> None:
    for name in ("openai", "gemini"):
        view = gw.provider(name)
        assert view["breaker"]["state"] == "closed"
        assert view["stats"]["errors"] == 0
    metrics = gw.metrics()
    assert metrics.value("gateway_breaker_transitions_total") == 0
    assert metrics.value("gateway_fallbacks_total") == 0
    assert gw.sims["gemini"].request_count == 0


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "invalid 'temperature': must be <= 2"),
        (413, "request entity too large"),
        (422, "unprocessable: messages[0].content must be a string"),
        (400, "context_length_exceeded: maximum context length is 8192 tokens"),
    ],
    ids=["400", "413", "422", "context-length"],
)
def test_client_errors_pass_through_unchanged_without_failover(
    rig: RigFactory, status: int, message: str
) -> None:
    gw = rig(health={"breaker": {"failMax": 1}, "minCalls": 1})
    url = gw.session()
    gw.sims["openai"].set_faults(statuses=[status] * 3, error_message=message)
    for _ in range(3):  # failMax 1 and minCalls 1: a single counted failure would open the breaker
        response = gw.ask(url)
        assert response.status_code == status
        body = response.json()
        assert body["code"] == "upstream_client_error"
        assert message in body["message"]
        assert body["details"]["upstreamStatus"] == status
    _health_untouched(gw)
    metrics = gw.metrics()
    assert (
        metrics.value("gateway_upstream_requests_total", provider="openai", outcome="client_error")
        == 3
    )
    assert gw.ok(url)["servedModel"] == PRIMARY


def test_gateway_overload_is_refused_with_retry_after_and_breakers_stay_unchanged(
    rig: RigFactory,
) -> None:
    gw = rig(runtime={"maxConcurrentRequests": 2, "requestQueue": 2})
    url = gw.session()
    gw.sims["openai"].set_faults(latency_ms=1200)  # all ten arrive while the first four run
    clients = [gw.client() for _ in range(10)]

    def one(client: httpx.Client) -> httpx.Response:
        return gw.ask(url, client=client)

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(one, clients))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 4 + [429] * 6  # two running, two queued, the rest refused at once
    for refused in (r for r in responses if r.status_code != 200):
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "backpressure"
    assert gw.sims["openai"].request_count == 4
    _health_untouched(gw)
    metrics = gw.metrics()
    assert metrics.value("gateway_upstream_requests_total") == 4
    assert metrics.value("gateway_routing_decisions_total") == 4
