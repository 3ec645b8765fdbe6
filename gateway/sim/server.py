"""One simulated provider: a uvicorn server on a loopback socket we bind
ourselves, plus its fault plan, request log and listen/refuse lifecycle.

Lifecycle coroutines (`start`, `stop`, `refuse_async`, `accept_async`) run on
the owning event loop (the `SimCluster` thread); `refuse()` / `accept()` and all
fault / request-log methods are safe to call from any other thread.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Iterable
from typing import Any

import uvicorn

from gateway.sim.app import SimApp
from gateway.sim.asgi import install_log_filter
from gateway.sim.faults import UNSET, FaultPlan, Faults, Unset
from gateway.sim.requestlog import RequestLog, RequestRecord
from gateway.sim.spec import SimSpec, Wire
from gateway.sim.wire import WireHandler
from gateway.sim.wire_anthropic import AnthropicWire
from gateway.sim.wire_gemini import GeminiWire
from gateway.sim.wire_openai import OpenAIWire

SYNC_TIMEOUT = 30.0


def make_wire(spec: SimSpec) -> WireHandler:
    match spec.wire:
        case "openai":
            return OpenAIWire(spec.prefix)
        case "gemini":
            return GeminiWire()
        case "anthropic":
            return AnthropicWire()


def url_host(host: str) -> str:
    """Host as it must appear in a URL a client on this machine can use."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - mapping a wildcard bind to loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class SimServer:
    def __init__(self, spec: SimSpec, host: str = "127.0.0.1") -> None:
        self.spec = spec
        self.host = host
        self.faults = Faults()
        self._log = RequestLog()
        self._app = SimApp(spec, make_wire(spec), self.faults, self._log, self._schedule_refuse)
        self._port = spec.port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._timers: set[asyncio.Task[None]] = set()
        self._draining: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        state = "listening" if self.listening else "down"
        return f"<SimServer {self.name} {self.wire} {self.base_url} {state}>"

    # ---- identity ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def wire(self) -> Wire:
        return self.spec.wire

    @property
    def api_key(self) -> str | None:
        return self.spec.api_key

    @property
    def port(self) -> int:
        """The bound port (0 until first started when the spec asked for port 0)."""
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.host)}:{self._port}"

    @property
    def endpoint(self) -> str:
        """Base URL a gateway adapter should be configured with."""
        return self.base_url + self.spec.endpoint_path

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def reply(self) -> str | None:
        """Override of the deterministic answer text (None: default text)."""
        return self._app.reply

    @reply.setter
    def reply(self, text: str | None) -> None:
        self._app.reply = text

    # ---- faults ------------------------------------------------------------

    @property
    def fault_plan(self) -> FaultPlan:
        return self.faults.plan

    def set_faults(
        self,
        *,
        statuses: Iterable[int] | Unset = UNSET,
        status_always: int | Unset | None = UNSET,
        retry_after: int | Unset | None = UNSET,
        error_message: str | Unset | None = UNSET,
        latency_ms: int | Unset = UNSET,
        hang: bool | Unset = UNSET,
        cut_after_chunks: int | Unset | None = UNSET,
        stall_after_chunks: int | Unset | None = UNSET,
        chunk_delay_ms: int | Unset = UNSET,
    ) -> FaultPlan:
        """Change the given fault fields (others are kept); see `FaultPlan`."""
        return self.faults.update(
            statuses=statuses,
            status_always=status_always,
            retry_after=retry_after,
            error_message=error_message,
            latency_ms=latency_ms,
            hang=hang,
            cut_after_chunks=cut_after_chunks,
            stall_after_chunks=stall_after_chunks,
            chunk_delay_ms=chunk_delay_ms,
        )

    def clear_faults(self) -> None:
        self.faults.reset()

    # ---- request log -------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the provider requests received (control API excluded)."""
        return self._log.snapshot()

    @property
    def request_count(self) -> int:
        return len(self._log)

    def clear_requests(self) -> None:
        self._log.clear()

    def reset(self) -> None:
        """Clear faults, request log and reply override (not the listen state)."""
        self.clear_faults()
        self.clear_requests()
        self.reply = self.spec.reply

    # ---- lifecycle (on the owning loop) -----------------------------------

    async def start(self) -> None:
        """Bind and serve; returns once the port accepts connections."""
        async with self._lifecycle_lock():
            if self._server is not None:
                raise RuntimeError(f"sim server {self.name} is already running")
            await self._listen()

    async def stop(self) -> None:
        """Stop serving and cancel pending timed re-accepts."""
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)
        async with self._lifecycle_lock():
            await self._close()
        await asyncio.gather(*self._draining, return_exceptions=True)

    async def refuse_async(self) -> None:
        """Close the listening socket (and every open connection)."""
        async with self._lifecycle_lock():
            await self._close()

    async def accept_async(self) -> None:
        """Listen again on the same port (no-op if listening)."""
        async with self._lifecycle_lock():
            if self._server is None:
                await self._listen()

    # ---- thread-safe wrappers ---------------------------------------------

    def refuse(self) -> None:
        """Make the port refuse connections (blocks until done)."""
        self._run_sync(self.refuse_async())

    def accept(self) -> None:
        """Listen again on the same port (blocks until listening)."""
        self._run_sync(self.accept_async())

    def _run_sync(self, coro: Coroutine[Any, Any, None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise RuntimeError(
                f"sim server {self.name} has no running event loop; start its cluster first"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError(
                "called from the sim loop itself; await refuse_async()/accept_async() instead"
            )
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=SYNC_TIMEOUT)

    # ---- internals ---------------------------------------------------------

    def _lifecycle_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._loop = loop
            self._lock = asyncio.Lock()
        return self._lock

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto must be IPPROTO_TCP (not 0): asyncio only sets TCP_NODELAY on accepted
        # sockets whose proto says TCP, and without it Nagle + delayed ACK add ~40 ms.
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
        install_log_filter()
        sock = self._bind()
        self._app.closing = asyncio.Event()
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            log_config=None,
            http="h11",
            ws="none",
            interface="asgi3",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"sim-{self.name}")
        while not server.started:
            if task.done():
                sock.close()
                task.result()  # raises the startup error if any
                raise RuntimeError(f"sim server {self.name} exited during startup")
            await asyncio.sleep(0.002)
        self._server, self._task = server, task

    async def _close(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        self._app.closing.set()  # ends hung / stalled requests
        server.should_exit = True
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        await asyncio.shield(task)  # a cancelled caller must not cancel uvicorn's shutdown
        self._server = self._task = None  # only now is the port really closed

    def _schedule_refuse(self, seconds: float) -> None:
        """Control API `POST /_sim/refuse`: go down now, come back after `seconds`."""
        timer = asyncio.get_running_loop().create_task(self._refuse_for(seconds))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _refuse_for(self, seconds: float) -> None:
        await asyncio.sleep(0)  # let the 202 answer finish first
        await self.refuse_async()
        await asyncio.sleep(seconds)
        await self.accept_async()
