"""Answers sent straight over ASGI, for the routes on every model call.

A handler that returns one of these skips Litestar's response machinery (header normalisation,
content negotiation, and for streams an anyio task group per response): Litestar hands an
ASGI-callable return value to the server untouched. Errors raised before the answer is returned still
go through the app's exception handlers; once the first byte is out, a stream reports failures in-band.

``StreamAnswer`` relays frames as they come (the last goes out with the end of the body, in one
write) and, from ``WATCH_AFTER_S`` into the stream on, watches ``receive`` for
``http.disconnect``: a client that goes away cancels the relay, which closes the upstream stream (its
connection goes back or is dropped) instead of holding it until the next chunk would have been
written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import msgspec
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from gateway.api.context import SCOPE_KEY, RequestContext, body_send_of
from gateway.api.disconnect import WATCH_AFTER_S

_encoder = msgspec.json.Encoder()
_JSON = (b"content-type", b"application/json")
_EVENT_STREAM = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def _raw_headers(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]


class JsonAnswer:
    """A JSON body encoded once with msgspec, sent in one piece with its length."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, content: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = _encoder.encode(content)
        self.status = status
        self.headers = _raw_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": self.status,
            "headers": [_JSON, (b"content-length", b"%d" % len(self.body)), *self.headers],
        }
        await send(start)
        body: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": self.body,
            "more_body": False,
        }
        await body_send_of(scope, send)(body)


class FinalFrame(bytes):
    """The last frame of a stream, sent together with the end of the body: one write, not two."""

    __slots__ = ()


class StreamAnswer:
    """``text/event-stream``: the ASGI side of a relay (the start, the end, the client leaving).

    ``relay`` sends every frame but the last, each as one write, and returns the last, which goes
    out with the end of the body; ``aclose`` releases what the relay reads from, however it ended."""

    __slots__ = ("_disconnected", "_finished", "headers", "status")

    def __init__(self, headers: Mapping[str, str] | None, status: int = 200) -> None:
        self.status = status
        self.headers = [*_EVENT_STREAM, *_raw_headers(headers)]
        self._disconnected = False
        self._finished = False

    async def relay(self, send: Send) -> bytes:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close what the relay reads from (a client that left leaves it suspended)."""

    async def _watch(self, receive: Receive, relay: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            # After the last write the server reports the finished exchange as a disconnect too.
            if message["type"] == "http.disconnect":
                if not self._finished:
                    self._disconnected = True
                    relay.cancel()
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.current_task()
        assert relay is not None
        watcher: asyncio.Future[None] | None = None

        def start_watching() -> None:
            nonlocal watcher
            watcher = asyncio.ensure_future(self._watch(receive, relay))

        # As ``while_connected``: a stream shorter than this never pays for a watcher task.
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, start_watching)
        try:
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": self.status,
                "headers": self.headers,
            }
            await send(start)
            send_body = body_send_of(scope, send)
            last = await self.relay(send_body)
            self._finished = True
            end: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": last,
                "more_body": False,
            }
            await send_body(end)
        except asyncio.CancelledError:
            if not self._disconnected:
                raise
            relay.uncancel()  # our own cancellation: the client left, the request ends quietly
            context = scope.get(SCOPE_KEY)
            if isinstance(context, RequestContext):
                context.client_disconnected = True
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()
            await self.aclose()


class EventStreamAnswer(StreamAnswer):
    """Frames relayed as they come: each item of ``frames`` is one write; a ``FinalFrame`` ends the
    body."""

    __slots__ = ("frames",)

    def __init__(
        self, frames: AsyncIterator[bytes], headers: Mapping[str, str] | None, status: int = 200
    ) -> None:
        super().__init__(headers, status)
        self.frames = frames

    async def relay(self, send: Send) -> bytes:
        async for frame in self.frames:
            if type(frame) is FinalFrame:
                return bytes(frame)
            chunk: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": frame,
                "more_body": True,
            }
            await send(chunk)
        return b""

    async def aclose(self) -> None:
        if isinstance(self.frames, AsyncGenerator):
            await self.frames.aclose()
