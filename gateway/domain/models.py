"""Model names: ``provider:model`` parsing, aliases from ``models:`` and route names from ``routes:``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from gateway.config.schema import RouteSection
from gateway.config.settings import ProviderRuntime
from gateway.errors import InvalidRequestError, UnknownProviderError


class ModelRef(msgspec.Struct, frozen=True):
    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_model_name(name: str, *, field: str = "model") -> ModelRef:
    """Split on the first colon: ``ollama:qwen3:4b`` is provider ``ollama``, model ``qwen3:4b``."""
    provider, sep, model = name.strip().partition(":")
    if not sep or not provider or not model:
        raise InvalidRequestError(
            f"model {name!r} must be written 'provider:model' or name a route", field=field
        )
    return ModelRef(provider.lower(), model)


class Candidate(msgspec.Struct, frozen=True):
    """One model the router may try: the name as asked for, and what it resolves to."""

    requested: str
    ref: ModelRef


class Plan(msgspec.Struct, frozen=True):
    """The ordered candidates for one request, and the route they came from, if any."""

    requested: str
    candidates: tuple[Candidate, ...]
    route: str | None = None
    route_settings: RouteSection | None = None


class ModelCatalog:
    """Resolves the names clients use into candidates, against the configured providers."""

    def __init__(
        self,
        providers: Mapping[str, ProviderRuntime],
        aliases: Mapping[str, str],
        routes: Mapping[str, RouteSection],
    ) -> None:
        self._providers = providers
        self._aliases = {k.lower(): v for k, v in aliases.items()}
        self._routes = routes

    @property
    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    @property
    def routes(self) -> Mapping[str, RouteSection]:
        return self._routes

    def resolve(self, name: str, *, field: str = "model") -> ModelRef:
        target = self._aliases.get(name.strip().lower(), name)
        ref = parse_model_name(target, field=field)
        if ref.provider not in self._providers:
            raise UnknownProviderError(
                f"unknown provider {ref.provider!r} in model {name!r}",
                field=field,
                details={"known": sorted(self._providers)},
            )
        return ref

    def is_route(self, name: str) -> bool:
        return name in self._routes

    def plan(self, model: str, fallbacks: Sequence[str] = (), *, field: str = "model") -> Plan:
        """Primary (or the route's candidates) then the given fallbacks, without duplicates."""
        names: list[tuple[str, str]] = []
        route = self._routes.get(model)
        if route is not None:
            names.append((route.primary, field))
            names.extend((f, field) for f in route.fallbacks)
        else:
            names.append((model, field))
        names.extend((f, f"fallbacks[{i}]") for i, f in enumerate(fallbacks))
        seen: set[ModelRef] = set()
        candidates = []
        for name, where in names:
            ref = self.resolve(name, field=where)
            if ref not in seen:
                seen.add(ref)
                candidates.append(Candidate(name, ref))
        return Plan(
            requested=model,
            candidates=tuple(candidates),
            route=model if route is not None else None,
            route_settings=route,
        )
