"""One upstream HTTP/1.1 connection of ``H1Transport``: an asyncio protocol whose httptools parser
callbacks fill the state of the exchange in progress, and the reader's side of that state.

Requests never overlap on a connection (no pipelining): ``begin()`` starts an exchange, the parser's
callbacks record the answer's head and queue its body chunks, and ``wait()`` suspends the reader
until there is news or the read timeout passes.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

import httptools
import httpx

Origin = tuple[bytes, str, int]
# Body bytes buffered for a slow reader before the socket stops being read (TCP pushes back).
_HIGH_WATER: Final = 256 * 1024


class H1Connection(asyncio.Protocol):
    """One keep-alive connection: the parser's callbacks fill the current exchange's state."""

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        # Kept, not looked up per chunk: on Python 3.11 every get_running_loop() is a getpid()
        # system call (1.8 % of a gapped stream's samples, most of them from wait()).
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        # The read timeout: one timer per connection, re-armed only when it fires early (see wait)
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.begin(head_only=False)

    def begin(self, *, head_only: bool) -> None:
        """A new exchange (requests never overlap on one connection)."""
        self.status = 0
        # httpx.Headers' own entries (raw name, lower-case name, value): handed over without a copy
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: httpx.TransportError | None = None
        self.chunks: list[bytes] = []
        self._buffered = 0
        self._head_only = head_only  # a HEAD answer has no body whatever its length says

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP/1.1 answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: a half-closed connection is never reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete or self.error is not None:
            return
        if self.head_done and exc is None and ends_at_close(self.status, self.headers):
            self.complete = True  # no length, not chunked: the body ran until the close
            self._wake()
        elif exc is None:
            self._fail(httpx.RemoteProtocolError("upstream closed the connection mid-answer"))
        else:
            self._fail(httpx.ReadError(f"upstream connection lost: {exc}"))

    # httptools callbacks (an exception raised here would surface wrapped; none is)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue...): the real one follows
            self.headers = []
            return
        self.status = status
        self.head_done = True
        if self._head_only:
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        waiter = self._waiter  # _wake inlined: this runs once per upstream chunk
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.head_done:
            # asked now: once feed_data returns, the parser is reset for the next answer
            self.keep_alive = self._parser.should_keep_alive()
            self.complete = True
            self._wake()

    # the reader's side

    def take(self) -> bytes:
        """Every body byte that has arrived, as one piece."""
        chunks = self.chunks
        self.chunks = []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def wait(self, limit_s: float | None) -> None:
        """Until the parser or the socket has news, or ``limit_s`` seconds (``ReadTimeout``).

        This runs once per chunk of every stream, so it neither enters ``asyncio.timeout`` nor
        arms a timer of its own: it moves the connection's deadline, and the one timer, armed at
        the first wait, only checks the deadline when it fires (re-arming itself if it moved)."""
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        if limit_s is not None:
            self._deadline = loop.time() + limit_s
            if self._timer is None:
                self._timer = loop.call_at(self._deadline, self._check_deadline)
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits: the next wait arms a timer again
        loop = self._loop
        if loop.time() >= self._deadline:
            waiter.set_exception(httpx.ReadTimeout("timed out waiting for the upstream's answer"))
        else:
            self._timer = loop.call_at(self._deadline, self._check_deadline)

    def disarm(self) -> None:
        """No exchange waits any more (the connection is idle or closed): no timer either."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        self.disarm()
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def ends_at_close(status: int, headers: list[tuple[bytes, bytes, bytes]]) -> bool:
    if status in (204, 304):
        return False
    return not any(key in (b"content-length", b"transfer-encoding") for _, key, _ in headers)
