"""Client keys, scopes, admin token and per-key rate limits; rejected requests never reach a provider."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from gateway.cli import main
from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread

AGENT = {
    "name": "a",
    "model": "openai:gpt-4o-mini",
    "config": {"fallbackModel": "gemini:flash-1.5"},
}
KEYS = {
    "TEAM_A_KEY": "team-a-secret-0001",
    "TEAM_B_KEY": "team-b-secret-0002",
    "GATEWAY_ADMIN_TOKEN": "admin-token-0003",
}


@pytest.fixture
def server(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> ServerThread:
    auth = {
        "enabled": True,
        "clientKeys": [
            {"name": "team-a", "keyEnv": "TEAM_A_KEY", "requestsPerMinute": 5},
            {"name": "team-b", "keyEnv": "TEAM_B_KEY", "models": ["groq:*"]},
            {
                "name": "hashed",
                "keySha256": hashlib.sha256(b"hashed-key-0004").hexdigest(),
                "tokensPerMinute": 30,
            },
        ],
    }
    return start_gateway(settings_factory(env={**sim_env, **KEYS}, auth=auth))


def _client(server: ServerThread, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, timeout=10, headers=headers)


@pytest.mark.parametrize("key", [None, "wrong-key", "team-a-secret-000"])
def test_request_without_a_valid_key_is_401_before_any_upstream_call(
    server: ServerThread, sims: SimCluster, key: str | None
) -> None:
    with _client(server, key) as client:
        for method, path, body in [
            ("POST", "/agents", AGENT),
            ("GET", "/agents", None),
            (
                "POST",
                "/v1/chat/completions",
                {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
            ),
            ("GET", "/v1/models", None),
        ]:
            response = client.request(method, path, json=body)
            assert response.status_code == 401, (path, response.text)
            assert (
                response.json().get("code", response.json().get("error", {}).get("code"))
                == "unauthorized"
            )
        assert client.get("/health").status_code == 200  # operations stay open
    assert sum(s.request_count for s in sims) == 0


def test_x_api_key_header_is_accepted(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEYS["TEAM_A_KEY"]}) as client:
        assert client.post("/agents", json=AGENT).status_code == 201


def test_key_outside_its_scope_is_403(server: ServerThread, sims: SimCluster) -> None:
    with _client(server, KEYS["TEAM_B_KEY"]) as client:
        refused = client.post("/agents", json=AGENT)
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        ok = client.post("/agents", json={"name": "g", "model": "groq:llama3-70b-8192"})
        assert ok.status_code == 201
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 403
        assert chat.json()["error"]["code"] == "forbidden"
    with _client(server, KEYS["TEAM_A_KEY"]) as team_a:
        agent_id = team_a.post("/agents", json=AGENT).json()["agentId"]
        session = team_a.post(f"/agents/{agent_id}/sessions").json()["sessionId"]
    with _client(server, KEYS["TEAM_B_KEY"]) as client:
        url = f"/agents/{agent_id}/sessions/{session}/messages"
        assert client.post(url, json={"content": "x"}).status_code == 403
        assert client.get(url).json()["messages"] == []  # nothing stored for a refused message
    assert sims["openai"].request_count == 0


def test_requests_per_minute_limit_gives_429_with_retry_after(
    server: ServerThread, sims: SimCluster
) -> None:
    with _client(server, KEYS["TEAM_A_KEY"]) as client:
        statuses = [client.get("/agents").status_code for _ in range(7)]
        assert statuses == [200] * 5 + [429] * 2
        refused = client.get("/agents")
        assert refused.json()["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
    with _client(server, KEYS["TEAM_B_KEY"]) as other:  # limits are per key
        assert other.get("/agents").status_code == 200


def test_tokens_per_minute_limit_counts_usage(server: ServerThread) -> None:
    with _client(server, "hashed-key-0004") as client:
        body = {
            "model": "openai:gpt-4o-mini",
            "messages": [{"role": "user", "content": "a b c d e"}],
        }
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 200
        used = first.json()["usage"]["total_tokens"]
        assert used > 0
        statuses = [
            client.post("/v1/chat/completions", json=body).status_code
            for _ in range(30 // used + 2)
        ]
        assert statuses[-1] == 429
        assert 200 in statuses


def test_admin_routes_need_the_admin_token(server: ServerThread) -> None:
    with _client(server, KEYS["TEAM_A_KEY"]) as client:
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/providers/openai/drain").status_code == 401
    with _client(server, KEYS["GATEWAY_ADMIN_TOKEN"]) as admin:
        assert admin.post("/admin/providers/openai/drain").json()["drained"] is True
        assert admin.post("/admin/providers/openai/restore").json()["drained"] is False


def test_serving_beyond_loopback_without_auth_is_refused(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--port", "1", "--env-file", "/nonexistent"])
    assert code == 1
    assert "may only listen on loopback" in capsys.readouterr().err
