"""The gateway's ASGI middleware, listed in one place (``middleware_for``).

``RequestContextMiddleware`` gives every request an id (echoing a sane ``X-Request-ID``), sets it as
the logging's ``REQUEST_ID`` so every log line carries it, adds it to the response, and at the end
writes the one log line per request and the request-duration and overhead metrics.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, HTTPScope, Message, Middleware, Receive, Scope, Send

from gateway.api.auth import ClientAuthMiddleware
from gateway.api.backpressure import ConcurrencyLimiter, ConcurrencySlots
from gateway.api.context import SCOPE_KEY, RequestContext
from gateway.config.settings import Settings
from gateway.observability.logging import REQUEST_ID
from gateway.redaction import Made

log = structlog.get_logger("gateway.access")

# Client-chosen ids are echoed only when they are short and plain (no CR/LF, no log injection).
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}
_QUIET_PATHS = frozenset({"/metrics", "/health", "/ready"})


def _api_of(path: str) -> str:
    if path.startswith("/v1/"):
        return "openai"
    if path.startswith("/agents"):
        return "agentos"
    if path.startswith("/admin"):
        return "admin"
    return "ops"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        supplied = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
                break
        request_id = (
            supplied if supplied and _SAFE_ID.match(supplied) else Made(os.urandom(16).hex())
        )
        path: str = scope["path"]
        context = RequestContext(request_id=request_id, api=_api_of(path), body_send=send)
        scope[SCOPE_KEY] = context  # type: ignore[literal-required,unused-ignore]
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                context.response_started = True
                # This is the one place that sets X-Request-ID: no answer carries its own.
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        bound = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._finish(scope, context, status, time.perf_counter() - started)
            REQUEST_ID.reset(bound)

    def _finish(
        self, scope: HTTPScope, context: RequestContext, status: int, duration: float
    ) -> None:
        gateway = getattr(scope["app"].state, "gateway", None)
        routing = context.routing
        upstream_s = 0.0
        fields: dict[str, Any] = {}
        if routing is not None:
            upstream_s = sum(a.latency_ms for a in routing.attempts) / 1000
            served = routing.served
            fields = {
                "route": routing.plan.route,
                "requested_model": routing.plan.requested,
                "served_model": str(served.ref) if served else None,
                "provider": served.ref.provider if served else None,
                "decision": routing.decision,
                "reason": routing.reason,
                "attempts": routing.upstream_calls,
            }
        if gateway is not None and context.client is not None and routing and routing.usage:
            gateway.client_limits.charge_tokens(context.client.name, routing.usage.total_tokens)
        if gateway is not None:
            metrics = gateway.metrics
            status_class = _STATUS_CLASSES.get(status // 100, "5xx")
            metrics.histogram(metrics.request_duration, context.api, status_class).observe(duration)
            if routing is not None:
                overhead = max(0.0, duration - upstream_s)
                metrics.histogram(metrics.overhead, context.api).observe(overhead)
        if context.client_disconnected:
            fields["client_disconnected"] = True
        if scope["path"] in _QUIET_PATHS and status < 400:
            return
        log.info(
            "request",
            request_id=context.request_id,
            method=scope["method"],
            path=scope["path"],
            api=context.api,
            status=status,
            duration_ms=round(duration * 1000, 2),
            upstream_ms=round(upstream_s * 1000, 2),
            **fields,
        )


def middleware_for(settings: Settings) -> list[Middleware]:
    """Every middleware of the app, outermost first: the request id is on every answer, 429s included;
    clients are authenticated before they may wait for a concurrency slot. The model-call answers
    send their body messages past these layers (``RequestContext.body_send``): a middleware here may
    look at the response start, but never rewrite a body."""
    runtime = settings.runtime
    return [
        RequestContextMiddleware,
        ClientAuthMiddleware,
        DefineMiddleware(
            ConcurrencyLimiter,
            # one count for the whole app, whichever route's stack a request goes through
            slots=ConcurrencySlots(
                limit=runtime.max_concurrent_requests, queue=runtime.request_queue
            ),
        ),
    ]
