"""The gateway's own concurrency limit: queue, then 429 with Retry-After; providers untouched."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import httpx
import pytest

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, new_session

SlowGateway = Callable[..., ServerThread]


@pytest.fixture
def slow_gateway(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
    sims: SimCluster,
) -> SlowGateway:
    """``slow_gateway(limit, queue)``: a gateway with that concurrency limit, before a primary that
    takes 600 ms to answer."""

    def start(limit: int, queue: int) -> ServerThread:
        runtime = {"maxConcurrentRequests": limit, "requestQueue": queue}
        server = start_gateway(settings_factory(env=sim_env, runtime=runtime))
        sims["openai"].set_faults(latency_ms=600)
        return server

    return start


def test_overload_is_refused_with_backpressure_and_breakers_stay_closed(
    slow_gateway: SlowGateway, sims: SimCluster
) -> None:
    server = slow_gateway(limit=2, queue=1)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        url = new_session(client, {"name": "bp", "model": "openai:gpt-4o-mini"})

        def send(_: int) -> httpx.Response:
            return httpx.post(f"{server.url}{url}", json={"content": "hi"}, timeout=10)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(send, range(6)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 200, 429, 429, 429]
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["code"] == "backpressure"
        assert body["error"] == "backpressure"
        assert body["retryAfterMs"] == 1000
        assert body["limit"] == 2
        assert refused.headers["x-request-id"]
        assert sims["openai"].request_count == 3
        health = {p["provider"]: p for p in client.get("/health").json()["providers"]}
        assert health["openai"]["breaker"]["state"] == "closed"
        assert health["openai"]["stats"]["errors"] == 0
        # Operations endpoints are never limited.
        assert client.get("/health").status_code == 200


def test_both_apis_share_one_concurrency_limit(slow_gateway: SlowGateway, sims: SimCluster) -> None:
    server = slow_gateway(limit=1, queue=0)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        url = new_session(client, {"name": "bp", "model": "openai:gpt-4o-mini"})
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            message = pool.submit(client.post, url, json={"content": "hi"})
            deadline = time.monotonic() + 5
            while sims["openai"].request_count == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            chat = client.post(
                "/v1/chat/completions",
                json={
                    "model": "openai:gpt-4o-mini",
                    "messages": [{"role": "user", "content": "x"}],
                },
            )
            assert message.result().status_code == 200
    # The AgentOS message holds the one slot: the OpenAI API's call is refused, not let through.
    assert chat.status_code == 429
    assert chat.json()["error"]["code"] == "backpressure"
    assert sims["openai"].request_count == 1
