"""The direct route's exception layers: Litestar's rendering, outside Litestar's router."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request, Response

from gateway.api.context import SCOPE_KEY, RequestContext
from gateway.api.direct import ErrorBoundary
from gateway.api.errors import EXCEPTION_HANDLERS
from gateway.errors import GatewayError, ModelNotFoundError


def _scope(**extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "root_path": "",
        "state": {},
        **extra,
    }


async def _no_body() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


def _raising(exc: Exception, *, start_first: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise exc

    return app


class _Sent:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.messages: list[dict[str, Any]] = []
        self.scope = scope

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            context = self.scope.get(SCOPE_KEY)
            if isinstance(context, RequestContext):
                context.response_started = True
        self.messages.append(dict(message))


async def test_an_error_is_rendered_by_the_handler_of_its_nearest_class() -> None:
    scope = _scope()
    sent = _Sent(scope)
    error = ModelNotFoundError("no such model", details={"field": "model"})
    boundary = ErrorBoundary(_raising(error), EXCEPTION_HANDLERS)  # type: ignore[arg-type]

    await boundary(scope, _no_body, sent)  # type: ignore[arg-type]

    start, body = sent.messages
    assert start["status"] == error.status_code == 404
    assert b'"code":"model_not_found"' in body["body"]
    assert b'"param":"model"' in body["body"]  # OpenAI's shape: the path is under /v1/


async def test_an_error_without_a_handler_propagates() -> None:
    scope = _scope()
    sent = _Sent(scope)

    def gateway_only(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return Response(b"", status_code=599)

    boundary = ErrorBoundary(_raising(KeyError("x")), {GatewayError: gateway_only})

    with pytest.raises(KeyError):
        await boundary(scope, _no_body, sent)  # type: ignore[arg-type]
    assert sent.messages == []


async def test_an_error_after_the_response_started_propagates_unrendered() -> None:
    scope = _scope()
    scope[SCOPE_KEY] = RequestContext(request_id="r", api="openai")
    sent = _Sent(scope)
    boundary = ErrorBoundary(
        _raising(RuntimeError("late"), start_first=True),
        EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )

    with pytest.raises(RuntimeError, match="late"):
        await boundary(scope, _no_body, sent)  # type: ignore[arg-type]
    assert [m["type"] for m in sent.messages] == ["http.response.start"]
