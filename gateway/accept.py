"""The served event loop: uvloop, with every waiting connection accepted in one loop turn.

Why: libuv, under uvloop, accepts *one* connection each time the loop polls the listening socket
(since libuv 1.45, libuv/libuv#3696: "most of the time the second accept() fails with EAGAIN").
That is right for an idle server and wrong for a busy one: at c=64 a loop turn of the gateway
takes 5-25 ms, so a burst of new connections (a client's pool warming up, clients reconnecting
after a deploy or a network blip) is let in one per turn. Measured (``strace`` on ``accept4``,
``tcpdump`` on loopback): the last of 64 connections opened at once waited 250-800 ms for its
first answer while the requests on open connections took under 50 ms; that wait was the whole p99
the benchmark's wrk reported (docs/performance.md). asyncio's own loop accepts up to the backlog
per turn, but costs more CPU on every request.

So the gateway's loop is uvloop with one method replaced: ``create_server`` on a bound socket (how
``gateway serve`` and uvicorn's ``--workers`` hand it over) returns an ``AcceptServer``, which
watches the socket itself and, when it is readable, accepts until the kernel's queue is empty (at
most ``backlog`` at a time, so a flood cannot hold the loop) and hands each connection to
``loop.connect_accepted_socket``: from there on it is uvloop's ordinary transport. Anything else
(TLS, a host and port to bind) goes to uvloop unchanged.

Several workers (``gateway serve --workers N``) share the listening socket their supervisor bound.
Accepting until the queue is empty would let whichever worker wakes first take a whole burst, and
the connections stay with it (keep-alive): at c=64 one worker served nearly everything (2 workers
did 0.92x of one). So the supervisor binds that socket with ``SO_REUSEPORT``, and a server given
such a socket listens on a socket of its own, bound to the same address with ``SO_REUSEPORT``: the
kernel then spreads new connections over the workers' queues by their address hash, whatever
their loops are doing (nginx's ``reuseport``, Envoy's default on Linux). The supervisor's socket
itself is never listened on.

When accepting fails for want of resources (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``) or
for any reason that is not about one connection, the server stops watching the socket for
``retry_s`` (asyncio does the same for the first four): the kernel keeps the waiting connections
in its queue, and a retry in a tight loop would only burn the CPU the open connections need. An
error about one waiting connection (it was reset before we took it, say) skips that connection.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
from collections.abc import Callable
from typing import Any, Final

import structlog
import uvloop

log = structlog.get_logger("gateway")

# accept() errors about one waiting connection, not the listening socket: Linux passes a new
# connection's pending network error up through accept(), to be "treated like EAGAIN by retrying"
# (accept(2)); EPERM is a firewall rule refusing it. The next waiting connection is taken at once.
_ONE_CONNECTION: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPERM",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
)
_RETRY_S: Final = 1.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def _bound_reusing_port(family: socket.AddressFamily, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, for a supervisor to hand to its
    workers: each worker's server listens on a sibling of it (``own_queue``)."""
    sock = _bound_reusing_port(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))
    sock.set_inheritable(True)
    return sock


def own_queue(sock: socket.socket) -> socket.socket:
    """The socket a server should listen on: ``sock`` itself, or, when ``sock`` is shared with
    ``SO_REUSEPORT`` set, a new socket bound to the same address in the same way, so this
    process gets its own share of the new connections."""
    if not hasattr(socket, "SO_REUSEPORT") or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_REUSEPORT
    ):
        return sock
    return _bound_reusing_port(sock.family, sock.getsockname())


class AcceptServer(asyncio.AbstractServer):
    """Serves one listening socket: all waiting connections accepted per readiness."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: ProtocolFactory,
        sock: socket.socket,
        backlog: int,
        *,
        retry_s: float = _RETRY_S,
    ) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._sock = own_queue(sock)
        self._backlog = max(1, backlog)
        self._retry_s = retry_s
        self._serving = False
        self._retry: asyncio.TimerHandle | None = None
        self._handovers: set[asyncio.Task[Any]] = set()
        self._closed = loop.create_future()
        self._sock.setblocking(False)

    # -- asyncio.AbstractServer ------------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed.done() else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._closed.done():
            raise RuntimeError("the server is closed")
        if not self._serving:
            self._sock.listen(self._backlog)
            self._watch()

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.shield(self._closed)

    def close(self) -> None:
        """Stop accepting and close the listening socket; open connections are left alone, as
        asyncio's ``Server.close`` leaves them (uvicorn drains them itself)."""
        if self._closed.done():
            return
        self._unwatch()
        self._sock.close()
        self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
        while self._handovers:  # connections accepted before close() still get their transport
            await asyncio.gather(*self._handovers, return_exceptions=True)

    # -- accepting -------------------------------------------------------------------------------

    def _watch(self) -> None:
        self._retry = None
        self._serving = True
        self._loop.add_reader(self._sock.fileno(), self._accept_waiting)

    def _unwatch(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._serving:
            self._loop.remove_reader(self._sock.fileno())
            self._serving = False

    def _accept_waiting(self) -> None:
        for _ in range(self._backlog):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except OSError as exc:
                if exc.errno in _ONE_CONNECTION:
                    continue  # that connection is gone; the others still wait
                self._pause(exc)
                return
            self._hand_over(conn)

    def _pause(self, exc: OSError) -> None:
        # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or a listening socket
        # gone wrong: the socket stays readable, and retrying every turn would only burn the CPU
        # the open connections need (and fill the log), so wait as asyncio does.
        log.error(
            "accept_paused",
            error=type(exc).__name__,
            errno=exc.errno,
            retry_s=self._retry_s,
        )
        self._unwatch()
        self._retry = self._loop.call_later(self._retry_s, self._watch)

    def _hand_over(self, conn: socket.socket) -> None:
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
        self._handovers.add(task)
        task.add_done_callback(functools.partial(self._handed_over, conn))

    def _handed_over(self, conn: socket.socket, task: asyncio.Task[Any]) -> None:
        self._handovers.discard(task)
        if not task.cancelled() and task.exception() is None:
            return
        # Failed before a transport owned the connection (the protocol factory raised, say):
        # close it here. Once a transport owns it, uvloop has detached the socket object and
        # this close() does nothing.
        conn.close()
        if not task.cancelled():
            log.error("accept_handover_failed", error=type(task.exception()).__name__)


class GatewayLoop(uvloop.Loop):
    """uvloop, but a server on a bound plain socket is an ``AcceptServer``."""

    async def create_server(  # type: ignore[override]  # returns an AbstractServer
        self,
        protocol_factory: ProtocolFactory,
        host: Any = None,
        port: Any = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        start_serving: bool = True,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        if sock is None or ssl is not None or kwargs or host is not None or port is not None:
            server: asyncio.AbstractServer = await super().create_server(
                protocol_factory,
                host,
                port,
                sock=sock,
                backlog=backlog,
                ssl=ssl,
                start_serving=start_serving,
                **kwargs,
            )
            return server
        accept_server = AcceptServer(self, protocol_factory, sock, backlog)
        if start_serving:
            await accept_server.start_serving()
        return accept_server


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (``Config(loop="gateway.accept:new_event_loop")``)."""
    return GatewayLoop()
