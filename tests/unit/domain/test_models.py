"""Model names: first-colon split, aliases, routes, unknown providers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.config.settings import Settings
from gateway.domain.models import ModelCatalog, ModelRef, parse_model_name
from gateway.errors import InvalidRequestError, UnknownProviderError


def test_split_on_first_colon_only() -> None:
    assert parse_model_name("ollama:qwen3:4b") == ModelRef("ollama", "qwen3:4b")
    assert str(parse_model_name("openai:gpt-4o-mini")) == "openai:gpt-4o-mini"


@pytest.mark.parametrize("name", ["gpt-4o", ":gpt", "openai:", ""])
def test_names_without_provider_and_model_are_invalid(name: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_model_name(name, field="model")
    assert info.value.field == "model"


@pytest.fixture
def catalog(settings_factory: Callable[..., Settings]) -> ModelCatalog:
    settings = settings_factory(
        models={
            "gemini:flash-1.5": "gemini:gemini-1.5-flash",
            "groq:llama3-70b": "groq:llama3-70b-8192",
        },
        routes={"chat": {"primary": "openai:gpt-4o-mini", "fallbacks": ["gemini:flash-1.5"]}},
    )
    return ModelCatalog(settings.providers, settings.models, settings.routes)


def test_alias_resolves_to_real_model_id(catalog: ModelCatalog) -> None:
    assert catalog.resolve("gemini:flash-1.5") == ModelRef("gemini", "gemini-1.5-flash")
    assert catalog.resolve("groq:llama3-70b") == ModelRef("groq", "llama3-70b-8192")


def test_unknown_provider_is_rejected_with_the_field(catalog: ModelCatalog) -> None:
    with pytest.raises(UnknownProviderError) as info:
        catalog.plan("openai:gpt-4o-mini", ["nope:x"])
    assert info.value.field == "fallbacks[0]"
    assert info.value.code == "unknown_provider"


def test_plan_is_primary_then_fallbacks_without_duplicates(catalog: ModelCatalog) -> None:
    plan = catalog.plan("openai:gpt-4o-mini", ["gemini:flash-1.5", "gemini:gemini-1.5-flash"])
    assert [str(c.ref) for c in plan.candidates] == [
        "openai:gpt-4o-mini",
        "gemini:gemini-1.5-flash",
    ]
    assert plan.candidates[1].requested == "gemini:flash-1.5"
    assert plan.route is None


def test_bare_route_name_uses_the_route_candidates(catalog: ModelCatalog) -> None:
    plan = catalog.plan("chat", ["groq:llama3-70b"])
    assert plan.route == "chat"
    assert [str(c.ref) for c in plan.candidates] == [
        "openai:gpt-4o-mini",
        "gemini:gemini-1.5-flash",
        "groq:llama3-70b-8192",
    ]
