"""Rendering every error as JSON: ``{"code", "message", "details"}``, or OpenAI's shape under ``/v1``.

Registered as app-level exception handlers so errors raised anywhere (our tree, Litestar's own 404/405/
413, unexpected bugs) come out in one shape with no stack trace and no secret.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway.api.responses import json_response
from gateway.errors import GatewayError, UpstreamError

log = structlog.get_logger("gateway.api")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def render_error(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    retry_after: float | None = None,
) -> Response[bytes]:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    if request.url.path.startswith("/v1/"):
        error_type = _OPENAI_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        param = (details or {}).get("field")
        body: dict[str, Any] = {
            "error": {"message": message, "type": error_type, "code": code, "param": param}
        }
    else:
        body = {"code": code, "message": message, "details": details or {}}
    return json_response(body, status, headers)


def gateway_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, GatewayError)
    details = dict(exc.details)
    if isinstance(exc, UpstreamError) and exc.upstream_status is not None:
        details["upstreamStatus"] = exc.upstream_status
    return render_error(
        request,
        exc.status_code,
        exc.code,
        exc.message,
        details=details,
        retry_after=exc.retry_after,
    )


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "http_error")
    message = exc.detail if status < 500 else "internal error"
    if status == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    response = render_error(request, status, code, str(message))
    allow = next((v for k, v in (exc.headers or {}).items() if k.lower() == "allow"), None)
    if status == 405 and allow:  # a 405 must say what is allowed (RFC 9110)
        response.headers["allow"] = allow
    return response


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # The client learns nothing about internals; the log keeps the type for whoever investigates.
    log.error("unhandled_error", error_type=type(exc).__name__, path=request.url.path)
    return render_error(request, 500, "internal_error", "internal error")


EXCEPTION_HANDLERS = {
    GatewayError: gateway_error_handler,
    HTTPException: http_exception_handler,
    Exception: unexpected_error_handler,
}
