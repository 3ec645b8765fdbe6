"""A client that leaves a stream releases the upstream at once, and says nothing about the provider."""

from __future__ import annotations

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, wait_for
from tests.integration.v1.helpers import user


def test_client_leaving_a_stream_releases_the_upstream_before_its_next_chunk(
    v1_gateway: ServerThread, sims: SimCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    sims["openai"].set_faults(chunk_delay_ms=1000)  # ~7 words: the whole stream takes seconds
    health = v1_gateway.gateway.health
    body = {"model": "openai:gpt-4o-mini", "messages": [user("a b c d e")], "stream": True}
    with (
        httpx.Client(base_url=v1_gateway.url, timeout=10) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_bytes()  # kept: dropping the iterator would close the connection
        first = next(chunks)
        assert b"chat.completion.chunk" in first
        assert health.inflight("openai") == 1
    # The connection is closed here; the next upstream chunk is a second away.
    released_after = wait_for(lambda: health.inflight("openai") == 0, 5.0)
    assert released_after is not None
    assert released_after < 0.5
    stats = health.view("openai")["stats"]
    assert stats["errors"] == 0  # a client leaving is no verdict on the provider
    assert health.view("openai")["breaker"]["state"] == "closed"
    out: list[str] = []

    def logged() -> bool:  # the request's log line says so (written just after the release)
        out.append(capsys.readouterr().out)
        return "client_disconnected=True" in "".join(out)

    assert wait_for(logged, 2.0) is not None
