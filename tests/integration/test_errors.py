"""Every bad input gets our JSON error shape with a stable code and the field at fault."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from gateway.config.settings import Settings
from tests.integration.support import ROUTING_AGENT, ServerThread, new_session


def _assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == code
    assert body["message"]
    assert "Traceback" not in response.text
    if field is not None:
        assert body["details"]["field"] == field


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        (b"{not json", "invalid_request", "$"),
        (b"", "invalid_request", "$"),
        (b"[]", "invalid_request", "$"),
        (b'{"model": "openai:gpt-4o-mini"}', "invalid_request", "name"),
        (b'{"name": "a"}', "invalid_request", "model"),
        (b'{"name": 5, "model": "openai:gpt-4o-mini"}', "invalid_request", "name"),
        (b'{"name": "  ", "model": "openai:gpt-4o-mini"}', "invalid_request", "name"),
        (b'{"name": "a", "model": "gpt-4o-mini"}', "invalid_request", "model"),
        (b'{"name": "a", "model": "nope:gpt"}', "unknown_provider", "model"),
        (b'{"name": "a", "model": {"provider": "openai"}}', "invalid_request", "model.modelId"),
        (
            b'{"name": "a", "model": {"provider": "", "modelId": "x"}}',
            "invalid_request",
            "model.provider",
        ),
        (
            b'{"name": "a", "model": "openai:x", "config": {"fallbackModel": "zzz:y"}}',
            "unknown_provider",
            "fallbacks[0]",
        ),
        (
            b'{"name": "a", "model": "openai:x", "config": {"fallbackModels": "x"}}',
            "invalid_request",
            "config.fallbackModels",
        ),
    ],
)
def test_bad_agent_bodies_are_rejected_with_the_field(
    client: httpx.Client, payload: bytes, code: str, field: str
) -> None:
    response = client.post("/agents", content=payload, headers={"content-type": "application/json"})
    _assert_error(response, 400, code, field)


def test_duplicate_agent_name_is_a_conflict(client: httpx.Client) -> None:
    assert client.post("/agents", json=ROUTING_AGENT).status_code == 201
    twin = dict(ROUTING_AGENT, name=ROUTING_AGENT["name"].upper())
    _assert_error(client.post("/agents", json=twin), 409, "conflict")


def test_malformed_and_unknown_ids(client: httpx.Client) -> None:
    _assert_error(client.get("/agents/not-a-uuid"), 400, "invalid_request", "agentId")
    _assert_error(client.get(f"/agents/{uuid.uuid4()}"), 404, "agent_not_found")
    agent_id = client.post("/agents", json=ROUTING_AGENT).json()["agentId"]
    _assert_error(
        client.post(f"/agents/{agent_id}/sessions/xyz/messages", json={"content": "x"}),
        400,
        "invalid_request",
        "sessionId",
    )
    _assert_error(
        client.post(f"/agents/{agent_id}/sessions/{uuid.uuid4()}/messages", json={"content": "x"}),
        404,
        "session_not_found",
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "content"),
        ({"role": "user", "content": ""}, "content"),
        ({"role": "wizard", "content": "x"}, "role"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ],
)
def test_bad_messages_are_rejected_before_any_upstream_call(
    client: httpx.Client, payload: dict[str, object], field: str
) -> None:
    url = new_session(client)
    _assert_error(client.post(url, json=payload), 400, "invalid_request", field)
    assert client.get(url).json()["messages"] == []


def test_oversized_body_is_413(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> None:
    server = start_gateway(settings_factory(env=sim_env, server={"maxBodyBytes": 2048}))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        url = new_session(client)
        response = client.post(url, json={"role": "user", "content": "x" * 5000})
    _assert_error(response, 413, "payload_too_large")


def test_unknown_route_and_method(client: httpx.Client) -> None:
    _assert_error(client.get("/nope"), 404, "not_found")
    _assert_error(client.put("/agents"), 405, "method_not_allowed")


def test_message_count_and_max_tokens_limits_name_the_limit(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> None:
    settings = settings_factory(env=sim_env, server={"maxMessages": 3, "maxOutputTokens": 100})
    server = start_gateway(settings)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        url = new_session(client)
        many = {"messages": [{"role": "user", "content": "x"}] * 4}
        response = client.post(url, json=many)
        _assert_error(response, 413, "payload_too_large", "messages")
        assert "server.maxMessages" in response.json()["message"]
        big = {"name": "big", "model": {"provider": "openai", "modelId": "m", "maxTokens": 101}}
        _assert_error(client.post("/agents", json=big), 400, "invalid_request", "model.maxTokens")
        chat = client.post(
            "/v1/chat/completions",
            json={
                "model": "openai:m",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 500,
            },
        )
        assert chat.status_code == 400
        assert chat.json()["error"]["param"] == "max_tokens"
