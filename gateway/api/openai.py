"""OpenAI-compatible API: ``POST /v1/chat/completions`` (plain and SSE) and ``GET /v1/models``.

A drop-in for the official SDKs: ``model`` is a ``provider:model`` name, an alias or a route name;
fallbacks come from the route, the non-standard body field ``fallbacks`` and the
``X-Gateway-Fallbacks`` header. Errors use OpenAI's shape (``gateway.api.errors`` renders every error
under ``/v1/`` that way); routing is reported only in the ``X-Gateway-*`` headers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import structlog
from litestar import Controller, Litestar, Request, Response, asgi, get
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    RequestBody,
    Schema,
)
from litestar.params import FromPath
from litestar.types import ASGIApp, HTTPResponseBodyEvent, Receive, Scope, Send

from gateway.api.answers import JsonAnswer, StreamAnswer
from gateway.api.auth import scope_of
from gateway.api.context import gateway_of, note_routing
from gateway.api.disconnect import while_connected
from gateway.api.limits import check_request_limits
from gateway.api.openai_answers import ChunkBuilder, completion_json, error_frame
from gateway.api.openai_wire import header_fallbacks, parse_chat_body
from gateway.api.raw_request import header, read_body
from gateway.api.responses import json_response
from gateway.domain.models import Plan
from gateway.errors import GatewayError, InvalidRequestError, ModelNotFoundError
from gateway.routing.stream import RoutedStream
from gateway.state import Gateway

log = structlog.get_logger("gateway.api")
AnyRequest = Request[Any, Any, Any]


def plan_for(gateway: Gateway, model: str, fallbacks: Sequence[str]) -> Plan:
    """The candidates for ``model``; a name the gateway cannot serve is OpenAI's 404."""
    try:
        return gateway.catalog.plan(model, fallbacks)
    except InvalidRequestError as exc:
        where = exc.field or "model"
        raise ModelNotFoundError(
            f"{exc.message}; GET /v1/models lists the models this gateway serves",
            details={"field": where},
        ) from None


def needs_translation(gateway: Gateway, plan: Plan) -> bool:
    """True when some candidate is not OpenAI-wire, so parameters go into typed fields."""
    providers = gateway.settings.providers
    for candidate in plan.candidates:
        runtime = providers.get(candidate.ref.provider)
        if runtime is None or runtime.wire != "openai":
            return True
    return False


async def chat_answer(request: AnyRequest) -> ASGIApp:
    """The answer to one ``POST /v1/chat/completions``: JSON, or an SSE relay once routed."""
    gateway = gateway_of(request)
    call = parse_chat_body(await read_body(request, gateway.settings.server.max_body_bytes))
    fallbacks = call.fallbacks + header_fallbacks(header(request, b"x-gateway-fallbacks"))
    params = call.params
    check_request_limits(
        gateway.settings.server,
        messages=len(call.messages),
        max_tokens=params.get("max_completion_tokens", params.get("max_tokens")),
        tokens_field="max_completion_tokens" if "max_completion_tokens" in params else "max_tokens",
    )
    plan = plan_for(gateway, call.model, fallbacks)
    check_scope = scope_of(request)
    if check_scope is not None:
        check_scope(plan)
    chat = call.to_request(translate=needs_translation(gateway, plan))
    router = gateway.router
    if call.stream:
        routed = await while_connected(
            request.scope, request.receive, router.open_stream(plan, chat)
        )
        note_routing(request, routed.record)
        served = routed.record.served
        builder = ChunkBuilder(
            str(served.ref) if served else call.model, include_usage=call.include_usage
        )
        return ChunkStream(routed, builder)
    result, record = await while_connected(
        request.scope, request.receive, router.complete(plan, chat)
    )
    note_routing(request, record)
    served_model = str(record.served.ref) if record.served else call.model
    return JsonAnswer(completion_json(result, served_model), 200, record.headers())


async def serve_chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/chat/completions`` as an ASGI app: the route's handler, under Litestar's router
    or past it (``GatewayApp``)."""
    answer = await chat_answer(Request(scope, receive, send))
    await answer(scope, receive, send)


class OpenAIController(Controller):
    path = "/v1"

    @asgi("/chat/completions", copy_scope=False)
    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An ``@asgi`` route: Litestar's HTTP-route machinery (kwargs and signature models, the
        response conversion) was about 5 % of a call's instructions here. The app's middleware and
        exception handlers apply as to every route; ``document_chat_completions`` puts the route
        back into the OpenAPI document, which leaves ``@asgi`` routes out."""
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            raise MethodNotAllowedException(headers={"Allow": "POST"})
        await serve_chat_completions(scope, receive, send)

    @get("/models")
    async def list_models(self, request: AnyRequest) -> Response[bytes]:
        return json_response({"object": "list", "data": model_entries(gateway_of(request))})

    @get("/models/{model_id:path}")
    async def get_model(self, request: AnyRequest, model_id: FromPath[str]) -> Response[bytes]:
        wanted = model_id.lstrip("/")
        for entry in model_entries(gateway_of(request)):
            if entry["id"] == wanted:
                return json_response(entry)
        raise ModelNotFoundError(
            f"the model {wanted[:128]!r} is not served by this gateway", details={"field": "model"}
        )


