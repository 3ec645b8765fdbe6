"""GET /v1/models: every name ``model`` accepts, with its availability, for the SDK's models API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.config.settings import Settings
from tests.integration.support import ServerThread


def _by_id(client: openai.OpenAI) -> dict[str, dict[str, Any]]:
    return {m.id: m.to_dict() for m in client.models.list()}


def test_models_list_names_models_aliases_and_routes(sdk: openai.OpenAI) -> None:
    models = _by_id(sdk)
    assert set(models) == {
        "openai:gpt-4o-mini",
        "gemini:gemini-1.5-flash",
        "anthropic:claude-3-5-haiku-latest",
        "groq:llama3-70b-8192",
        "gemini:flash-1.5",
        "groq:llama3-70b",
        "anthropic:haiku",
        "chat",
    }
    for model in models.values():
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"]
        assert model["available"] is True
    assert models["openai:gpt-4o-mini"]["owned_by"] == "openai"
    assert models["openai:gpt-4o-mini"]["provider"] == "openai"
    assert models["gemini:flash-1.5"]["kind"] == "alias"
    assert models["gemini:flash-1.5"]["target"] == "gemini:gemini-1.5-flash"
    assert models["chat"]["kind"] == "route"
    assert models["chat"]["candidates"] == ["openai:gpt-4o-mini", "gemini:gemini-1.5-flash"]


def test_models_show_what_is_not_available(
    v1_settings: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> None:
    env = {k: v for k, v in sim_env.items() if k != "GEMINI_API_KEY"}
    server = start_gateway(v1_settings(env=env))
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/admin/providers/groq/drain").status_code == 200
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0) as client:
        models = _by_id(client)
    assert models["gemini:gemini-1.5-flash"]["available"] is False
    assert models["gemini:gemini-1.5-flash"]["status"] == "not-configured"
    assert models["gemini:flash-1.5"]["available"] is False
    assert models["groq:llama3-70b"]["available"] is False
    assert models["groq:llama3-70b"]["status"] == "drained"
    assert models["openai:gpt-4o-mini"]["available"] is True
    assert models["chat"]["available"] is True  # its primary still is


def test_retrieve_one_model(sdk: openai.OpenAI) -> None:
    model = sdk.models.retrieve("openai:gpt-4o-mini")
    assert model.id == "openai:gpt-4o-mini"
    assert model.owned_by == "openai"
    assert sdk.models.retrieve("chat").owned_by == "gateway"
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("nope:nothing")
    assert caught.value.code == "model_not_found"
