"""Per-request context shared by the middleware and the handlers, kept in the ASGI scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.types import Scope, Send

from gateway.config.settings import ClientKey
from gateway.routing.record import RoutingRecord

if TYPE_CHECKING:
    from gateway.state import Gateway

SCOPE_KEY = "gateway.request"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    api: str
    routing: RoutingRecord | None = None
    client: ClientKey | None = None
    client_disconnected: bool = False  # the client left before the answer was complete
    response_started: bool = False  # an error from now on cannot be an answer of its own
    # The ``send`` our outermost middleware was given. Every layer inside it (our middleware,
    # Litestar's route-level exception handling) only looks at the response start, so the answers
    # send their body messages here directly: a streamed chunk passes one layer, not three.
    body_send: Send | None = None


def body_send_of(scope: Scope, send: Send) -> Send:
    """Where an answer sends its body messages, once its start went through ``send``."""
    context = scope.get(SCOPE_KEY)
    if isinstance(context, RequestContext) and context.body_send is not None:
        return context.body_send
    return send


def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def context_of(request: Request[Any, Any, Any]) -> RequestContext | None:
    context = request.scope.get(SCOPE_KEY)
    return context if isinstance(context, RequestContext) else None


def note_routing(request: Request[Any, Any, Any], record: RoutingRecord) -> None:
    """Hand the routing record to the middleware for the request log line and overhead metric."""
    context = context_of(request)
    if context is not None:
        context.routing = record
