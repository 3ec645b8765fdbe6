"""The gateway's default httpx transport: HTTP/1.1 on asyncio protocols and httptools' C parser.

Why: a streamed answer is read once per upstream chunk, and every read through aiohttp's client
runs its ``StreamReader`` (buffers, flow control, a timeout rescheduled per packet, a waiter per
read): about 600 Python bytecodes per chunk and 3,000 per call (``bench.bytecodes``), a third of
the gateway's whole relay. Here a chunk is one parser callback that appends to a list and wakes
the reader: the socket, the parsing and the pooling are the event loop's and httptools' C code.

Shape (httpx's API is untouched; adapters and tests' mock transports never see this module)::

    H1Transport                  httpx.AsyncBaseTransport: builds the request head, hands back
     |                           httpx.Response objects (read whole for READ_WHOLE calls)
     +-- _Pool                   keep-alive connections per origin, one limit for all of them,
     |                           callers waiting for a free slot up to the pool timeout
     +-- _Connection             asyncio.Protocol + httptools.HttpResponseParser callbacks:
     |                           one exchange at a time, body chunks queued for the reader
     +-- _Body                   httpx.AsyncByteStream: whatever has arrived, one step per read

Failures are raised as httpx's own exceptions (``upstream_errors`` maps them): ``ConnectError`` /
``ConnectTimeout`` while connecting, ``PoolTimeout`` with every slot busy, ``WriteError`` when the
connection is gone before the request is written, ``ReadTimeout`` when the answer stalls longer
than the read timeout, ``RemoteProtocolError`` when the server closes early or answers with
something that is not HTTP/1.1, ``ReadError`` on a reset. A connection whose exchange did not end
cleanly (an error, a cancelled caller, a stream closed half-read) is closed, never reused.

Not supported, as the gateway never needs them: proxies, HTTP/2, upgrades, streamed request
bodies that are not read first (the gateway's bodies are bytes), and a write timeout (a request
is one buffered write; a server that never reads it stalls the answer, which the read timeout
bounds).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Final, cast

import httptools
import httpx

from gateway.providers.whole import READ_WHOLE, whole_response

Origin = tuple[bytes, str, int]
_HTTP_11: Final = {"http_version": b"HTTP/1.1"}
_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}
# Body bytes buffered for a slow reader before the socket stops being read (TCP pushes back).
_HIGH_WATER: Final = 256 * 1024


class _Connection(asyncio.Protocol):
    """One keep-alive connection: the parser's callbacks fill the current exchange's state."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
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
        if self.head_done and exc is None and _ends_at_close(self.status, self.headers):
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
        loop = asyncio.get_running_loop()
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
        loop = asyncio.get_running_loop()
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


def _ends_at_close(status: int, headers: list[tuple[bytes, bytes, bytes]]) -> bool:
    if status in (204, 304):
        return False
    return not any(key in (b"content-length", b"transfer-encoding") for _, key, _ in headers)


