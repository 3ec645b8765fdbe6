"""Fixtures for the OpenAI-compatible API: a gateway with declared models, aliases and a route,
driven by the official ``openai`` SDK over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.config.settings import Settings
from tests.integration.support import ServerThread

V1_SECTIONS: dict[str, Any] = {
    "providers": {
        "openai": {"models": ["gpt-4o-mini"]},
        "gemini": {"models": ["gemini-1.5-flash"]},
        "anthropic": {"models": ["claude-3-5-haiku-latest"]},
        "groq": {"models": ["llama3-70b-8192"]},
    },
    "models": {
        "gemini:flash-1.5": "gemini:gemini-1.5-flash",
        "groq:llama3-70b": "groq:llama3-70b-8192",
        "anthropic:haiku": "anthropic:claude-3-5-haiku-latest",
    },
    "routes": {"chat": {"primary": "openai:gpt-4o-mini", "fallbacks": ["gemini:flash-1.5"]}},
}


@pytest.fixture
def v1_settings(
    settings_factory: Callable[..., Settings], sim_env: dict[str, str]
) -> Callable[..., Settings]:
    """``v1_settings(env=None, **sections)`` -> the settings of these tests, over every simulator."""

    def build(env: dict[str, str] | None = None, **sections: Any) -> Settings:
        return settings_factory(env=sim_env if env is None else env, **{**V1_SECTIONS, **sections})

    return build


@pytest.fixture
def v1_gateway(
    v1_settings: Callable[..., Settings], start_gateway: Callable[..., ServerThread]
) -> ServerThread:
    return start_gateway(v1_settings())


@pytest.fixture
def sdk(v1_gateway: ServerThread) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the gateway, without retries (tests assert on errors)."""
    with openai.OpenAI(
        base_url=f"{v1_gateway.url}/v1", api_key="any-key", max_retries=0, timeout=10
    ) as client:
        yield client


@pytest.fixture
def raw(v1_gateway: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=v1_gateway.url, timeout=10) as client:
        yield client
