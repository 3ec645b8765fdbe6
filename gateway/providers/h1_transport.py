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
     +-- H1Connection            (h1_connection.py) asyncio.Protocol + httptools' parser
     |                           callbacks: one exchange at a time, body chunks queued
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
from typing import Final

import httpx

from gateway.providers.h1_connection import H1Connection, Origin
from gateway.providers.whole import HTTP_11, READ_WHOLE, whole_response

_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}


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
        self._idle: dict[Origin, deque[H1Connection]] = {}
        self._idle_count = 0
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def acquire(
        self, origin: Origin, timeouts: dict[str, float | None], sni: str | None
    ) -> H1Connection:
        pool_s = timeouts.get("pool")
        deadline = None if pool_s is None else time.monotonic() + pool_s
        while True:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                self._idle_count -= 1
                if self._fresh(conn):
                    return conn
                self.discard(conn)
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

    def release(self, conn: H1Connection) -> None:
        """A connection whose exchange ended: back to the pool if it can carry another one."""
        if conn.reusable() and self._idle_count < self._max_idle and not self._closed:
            conn.disarm()
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.origin, deque()).append(conn)
            self._idle_count += 1
            self._notify()
        else:
            self.discard(conn)

    def discard(self, conn: H1Connection) -> None:
        """A connection that will carry no other exchange: closed, its slot freed."""
        conn.close()
        self._open -= 1
        self._notify()

    def close_all(self) -> None:
        self._closed = True  # connections still in use are closed when their exchange ends
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
                self._open -= 1
        self._idle.clear()
        self._idle_count = 0

    def _fresh(self, conn: H1Connection) -> bool:
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            return False
        expiry = self._expiry
        return expiry is None or time.monotonic() - conn.idle_since < expiry

    def _close_one_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                self._idle_count -= 1
                self.discard(idle.popleft())  # the longest idle
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

    async def _connect(
        self, origin: Origin, limit_s: float | None, sni: str | None
    ) -> H1Connection:
        scheme, host, port = origin
        tls = self._ssl if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit_s):
                _, conn = await loop.create_connection(
                    lambda: H1Connection(origin, loop),
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

    def __init__(self, conn: H1Connection, pool: _Pool, timeout: float | None) -> None:
        self._conn: H1Connection | None = conn
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

    def _end(self, conn: H1Connection) -> None:
        self._conn = None
        self._pool.release(conn)

    def _abandon(self, conn: H1Connection) -> None:
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
            conn.status, headers=headers, stream=body, request=request, extensions=HTTP_11
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
