"""The Agno-Go guide's flow over the simulators, in both payload shapes, through a real server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ROUTING_AGENT, ServerThread, new_session


def test_documented_payload_shapes_get_an_answer_from_the_primary(client: httpx.Client) -> None:
    created = client.post("/agents", json=ROUTING_AGENT)
    assert created.status_code == 201
    agent_id = created.json()["agentId"]
    assert uuid.UUID(agent_id)

    session = client.post(f"/agents/{agent_id}/sessions", json={"userId": "u1"})
    assert session.status_code == 201
    body = session.json()
    assert body["state"] == "idle" and body["agentId"] == agent_id and body["userId"] == "u1"

    reply = client.post(
        f"/agents/{agent_id}/sessions/{body['sessionId']}/messages",
        json={"role": "user", "content": "Hello there"},
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["content"] == "Hello from openai/gpt-4o-mini: you said 'Hello there'"
    assert data["state"] == "completed"
    assert data["usage"]["promptTokens"] > 0 and data["usage"]["completionTokens"] > 0
    assert data["routing"]["servedModel"] == "openai:gpt-4o-mini"
    assert data["routing"]["fallback"] is False
    assert reply.headers["x-gateway-provider"] == "openai"
    assert reply.headers["x-gateway-model"] == "openai:gpt-4o-mini"
    assert reply.headers["x-gateway-fallback"] == "false"
    assert reply.headers["x-gateway-attempts"] == "1"
    assert reply.headers["x-request-id"]


def test_code_payload_shapes_are_accepted(client: httpx.Client, sims: SimCluster) -> None:
    agent = {
        "name": "coded",
        "model": {
            "provider": "groq",
            "modelId": "llama3-70b-8192",
            "temperature": 0.2,
            "maxTokens": 64,
        },
        "tools": {"registered": [], "enabled": [], "mcpEndpoints": []},
        "memory": {"storeType": "memory", "tokenWindow": 512},
        "metadata": {"team": "x"},
    }
    created = client.post("/agents", json=agent)
    assert created.status_code == 201, created.text
    agent_id = created.json()["agentId"]
    fetched = client.get(f"/agents/{agent_id}").json()
    assert fetched["model"] == "groq:llama3-70b-8192"
    assert fetched["modelOptions"] == {"temperature": 0.2, "maxTokens": 64}
    assert fetched["createdAt"].endswith("Z")

    session = client.post(f"/agents/{agent_id}/sessions").json()
    assert session["metadata"]["tokenWindow"] == 512
    reply = client.post(
        f"/agents/{agent_id}/sessions/{session['sessionId']}/messages",
        json={"messages": [{"role": "user", "content": "from code"}]},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["routing"]["servedModel"] == "groq:llama3-70b-8192"
    sent = sims["groq"].requests[-1]
    assert sent.model == "llama3-70b-8192"


def test_streaming_frames_follow_agno_go(client: httpx.Client) -> None:
    url = new_session(client)
    with client.stream(
        "POST", f"{url}?stream=true", json={"role": "user", "content": "one two"}
    ) as r:
        assert r.status_code == 207
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-gateway-model"] == "openai:gpt-4o-mini"
        lines = list(r.iter_lines())
    events = [line for line in lines if line.startswith("event:")]
    frames = [json.loads(line[5:]) for line in lines if line.startswith("data:")]
    assert events and all(e == "event: message" for e in events)
    assert all(f["type"] == "token" and f["done"] is False for f in frames[:-1])
    text = "".join(f["delta"] for f in frames[:-1])
    assert text == "Hello from openai/gpt-4o-mini: you said 'one two'"
    end = frames[-1]
    assert end["type"] == "end" and end["done"] is True and end["finishReason"] == "stop"
    assert end["usage"]["completionTokens"] > 0
    history = client.get(url).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[1]["content"] == text


def test_history_is_sent_upstream_and_trimmed_to_the_token_window(
    client: httpx.Client, sims: SimCluster
) -> None:
    agent = dict(ROUTING_AGENT, name="short-memory", memory={"tokenWindow": 80})
    url = new_session(client, agent)
    for i in range(6):
        assert (
            client.post(
                url, json={"role": "user", "content": f"message number {i} " * 3}
            ).status_code
            == 200
        )
    last = sims["openai"].requests[-1]
    assert last.body is not None
    sent = last.body["messages"]
    assert sent[-1]["content"].startswith("message number 5")
    assert 1 < len(sent) < 12  # trimmed: 11 messages exist, only the recent ones fit
    assert len(client.get(url).json()["messages"]) == 12


def test_conversation_survives_a_gateway_restart(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> None:
    settings = settings_factory(env=sim_env)
    first = start_gateway(settings)
    with httpx.Client(base_url=first.url, timeout=10) as http:
        url = new_session(http)
        assert http.post(url, json={"role": "user", "content": "remember me"}).status_code == 200
    first.stop()

    second = start_gateway(settings)
    with httpx.Client(base_url=second.url, timeout=10) as http:
        history = http.get(url).json()["messages"]
        assert history[0]["content"] == "remember me"
        assert len(history) == 2
        assert http.post(url, json={"role": "user", "content": "again"}).status_code == 200
        assert len(http.get(url).json()["messages"]) == 4


def test_agent_and_session_management_routes(client: httpx.Client) -> None:
    agent_id = client.post("/agents", json=ROUTING_AGENT).json()["agentId"]
    assert [a["agentId"] for a in client.get("/agents").json()["agents"]] == [agent_id]
    patched = client.patch(f"/agents/{agent_id}", json={"description": "updated"})
    assert patched.status_code == 200 and patched.json()["description"] == "updated"
    assert patched.json()["model"] == "openai:gpt-4o-mini"
    session_id = client.post(f"/agents/{agent_id}/sessions").json()["sessionId"]
    assert len(client.get(f"/agents/{agent_id}/sessions").json()["sessions"]) == 1
    assert client.get(f"/agents/{agent_id}/sessions/{session_id}").json()["state"] == "idle"
    assert client.delete(f"/agents/{agent_id}/sessions/{session_id}").status_code == 204
    assert client.get(f"/agents/{agent_id}/sessions/{session_id}").status_code == 404
    assert client.delete(f"/agents/{agent_id}").status_code == 204
    assert client.get(f"/agents/{agent_id}").status_code == 404


def test_health_reports_providers_in_agno_go_shape(client: httpx.Client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["version"] and body["ts"]
    by_name = {p["provider"]: p for p in body["providers"]}
    assert by_name["openai"]["status"] == "available"
    assert by_name["cerebras"]["status"] == "not-configured"
    assert by_name["cerebras"]["missingEnv"] == "CEREBRAS_API_KEY"
    assert by_name["ollama"]["missingEnv"] == "OLLAMA_ENDPOINT"


def test_request_id_is_echoed_when_sent(client: httpx.Client) -> None:
    assert (
        client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = client.get("/health", headers={"X-Request-ID": "bad\tid"}).headers["x-request-id"]
    assert generated != "bad\tid" and len(generated) == 32
