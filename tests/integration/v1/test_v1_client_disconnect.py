"""A client that gives up on a plain (non-streamed) completion: the upstream call is abandoned."""

from __future__ import annotations

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, wait_for
from tests.integration.v1.helpers import user


def test_client_timing_out_abandons_the_upstream_call(
    v1_gateway: ServerThread, sims: SimCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    sims["openai"].set_faults(latency_ms=5000)  # the answer would take 5 s
    health = v1_gateway.gateway.health
    body = {"model": "openai:gpt-4o-mini", "messages": [user("hello")]}
    with (
        httpx.Client(base_url=v1_gateway.url, timeout=0.5) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post("/v1/chat/completions", json=body)
    # httpx closed the connection when it timed out: the gateway stops waiting for the provider.
    released_after = wait_for(lambda: health.inflight("openai") == 0, 5.0)
    assert released_after is not None
    assert released_after < 1.0
    view = health.view("openai")
    assert view["stats"]["errors"] == 0  # a client leaving is no verdict on the provider
    assert view["breaker"]["state"] == "closed"
    out: list[str] = []

    def logged() -> bool:
        out.append(capsys.readouterr().out)
        text = "".join(out)
        return "client_disconnected=True" in text and "status=499" in text

    assert wait_for(logged, 2.0) is not None
