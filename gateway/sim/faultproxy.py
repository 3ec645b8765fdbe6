"""A TCP fault proxy on loopback, for connection-level faults the simulators cannot make themselves.

Put it in front of a simulated provider (or any TCP server) and point the gateway at the proxy::

    with FaultProxy(("127.0.0.1", sims["openai"].port)) as proxy:
        env["OPENAI_ENDPOINT"] = proxy.rewrite(sims.endpoint("openai"))
        proxy.set_faults(reset_after_request=True)   # RST once a whole request has arrived
        proxy.refuse()                                # nothing listens: connection refused
        proxy.fill_backlog()                          # SYNs dropped: the client's connect times out
        proxy.accept()                                # back to normal

Faults, read live by every connection (so pooled keep-alive connections see a change at their next
request):

- ``latency_ms``: delay after accepting a connection, before anything is relayed;
- ``chunk_latency_ms``: delay before each chunk relayed back to the client;
- ``reset_after_request``: read one complete HTTP/1.x request, then reset the connection (RST via
  ``SO_LINGER`` 0) without forwarding it;
- ``blackhole``: accept and swallow everything, never answer (the client's read timeout decides);
- ``slow_close_ms``: when the upstream closes, keep the client's side open this long first.

Listening states (``refuse``, ``fill_backlog``, ``accept``) drop the open connections too, so a
client's pool cannot hide them. ``fill_backlog`` is real: a socket listening with backlog 0 that never
accepts, its queue filled by the proxy's own connection, so the kernel drops further SYNs and an httpx
client gets ``ConnectTimeout`` after its connect timeout.

The proxy runs in its own thread (``start``/``stop``, or as a context manager) or on any running loop
(``start_async``/``stop_async``). Fault changes are thread-safe; the listening-state methods have
blocking wrappers for other threads and ``*_async`` variants for the proxy's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

ListenState = Literal["stopped", "listening", "refusing", "backlog_full"]

SYNC_TIMEOUT = 10.0
CHUNK = 65536
_MAX_FILLERS = 8
_FILLER_WAIT_S = 0.1


@dataclass(frozen=True, slots=True)
class ProxyFaults:
    """What the proxy does to traffic; every field off by default (a transparent proxy)."""

    latency_ms: int = 0
    chunk_latency_ms: int = 0
    reset_after_request: bool = False
    blackhole: bool = False
    slow_close_ms: int = 0

    def __post_init__(self) -> None:
        for name in ("latency_ms", "chunk_latency_ms", "slow_close_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def request_complete(data: bytes) -> bool:
    """Whether ``data`` holds at least one whole HTTP/1.x request (headers and body)."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    body = data[head_end + 4 :]
    length = 0
    chunked = False
    for line in data[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return True  # not a request we can measure: it is as complete as it will get
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        return body.startswith(b"0\r\n\r\n") or b"\r\n0\r\n\r\n" in body
    return len(body) >= length


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    """One accepted client connection and, once something is forwarded, its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None

    def reset(self) -> None:
        """Reset both sides (the socket closes in the loop's next iteration)."""
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.host = host
        self._port = port
        self._faults = ProxyFaults()
        self._lock = threading.Lock()
        self._state: ListenState = "stopped"
        self._server: asyncio.Server | None = None
        self._backlog: list[socket.socket] = []
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._errors: list[BaseException] = []
        self.accepted = 0
        self.resets = 0

    def __repr__(self) -> str:
        return f"<FaultProxy {self.url} -> {self.upstream[0]}:{self.upstream[1]} {self._state}>"

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def rewrite(self, endpoint: str) -> str:
        """``endpoint`` (a URL of the upstream) with its host and port replaced by the proxy's."""
        parts = urlsplit(endpoint)
        return urlunsplit(parts._replace(netloc=f"{self.host}:{self._port}"))

    @property
    def state(self) -> ListenState:
        return self._state

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # -- faults (any thread) ----------------------------------------------------------------

    @property
    def faults(self) -> ProxyFaults:
        with self._lock:
            return self._faults

    def set_faults(
        self,
        *,
        latency_ms: int | None = None,
        chunk_latency_ms: int | None = None,
        reset_after_request: bool | None = None,
        blackhole: bool | None = None,
        slow_close_ms: int | None = None,
    ) -> ProxyFaults:
        """Change the given faults (None keeps a field); returns the new set."""
        given = {
            "latency_ms": latency_ms,
            "chunk_latency_ms": chunk_latency_ms,
            "reset_after_request": reset_after_request,
            "blackhole": blackhole,
            "slow_close_ms": slow_close_ms,
        }
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        with self._lock:
            self._faults = replace(self._faults, **changes)
            return self._faults

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = ProxyFaults()

    # -- lifecycle on a running loop ----------------------------------------------------------

    async def start_async(self) -> None:
        """Listen on the current loop; returns once the port accepts connections."""
        if self._state != "stopped":
            raise RuntimeError("fault proxy already started")
        self._loop = asyncio.get_running_loop()
        await self._listen()

    async def stop_async(self) -> None:
        await self._close_listener()
        await self._drop_all()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._state = "stopped"

    async def refuse_async(self) -> None:
        """Close the listening socket (connections are refused) and drop open connections."""
        await self._close_listener()
        await self._drop_all()
        self._state = "refusing"

    async def fill_backlog_async(self) -> None:
        """Listen with a full accept queue that is never served: new connects time out."""
        await self._close_listener()
        await self._drop_all()
        sock = self._bind()
        sock.listen(0)
        self._backlog.append(sock)
        self._backlog.extend(self._fill(sock))
        self._state = "backlog_full"

    async def accept_async(self) -> None:
        """Serve again on the same port (no-op when already serving)."""
        if self._state != "listening":
            await self._close_listener()
            await self._listen()

    async def drop_connections_async(self) -> None:
        await self._drop_all()

    # -- blocking wrappers (any other thread) -----------------------------------------------

    def refuse(self) -> None:
        self._run_sync(self.refuse_async())

    def fill_backlog(self) -> None:
        self._run_sync(self.fill_backlog_async())

    def accept(self) -> None:
        self._run_sync(self.accept_async())

    def drop_connections(self) -> None:
        self._run_sync(self.drop_connections_async())

    def _run_sync(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise RuntimeError("fault proxy is not running")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("called from the proxy's own loop; await the *_async variant")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=SYNC_TIMEOUT)

    # -- own thread -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the proxy in a background thread; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("fault proxy already started")
        ready = threading.Event()
        self._errors = []
        thread = threading.Thread(target=self._run, args=(ready,), name="fault-proxy", daemon=True)
        thread.start()
        if not ready.wait(SYNC_TIMEOUT) or self._errors:
            thread.join(SYNC_TIMEOUT)
            cause = self._errors[0] if self._errors else None
            raise RuntimeError("fault proxy did not start") from cause
        self._thread = thread

    def stop(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(SYNC_TIMEOUT)
        self._thread = self._stop = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except BaseException as exc:  # reported to start()
            self._errors.append(exc)
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        await self.start_async()
        ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.stop_async()

    # -- internals --------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._port))
        except BaseException:
            sock.close()
            raise
        self._port = int(sock.getsockname()[1])
        return sock

    async def _listen(self) -> None:
        sock = self._bind()
        self._server = await asyncio.start_server(self._accepted, sock=sock, backlog=128)
        self._state = "listening"

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        backlog, self._backlog = self._backlog, []
        for sock in backlog:
            sock.close()

    def _fill(self, listener: socket.socket) -> list[socket.socket]:
        """Connect to ``listener`` until the kernel stops completing handshakes (queue full)."""
        address = listener.getsockname()
        fillers: list[socket.socket] = []
        for _ in range(_MAX_FILLERS):
            sock = socket.socket(listener.family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(address)
            _, writable, _ = select.select([], [sock], [], _FILLER_WAIT_S)
            if writable and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                fillers.append(sock)
                continue
            sock.close()  # its SYN was dropped: the queue is full
            return fillers
        for sock in fillers:
            sock.close()
        raise RuntimeError("could not fill the accept queue of a backlog-0 socket")

    async def _drop_all(self) -> None:
        """Reset every open connection and wait until their sockets are really closed."""
        connections, self._connections = list(self._connections), set()
        for conn in connections:
            conn.reset()
        writers = [w for c in connections for w in (c.client, c.upstream) if w is not None]
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer)
        self._connections.add(conn)
        self.accepted += 1
        try:
            latency = self.faults.latency_ms
            if latency:
                await asyncio.sleep(latency / 1000)
            await self._client_to_upstream(conn, reader)
        except (OSError, asyncio.IncompleteReadError):
            conn.reset()
        finally:
            self._connections.discard(conn)
            if not writer.is_closing():
                writer.close()

    async def _client_to_upstream(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        pending = b""  # the request being read while reset_after_request is on
        pump: asyncio.Task[None] | None = None
        try:
            while data := await reader.read(CHUNK):
                faults = self.faults
                if faults.blackhole:
                    continue
                if faults.reset_after_request:
                    pending += data
                    if request_complete(pending):
                        self.resets += 1
                        conn.reset()
                        return
                    continue
                if conn.upstream is None:
                    up_reader, conn.upstream = await asyncio.open_connection(*self.upstream)
                    pump = asyncio.ensure_future(self._upstream_to_client(conn, up_reader))
                conn.upstream.write(pending + data)
                pending = b""
                await conn.upstream.drain()
            if conn.upstream is not None and conn.upstream.can_write_eof():
                conn.upstream.write_eof()
            if pump is not None:
                await pump
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            if conn.upstream is not None and not conn.upstream.is_closing():
                conn.upstream.close()

    async def _upstream_to_client(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        client = conn.client
        try:
            while data := await reader.read(CHUNK):
                delay = self.faults.chunk_latency_ms
                if delay:
                    await asyncio.sleep(delay / 1000)
                client.write(data)
                await client.drain()
            slow_close = self.faults.slow_close_ms
            if slow_close:
                await asyncio.sleep(slow_close / 1000)
            client.close()
        except OSError:
            conn.reset()