class _Pool:
    """Keep-alive connections per origin under one limit; the most recently used goes out first."""

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext) -> None:
        self._max = limits.max_connections if limits.max_connections is not None else 1 << 30
        self._max_idle = (
            limits.max_keepalive_connections
            if limits.max_keepalive_connections is not None
            else self._max
        )
        self._expiry = limits.keepalive_expiry
        self._ssl = ssl_context
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._idle_count = 0
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def acquire(
        self, origin: Origin, timeouts: dict[str, float | None], sni: str | None
    ) -> _Connection:
        pool_s = timeouts.get("pool")
        deadline = None if pool_s is None else time.monotonic() + pool_s
        while True:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                self._idle_count -= 1
                if self._fresh(conn):
                    return conn
                self._drop(conn)
            if self._open < self._max or self._close_one_idle():
                break
            # one pool timeout for the whole wait, however often a slot is taken before us
            await self._wait_for_slot(None if deadline is None else deadline - time.monotonic())
        self._open += 1
        try:
            return await self._connect(origin, timeouts.get("connect"), sni)
        except BaseException:
            self._open -= 1
            self._notify()
            raise

    def release(self, conn: _Connection) -> None:
        """A connection whose exchange ended: back to the pool if it can carry another one."""
        if conn.reusable() and self._idle_count < self._max_idle and not self._closed:
            conn.disarm()
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, deque()).append(conn)
            self._idle_count += 1
            self._notify()
        else:
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._notify()

    def discard(self, conn: _Connection) -> None:
        """A connection whose exchange did not end cleanly: closed, its slot freed."""
        self._drop(conn)

    def close_all(self) -> None:
        self._closed = True  # connections still in use are closed when their exchange ends
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
                self._open -= 1
        self._idle.clear()
        self._idle_count = 0

    def _fresh(self, conn: _Connection) -> bool:
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            return False
        expiry = self._expiry
        return expiry is None or time.monotonic() - conn.idle_since < expiry

    def _close_one_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                self._idle_count -= 1
                self._drop(idle.popleft())  # the longest idle
                return True
        return False

    async def _wait_for_slot(self, limit_s: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limit_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._notify()  # woken, but leaving: the freed slot goes to the next waiter
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(
                    "no upstream connection free within the pool timeout"
                ) from None
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _notify(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, origin: Origin, limit_s: float | None, sni: str | None) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=(sni or host) if tls is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}") from None
        return conn


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives: each step returns every byte received since the last."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, conn: _Connection, pool: _Pool, timeout: float | None) -> None:
        self._conn: _Connection | None = conn
        self._pool = pool
        self._timeout = timeout

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            if conn.chunks:
                data = conn.take()
                if conn.complete:  # hand the connection back now, not on the next step
                    self._end(conn)
                return data
            if conn.complete:
                self._end(conn)
                raise StopAsyncIteration
            if conn.error is not None:
                self._abandon(conn)
                raise conn.error
            try:
                await conn.wait(self._timeout)
            except BaseException:
                self._abandon(conn)
                raise

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        conn = self._conn
        if conn is not None:  # closed half-read: what is left of the answer is unknown
            self._abandon(conn)

    def _end(self, conn: _Connection) -> None:
        self._conn = None
        self._pool.release(conn)

    def _abandon(self, conn: _Connection) -> None:
        self._conn = None
        self._pool.discard(conn)


class H1Transport(httpx.AsyncBaseTransport):
    """httpx's transport API over ``_Pool``: one instance per provider, like its client."""

    def __init__(self, *, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = _Pool(limits, ssl_context or httpx.create_ssl_context())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        payload = _request_bytes(request, await _body_of(request))
        pool = self._pool
        conn = await pool.acquire(origin, timeouts, request.extensions.get("sni_hostname"))
        conn.begin(head_only=request.method == "HEAD")
        read_timeout = timeouts.get("read")
        try:
            if conn.transport is None or conn.transport.is_closing():
                raise httpx.WriteError("the upstream connection closed before the request")
            conn.transport.write(payload)
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            pool.discard(conn)
            raise
        body = _Body(conn, pool, read_timeout)
        headers = httpx.Headers()
        headers._list = conn.headers  # the parser's entries are already in httpx's form
        if request.extensions.get(READ_WHOLE):
            return whole_response(conn.status, headers, await body.read_all(), request)
        return httpx.Response(
            conn.status, headers=headers, stream=body, request=request, extensions=_HTTP_11
        )

    async def aclose(self) -> None:
        self._pool.close_all()


async def _body_of(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:  # a streamed upload: read first, sent with its length
        body = await request.aread()
        request.headers.pop("transfer-encoding", None)
        request.headers["content-length"] = str(len(body))
        return body


def _request_bytes(request: httpx.Request, body: bytes) -> bytes:
    head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    head += [b"%s: %s\r\n" % pair for pair in request.headers.raw]
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)
