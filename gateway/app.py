"""``create_app(settings) -> Litestar``: wiring only (controllers, middleware, lifespan, errors)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from prometheus_client import CollectorRegistry

from gateway import __version__
from gateway.api.agentos import AgentController
from gateway.api.direct import GatewayApp, direct_route
from gateway.api.errors import EXCEPTION_HANDLERS
from gateway.api.middleware import middleware_for
from gateway.api.openai import (
    OpenAIController,
    document_chat_completions,
    serve_chat_completions,
)
from gateway.api.ops import AdminController, OpsController
from gateway.config.settings import Settings
from gateway.providers.registry import TransportFactory
from gateway.redaction import Redactor
from gateway.state import SettingsLoader, running_gateway


def create_app(
    settings: Settings,
    *,
    metrics_registry: CollectorRegistry | None = None,
    settings_loader: SettingsLoader | None = None,
    transport_factory: TransportFactory | None = None,
    health_clock: Callable[[], float] = time.monotonic,
    redactor: Redactor | None = None,
) -> Litestar:
    """The app for ``settings``. Tests inject a metrics registry, a reload source, fake upstream
    transports and a fake clock for breakers and statistics."""
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with running_gateway(
            settings,
            registry,
            settings_loader=settings_loader,
            transport_factory=transport_factory,
            health_clock=health_clock,
            redactor=redactor,
        ) as gateway:
            app.state.gateway = gateway
            yield

    middleware = middleware_for(settings)
    app = GatewayApp(
        # The model-call route also goes past Litestar's router, under the same middleware.
        direct={
            "/v1/chat/completions": direct_route(
                serve_chat_completions,
                middleware,
                EXCEPTION_HANDLERS,
            )
        },
        route_handlers=[AgentController, OpenAIController, OpsController, AdminController],
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=settings.server.max_body_bytes,
        logging_config=None,
        openapi_config=OpenAPIConfig(title="LLM gateway", version=__version__),
    )
    document_chat_completions(app)
    return app
