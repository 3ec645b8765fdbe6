"""Minimal raw-ASGI helpers shared by the sim server: types, reading the body,
sending JSON / SSE, waiting for a disconnect, and aborting a connection.

Aborting is done by raising `SimulatedCut` after `http.response.start`: uvicorn
then closes the transport without the terminating chunk.  `install_log_filter`
keeps uvicorn from logging those intentional aborts as errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal
from urllib.parse import parse_qsl

from gateway.sim.jsontools import dumps

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Interrupt = Literal["disconnect", "closing"]

MAX_BODY = 16 * 1024 * 1024


class SimulatedCut(Exception):
    """Raised inside the app to make uvicorn drop the connection on purpose."""


class _DropSimulatedCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        return not (exc is not None and isinstance(exc[1], SimulatedCut))


def install_log_filter() -> None:
    """Idempotently hide uvicorn's "Exception in ASGI application" for `SimulatedCut`
    (and only for it: real errors of other apps in the process are still logged)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropSimulatedCut) for f in logger.filters):
        logger.addFilter(_DropSimulatedCut())


def header_map(scope: Scope) -> dict[str, str]:
    """Lower-case header names; repeated headers joined with ", "."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = bytes(raw_name).decode("latin-1").lower()
        value = bytes(raw_value).decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def query_map(scope: Scope) -> dict[str, str]:
    raw = bytes(scope.get("query_string", b"")).decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None if the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > MAX_BODY:
            raise SimulatedCut("request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def start_response(send: Send, status: int, headers: Iterable[tuple[str, str]]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": _encode_headers(headers)}
    )


async def send_body(send: Send, body: bytes, *, more: bool = False) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def send_json(
    send: Send, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
) -> None:
    body = dumps(payload)
    all_headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        *headers,
    ]
    await start_response(send, status, all_headers)
    await send_body(send, body)


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns once the client went away (call only after the body was read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait_event(event: asyncio.Event) -> None:
    await event.wait()


async def idle(receive: Receive, closing: asyncio.Event, seconds: float | None) -> Interrupt | None:
    """Wait `seconds` (None: forever); returns early with the reason if the
    client disconnects or the server starts closing, None if the time elapsed."""
    if seconds is not None and seconds <= 0:
        return None
    waiters: dict[asyncio.Task[None], Interrupt] = {
        asyncio.ensure_future(wait_for_disconnect(receive)): "disconnect",
        asyncio.ensure_future(_wait_event(closing)): "closing",
    }
    try:
        done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    for task in done:
        return waiters[task]
    return None


async def abort_connection(receive: Receive) -> bool:
    """Drop the connection before any response was started (uvicorn would otherwise
    answer 500).  Relies on uvicorn's request cycle exposing `.transport`; returns
    False when that is not available."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if not callable(abort):
        return False
    abort()
    for _ in range(3):  # let connection_lost() run so uvicorn sees the disconnect
        await asyncio.sleep(0)
    return True
