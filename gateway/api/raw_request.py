"""A request's body and single headers read straight from ASGI, on the routes of every model call.

Litestar's ``Request.body()`` streams through an async generator and looks the connection state up
several times, and ``Request.headers`` builds a multidict of every header to read one. On
``/v1/chat/completions`` and the AgentOS message route that cost about 50 us a request (in-process,
paired A/B batches). The limits stay Litestar's: a body over ``server.maxBodyBytes``, announced or
streamed, is Litestar's own ``RequestEntityTooLarge``, rendered as every other 413. A client that
leaves before its body is in gets ``ClientDisconnectedError`` (499 in the request log line).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from gateway.api.context import context_of
from gateway.errors import ClientDisconnectedError


def header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), or ``None``."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _announced_length(request: Request[Any, Any, Any]) -> int | None:
    value = header(request, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ClientException(f"Invalid content-length: {value[:32]!r}") from None


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; read once (``receive`` is then the disconnect
    watchers')."""
    announced = _announced_length(request)
    if announced is not None and announced > limit:
        raise RequestEntityTooLarge
    receive = request.receive
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: nothing else comes before the body
            context = context_of(request)
            if context is not None:
                context.client_disconnected = True
            raise ClientDisconnectedError("the client closed the connection during the request")
        body: bytes = message.get("body", b"")
        if body:
            total += len(body)
            if total > limit:  # streamed bodies too: the announced length may be absent or wrong
                raise RequestEntityTooLarge
            chunks.append(body)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
