"""Several `gateway serve` processes sharing one PostgreSQL, and graceful shutdown of one process."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.support.process import GatewayProcess

AGENT = {
    "name": "replicated",
    "model": "openai:gpt-4o-mini",
    "config": {"fallbackModel": "gemini:flash-1.5"},
}


def _config(storage_url: str, **server: Any) -> dict[str, Any]:
    return {
        "storage": {"url": storage_url},
        "logging": {"format": "json"},
        "server": {"shutdownDelay": "500ms", **server},
    }


@pytest.fixture
def replicas(postgres_url: str, sims: SimCluster, tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    procs = [
        GatewayProcess(tmp_path, _config(postgres_url), sims.env(), name=f"r{i}") for i in range(2)
    ]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both start at once: schema race
        list(pool.map(lambda p: p.start(), procs))
    yield procs
    for proc in procs:
        proc.stop()


@pytest.mark.slow
def test_two_replicas_share_agents_and_one_ordered_history(replicas: list[GatewayProcess]) -> None:
    one, two = replicas
    agent_id = httpx.post(f"{one.url}/agents", json=AGENT).json()["agentId"]
    assert httpx.get(f"{two.url}/agents/{agent_id}").json()["name"] == "replicated"
    session = httpx.post(f"{two.url}/agents/{agent_id}/sessions").json()["sessionId"]
    path = f"/agents/{agent_id}/sessions/{session}/messages"
    for i in range(10):
        replica = replicas[i % 2]
        reply = httpx.post(f"{replica.url}{path}", json={"content": f"message {i}"}, timeout=10)
        assert reply.status_code == 200
    for replica in replicas:
        history = httpx.get(f"{replica.url}{path}").json()["messages"]
        users = [m["content"] for m in history if m["role"] == "user"]
        assert users == [f"message {i}" for i in range(10)]
        assert [m["role"] for m in history] == ["user", "assistant"] * 10


@pytest.mark.slow
def test_replica_killed_mid_request_loses_no_acknowledged_message(
    replicas: list[GatewayProcess], sims: SimCluster
) -> None:
    one, two = replicas
    agent_id = httpx.post(f"{one.url}/agents", json=AGENT).json()["agentId"]
    session = httpx.post(f"{one.url}/agents/{agent_id}/sessions").json()["sessionId"]
    path = f"/agents/{agent_id}/sessions/{session}/messages"
    acknowledged = []
    for i in range(3):
        assert httpx.post(f"{one.url}{path}", json={"content": f"ack {i}"}).status_code == 200
        acknowledged.append(f"ack {i}")
    sims["openai"].set_faults(latency_ms=3000)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            httpx.post, f"{one.url}{path}", json={"content": "in flight"}, timeout=10
        )
        time.sleep(0.5)
        one.kill()  # kill -9 while the upstream call is in flight
        with pytest.raises(httpx.TransportError):
            pending.result()
    sims["openai"].clear_faults()
    assert httpx.post(f"{two.url}{path}", json={"content": "after"}, timeout=10).status_code == 200
    acknowledged.append("after")
    history = httpx.get(f"{two.url}{path}").json()["messages"]
    users = [m["content"] for m in history if m["role"] == "user"]
    # Every acknowledged message is there exactly once, in order; the in-flight one was stored
    # before the upstream call (it was received), never duplicated.
    assert [u for u in users if u != "in flight"] == acknowledged
    assert users.count("in flight") <= 1
    assert httpx.get(f"{two.url}/agents/{agent_id}/sessions/{session}").json()["state"] in {
        "completed",
        "streaming",
    }


@pytest.mark.slow
def test_sigterm_drains_a_stream_and_exits_zero(sims: SimCluster, tmp_path: Path) -> None:
    proc = GatewayProcess(tmp_path, _config(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"), sims.env())
    proc.start()
    try:
        agent_id = httpx.post(f"{proc.url}/agents", json=AGENT).json()["agentId"]
        session = httpx.post(f"{proc.url}/agents/{agent_id}/sessions").json()["sessionId"]
        path = f"{proc.url}/agents/{agent_id}/sessions/{session}/messages?stream=true"
        sims["openai"].set_faults(chunk_delay_ms=150)
        frames: list[dict[str, Any]] = []
        with httpx.stream(
            "POST", path, json={"content": "one two three four five six seven eight"}, timeout=20
        ) as response:
            assert response.status_code == 207
            lines = response.iter_lines()
            for line in lines:
                if line.startswith("data:"):
                    frames.append(json.loads(line[5:]))
                    break
            assert proc.proc is not None
            proc.proc.send_signal(15)  # SIGTERM mid-stream
            ready = httpx.get(f"{proc.url}/ready", timeout=2)
            assert ready.status_code == 503
            assert ready.json()["draining"] is True
            for line in lines:
                if line.startswith("data:"):
                    frames.append(json.loads(line[5:]))
        assert frames[-1]["type"] == "end"
        assert proc.proc.wait(timeout=20) == 0
    finally:
        proc.stop()