class ChunkStream(StreamAnswer):
    """A routed stream relayed as ``chat.completion.chunk`` frames, batch by batch (the frames of
    one upstream read in one write); the end goes out with the end of the body; a late failure is
    an error frame and no ``[DONE]``. The relay loop is this answer's own: no generator between it
    and the routed stream."""

    __slots__ = ("_builder", "_routed")

    def __init__(self, routed: RoutedStream, builder: ChunkBuilder) -> None:
        super().__init__(routed.record.headers())
        self._routed = routed
        self._builder = builder

    async def relay(self, send: Send) -> bytes:
        builder = self._builder
        pending = builder.role()  # sent with the first content, or with whatever ends the stream
        try:
            async for batch in self._routed:
                frames = builder.frames(batch)
                if frames:
                    chunk: HTTPResponseBodyEvent = {
                        "type": "http.response.body",
                        "body": pending + frames,
                        "more_body": True,
                    }
                    await send(chunk)
                    pending = b""
        except GatewayError as exc:
            log.warning("stream_failed_after_first_byte", code=exc.code, api="openai")
            failure = error_frame(exc.status_code, exc.code, exc.message)
            return pending + builder.failed() + failure
        except Exception as exc:
            log.error("stream_failed_unexpectedly", error_type=type(exc).__name__, api="openai")
            failure = error_frame(500, "internal_error", "internal error")
            return pending + builder.failed() + failure
        return pending + builder.end()

    async def aclose(self) -> None:
        # A client that went away leaves the routed stream suspended: close it now, not at GC.
        await self._routed.aclose()


# -- /v1/models ----------------------------------------------------------------------------------


def _availability(gateway: Gateway, provider: str) -> tuple[bool, str]:
    runtime = gateway.settings.providers.get(provider)
    if runtime is None:
        return False, "unknown"
    if not runtime.configured:
        return False, runtime.status
    reason = gateway.health.skip_reason(provider)
    return (True, "available") if reason is None else (False, reason)


def model_entries(gateway: Gateway) -> list[dict[str, Any]]:
    """Every name ``model`` accepts: declared provider models, aliases and routes."""
    created = int(time.time())
    entries: dict[str, dict[str, Any]] = {}

    def add(name: str, kind: str, owner: str, state: tuple[bool, str], **extra: Any) -> None:
        entries.setdefault(
            name,
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": owner,
                "kind": kind,
                "available": state[0],
                "status": state[1],
                **extra,
            },
        )

    for name, runtime in sorted(gateway.settings.providers.items()):
        for model in runtime.models:
            add(f"{name}:{model}", "model", name, _availability(gateway, name), provider=name)
    catalog = gateway.catalog
    for alias, target in sorted(gateway.settings.models.items()):
        ref = catalog.resolve(target)
        state = _availability(gateway, ref.provider)
        add(alias, "alias", ref.provider, state, provider=ref.provider, target=str(ref))
    for route_name, route in sorted(catalog.routes.items()):
        refs = [catalog.resolve(n) for n in (route.primary, *route.fallbacks)]
        usable = any(_availability(gateway, r.provider)[0] for r in refs)
        state = (usable, "available" if usable else "unavailable")
        add(route_name, "route", "gateway", state, provider=None, candidates=[str(r) for r in refs])
    return list(entries.values())


def document_chat_completions(app: Litestar) -> None:
    """Put ``POST /v1/chat/completions`` into the app's OpenAPI document: Litestar documents only
    its HTTP routes, and this one is an ``@asgi`` route (see ``OpenAIController``). The document is
    built here, once every route is registered, and kept by Litestar from then on (about 4 ms of
    start-up that the first ``/schema`` request would otherwise pay)."""
    body_schema = Schema(
        type=OpenAPIType.OBJECT,
        required=["model", "messages"],
        properties={
            "model": Schema(type=OpenAPIType.STRING),
            "messages": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.OBJECT)),
            "stream": Schema(type=OpenAPIType.BOOLEAN),
            "fallbacks": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.STRING)),
        },
    )
    operation = Operation(
        operation_id="V1ChatCompletionsChatCompletions",
        summary="ChatCompletions",
        description="OpenAI's chat completions; SSE when `stream` is true.",
        request_body=RequestBody(
            content={"application/json": OpenAPIMediaType(schema=body_schema)}, required=True
        ),
        responses={
            "200": OpenAPIResponse(
                description="The completion (JSON), or its chunks (text/event-stream)",
                content={
                    "application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT)),
                    "text/event-stream": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
                },
            )
        },
    )
    document = app.openapi_schema
    document.paths = {**(document.paths or {}), "/v1/chat/completions": PathItem(post=operation)}
