"""The model-call route served past Litestar's router: ``POST /v1/chat/completions``.

Through Litestar, every call passes its router and two exception layers (the app's and the
route's), each of which wraps ``send``: about 1,000 Python bytecodes a call, and a wrapper on every
chunk of a stream. ``GatewayApp`` finds a direct route in a dict instead and runs it inside the same
layers, in the same order, that Litestar would::

    ErrorBoundary                       the app's exception layer (errors of the middleware)
      RequestContextMiddleware ...      the app's middleware, the very instances of ``middleware_for``
        ErrorBoundary                   the route's exception layer (errors of the handler)
          handler

An ``ErrorBoundary`` renders with the app's own exception handlers, so an error has the same body,
status and headers either way. The route stays registered with Litestar as well: another method gets
its 405 there, and the OpenAPI document lists it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    ExceptionHandler,
    HTTPScope,
    LifeSpanReceive,
    LifeSpanScope,
    LifeSpanSend,
    Middleware,
    Receive,
    Scope,
    Send,
)

from gateway.api.context import SCOPE_KEY, RequestContext

if TYPE_CHECKING:  # Litestar's alias takes no subscript at run time
    ExceptionHandlers = Mapping[type[Exception], ExceptionHandler[Any]]


class ErrorBoundary:
    """Litestar's exception layer, for an app called outside its router: an exception raised before
    the response started is rendered by the handler registered for its nearest class; one raised
    after it propagates (the server cuts the connection, as it does under Litestar)."""

    __slots__ = ("app", "handlers")

    def __init__(self, app: ASGIApp, handlers: ExceptionHandlers) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            context = scope.get(SCOPE_KEY)
            if isinstance(context, RequestContext) and context.response_started:
                raise
            handler = self._handler_for(exc)
            if handler is None:
                raise
            request: Request[Any, Any, Any] = Request(scope, receive, send)
            response: Response[Any] = handler(request, exc)
            await response.to_asgi_response(app=None, request=request)(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler[Any] | None:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None


def direct_route(
    handler: ASGIApp, middleware: Sequence[Middleware], handlers: ExceptionHandlers
) -> ASGIApp:
    """``handler`` inside ``middleware`` (outermost first, as Litestar takes it) and the two
    exception layers."""
    app: ASGIApp = ErrorBoundary(handler, handlers)
    for layer in reversed(middleware):
        app = layer(app=app)
    return ErrorBoundary(app, handlers)


class GatewayApp(Litestar):
    """Litestar, with the model-call routes (``direct``: path to ASGI app, POST only) served past
    its router."""

    def __init__(self, *, direct: Mapping[str, ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._direct = dict(direct)

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == ScopeType.HTTP:
            http: HTTPScope = scope  # type: ignore[assignment]  # narrowed by its type
            route = self._direct.get(http["path"]) if http["method"] == "POST" else None
            if route is not None:
                # What Litestar.__call__ sets up before its router (it has no send hooks here).
                http["app"] = http["litestar_app"] = self
                if "state" not in http:
                    http["state"] = {}
                await route(http, receive, send)  # type: ignore[arg-type]
                return
        await super().__call__(scope, receive, send)
