"""A client that leaves (a stream, or a plain message it stopped waiting for): the upstream is
released at once and the session says so."""

from __future__ import annotations

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, new_session, wait_for


def test_client_leaving_an_agentos_stream_releases_the_upstream_and_marks_the_session(
    gateway: ServerThread, sims: SimCluster
) -> None:
    sims["openai"].set_faults(chunk_delay_ms=1000)  # the whole answer would take seconds
    health = gateway.gateway.health
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        url = new_session(client)
        with client.stream("POST", url + "?stream=true", json={"content": "a b c d"}) as response:
            assert response.status_code == 207
            chunks = response.iter_bytes()  # kept: dropping the iterator would close the connection
            assert b'"type":"token"' in next(chunks).replace(b" ", b"")
            assert health.inflight("openai") == 1
        released_after = wait_for(lambda: health.inflight("openai") == 0, 5.0)
        assert released_after is not None
        assert released_after < 0.5  # not at the next upstream chunk, a second later
        session_url = url.removesuffix("/messages")
        errored = wait_for(lambda: client.get(session_url).json()["state"] == "errored", 2.0)
        assert errored is not None
        messages = client.get(url).json()["messages"]
        assert [m["role"] for m in messages] == ["user"]  # the question is kept, no half answer
    assert health.view("openai")["stats"]["errors"] == 0


def test_client_timing_out_on_an_agentos_message_abandons_the_call_and_marks_the_session(
    gateway: ServerThread, sims: SimCluster
) -> None:
    sims["openai"].set_faults(latency_ms=5000)
    health = gateway.gateway.health
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        url = new_session(client)
        with pytest.raises(httpx.ReadTimeout):
            client.post(url, json={"content": "hello"}, timeout=0.5)
        released_after = wait_for(lambda: health.inflight("openai") == 0, 5.0)
        assert released_after is not None
        assert released_after < 1.0
        session_url = url.removesuffix("/messages")
        errored = wait_for(lambda: client.get(session_url).json()["state"] == "errored", 2.0)
        assert errored is not None
        messages = client.get(url).json()["messages"]
        assert [m["role"] for m in messages] == ["user"]
    assert health.view("openai")["stats"]["errors"] == 0
