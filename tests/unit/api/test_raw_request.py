"""Request bodies and headers read straight from ASGI: the same limits as Litestar's own reading."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Request
from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from gateway.api.context import SCOPE_KEY, RequestContext
from gateway.api.raw_request import header, read_body
from gateway.errors import ClientDisconnectedError


def request_of(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]]) -> Any:
    received: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = messages.pop(0)
        received.append(message)
        return message

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": headers,
        SCOPE_KEY: RequestContext(request_id="r1", api="openai"),
    }
    request: Request[Any, Any, Any] = Request(scope, receive)  # type: ignore[arg-type]
    return request, received


def part(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


async def test_a_body_sent_in_parts_is_joined() -> None:
    request, _ = request_of([part(b'{"a":', True), part(b"", True), part(b"1}", False)], [])
    assert await read_body(request, 100) == b'{"a":1}'


async def test_an_announced_length_over_the_limit_is_refused_before_reading() -> None:
    request, received = request_of([part(b"x" * 10, False)], [(b"content-length", b"10")])
    with pytest.raises(RequestEntityTooLarge):
        await read_body(request, 9)
    assert received == []


async def test_a_streamed_body_over_the_limit_is_refused() -> None:
    request, _ = request_of([part(b"x" * 6, True), part(b"x" * 6, False)], [])
    with pytest.raises(RequestEntityTooLarge):
        await read_body(request, 10)


async def test_a_body_of_exactly_the_limit_is_read() -> None:
    request, _ = request_of([part(b"x" * 10, False)], [(b"content-length", b"10")])
    assert await read_body(request, 10) == b"x" * 10


async def test_a_garbled_content_length_is_a_client_error() -> None:
    request, _ = request_of([part(b"{}", False)], [(b"content-length", b"ten")])
    with pytest.raises(ClientException) as caught:
        await read_body(request, 100)
    assert caught.value.status_code == 400


async def test_a_client_that_leaves_mid_body_is_marked_disconnected() -> None:
    request, _ = request_of([part(b'{"a":', True), {"type": "http.disconnect"}], [])
    with pytest.raises(ClientDisconnectedError):
        await read_body(request, 100)
    assert request.scope[SCOPE_KEY].client_disconnected is True


def test_header_is_the_first_value_or_none() -> None:
    request, _ = request_of([], [(b"x-gateway-route", b"fast"), (b"x-gateway-route", b"slow")])
    assert header(request, b"x-gateway-route") == "fast"
    assert header(request, b"x-gateway-fallbacks") is None
