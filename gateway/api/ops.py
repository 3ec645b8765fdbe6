"""Operations endpoints: health, readiness, metrics, the provider matrix, and admin actions."""

from __future__ import annotations

import hmac
import time
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from gateway import __version__
from gateway.api.context import gateway_of
from gateway.api.responses import json_response
from gateway.config.loader import ConfigError
from gateway.errors import InvalidRequestError, NotFoundError, UnauthorizedError
from gateway.state import Gateway

AnyRequest = Request[Any, Any, Any]


def provider_health(gateway: Gateway) -> list[dict[str, Any]]:
    rows = []
    health = gateway.health
    for name, runtime in sorted(gateway.settings.providers.items()):
        skip = health.skip_reason(name)
        status = runtime.status
        if status == "available" and health.key_rejected(name):
            status = "not-configured"
        rows.append(
            {
                "provider": name,
                "status": status,
                "capabilities": list(runtime.capabilities),
                "missingEnv": runtime.missing_env if runtime.status == "not-configured" else None,
                "reason": skip,
                "routable": skip is None,
                "drained": health.is_drained(name),
                "keyRejected": health.key_rejected(name),
                "inFlight": health.inflight(name),
                **health.view(name),
            }
        )
    return rows


class OpsController(Controller):
    @get("/health")
    async def health(self, request: AnyRequest) -> Response[bytes]:
        gateway = gateway_of(request)
        return json_response(
            {
                "status": "ok",
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "version": __version__,
                "providers": provider_health(gateway),
            }
        )

    @get("/ready")
    async def ready(self, request: AnyRequest) -> Response[bytes]:
        gateway = gateway_of(request)
        draining = bool(getattr(request.app.state, "draining", False))
        store_ok = await gateway.store.ping()
        routable = [p["provider"] for p in provider_health(gateway) if p["routable"]]
        ready = store_ok and not draining
        body = {
            "ready": ready,
            "draining": draining,
            "store": store_ok,
            "routableProviders": routable,
        }
        return json_response(body, 200 if ready else 503)

    @get("/metrics")
    async def metrics(self, request: AnyRequest) -> Response[bytes]:
        gateway = gateway_of(request)
        registry = gateway.metrics.registry
        if gateway.settings.metrics_multiproc_dir:
            # Several workers: every worker's samples, merged from the shared directory.
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, gateway.settings.metrics_multiproc_dir)  # type: ignore[no-untyped-call]
        return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @get("/providers")
    async def providers(self, request: AnyRequest) -> Response[bytes]:
        gateway = gateway_of(request)
        rows = provider_health(gateway)
        for row in rows:
            runtime = gateway.settings.providers[row["provider"]]
            row["wire"] = runtime.wire
            row["endpoint"] = runtime.endpoint
            row["models"] = list(runtime.models)
        return json_response({"providers": rows})


def _check_admin(request: AnyRequest, gateway: Gateway) -> None:
    token = gateway.settings.admin_token
    if not gateway.settings.auth.enabled and token is None:
        return
    supplied = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(supplied.encode(), token.encode()):
        raise UnauthorizedError("admin token required")


class AdminController(Controller):
    path = "/admin"

    @post("/reload", status_code=200)
    async def reload(self, request: AnyRequest) -> Response[bytes]:
        gateway = gateway_of(request)
        _check_admin(request, gateway)
        try:
            settings = await gateway.reload()
        except ConfigError as exc:
            raise InvalidRequestError(f"reload refused: {exc}", field="config") from None
        return json_response(
            {
                "reloaded": True,
                "providers": {name: p.status for name, p in settings.providers.items()},
            }
        )

    @post("/providers/{name:str}/{action:str}", status_code=200)
    async def provider_action(
        self, request: AnyRequest, name: FromPath[str], action: FromPath[str]
    ) -> Response[bytes]:
        gateway = gateway_of(request)
        _check_admin(request, gateway)
        if name not in gateway.settings.providers:
            raise NotFoundError(f"unknown provider {name[:64]!r}", details={"provider": name[:64]})
        if action == "drain":
            gateway.health.drain(name)
        elif action == "restore":
            gateway.health.restore(name)
        else:
            raise NotFoundError(f"unknown action {action[:32]!r}; use drain or restore")
        return json_response({"provider": name, "drained": gateway.health.is_drained(name)})
