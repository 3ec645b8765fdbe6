"""A real loopback HTTP/1.1 server that answers with raw bytes, for the transports' tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from gateway.providers.whole import READ_WHOLE

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"id":"x","choices":[]}'


def head(length: int | None, *extra: bytes) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"Content-Type: application/json", *extra]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class RawServer:
    """Answers each request on a connection with the next ``Answer``; counts connections."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.heads: list[bytes] = []
        self.connections = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                request_head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(request_head.lower())
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in request_head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                await self.answers.pop(0)(writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def post(
    port: int, *, whole: bool, read_timeout: float = 5.0, host: str = "127.0.0.1"
) -> httpx.Request:
    request = httpx.Request(
        "POST",
        f"http://{host}:{port}/v1/chat/completions",
        content=b'{"model":"m"}',
        extensions={"timeout": {"connect": 5.0, "read": read_timeout, "pool": 5.0}},
    )
    if whole:
        request.extensions[READ_WHOLE] = True
    return request


def answer(data: bytes) -> Answer:
    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(data)

    return write


def half_answer(then: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> Answer:
    """The head and the first bytes of the body, then ``then`` (cut, stall...)."""

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(head(len(BODY)) + BODY[:5])
        await writer.drain()
        await then(writer)

    return write
