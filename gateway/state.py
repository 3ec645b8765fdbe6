"""The running gateway: every long-lived object of one app, built in its lifespan.

One ``Gateway`` per app (and per test): its own metrics registry, store, provider clients and health.
``reload()`` re-reads configuration and ``.env`` and swaps providers in place, with no restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from prometheus_client import CollectorRegistry

from gateway.api.auth import Authenticator, ClientRateLimits
from gateway.config.settings import Settings
from gateway.domain.agents import AgentService
from gateway.domain.models import ModelCatalog
from gateway.observability.metrics import GatewayMetrics, LabelBounds
from gateway.providers.registry import ProviderRegistry, TransportFactory
from gateway.redaction import Redactor
from gateway.routing.health import HealthBook
from gateway.routing.router import Router
from gateway.store.base import Store
from gateway.store.sql import open_store

log = structlog.get_logger("gateway")

SettingsLoader = Callable[[], Settings]


def label_bounds(settings: Settings) -> LabelBounds:
    models = set(settings.models) | set(settings.models.values())
    for route in settings.routes.values():
        models.update([route.primary, *route.fallbacks])
    models.update(f"{p.name}:{m}" for p in settings.providers.values() for m in p.models)
    models.update(settings.routes)
    return LabelBounds(settings.providers, models, settings.routes)


class Gateway:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics_registry: CollectorRegistry,
        registry: ProviderRegistry,
        *,
        settings_loader: SettingsLoader | None,
        health_clock: Callable[[], float] = time.monotonic,
        redactor: Redactor | None = None,
    ) -> None:
        self.redactor = redactor or Redactor()
        self.redactor.update(settings.secrets())
        self.settings = settings
        self.store = store
        self.metrics = GatewayMetrics(metrics_registry, label_bounds(settings))
        self.providers = registry
        self.health = HealthBook(settings.providers, self.metrics, settings.health, health_clock)
        self.catalog = ModelCatalog(settings.providers, settings.models, settings.routes)
        self.router = Router(
            registry,
            self.health,
            self.metrics,
            settings.providers,
            attempt_timeout_s=settings.runtime.router.provider_timeout,
            request_timeout_s=settings.runtime.request_timeout,
        )
        self.agents = AgentService(store, self.catalog, self.router, settings.memory.token_window)
        self.auth = Authenticator(settings)
        self.client_limits = ClientRateLimits()
        self._loader = settings_loader
        self._reload_lock = asyncio.Lock()
        registry.apply(settings.providers)

    def apply(self, settings: Settings) -> None:
        """Swap in new settings: providers, keys, aliases and routes take effect for the next request."""
        self.settings = settings
        self.redactor.update(settings.secrets())
        self.metrics.bounds = label_bounds(settings)
        self.providers.apply(settings.providers)
        self.health.update_providers(settings.providers)
        self.router.update_providers(settings.providers)
        self.catalog = ModelCatalog(settings.providers, settings.models, settings.routes)
        self.agents.update(self.catalog)
        self.auth = Authenticator(settings)
        log.info(
            "config_applied",
            providers={name: p.status for name, p in settings.providers.items()},
        )

    async def reload(self) -> Settings:
        if self._loader is None:
            return self.settings
        async with self._reload_lock:
            settings = self._loader()
            self.apply(settings)
            return settings


@asynccontextmanager
async def running_gateway(
    settings: Settings,
    metrics_registry: CollectorRegistry,
    *,
    settings_loader: SettingsLoader | None = None,
    transport_factory: TransportFactory | None = None,
    health_clock: Callable[[], float] = time.monotonic,
    redactor: Redactor | None = None,
) -> AsyncIterator[Gateway]:
    registry = ProviderRegistry(transport_factory, stack=settings.runtime.router.http_client)
    async with open_store(settings.storage.url) as store:
        try:
            yield Gateway(
                settings,
                store,
                metrics_registry,
                registry,
                settings_loader=settings_loader,
                health_clock=health_clock,
                redactor=redactor,
            )
        finally:
            await registry.aclose()
