"""A set of simulated providers served from one background thread / event loop.

`SimCluster` is what tests and `gateway demo` use: start it (or use it as a
context manager), read `endpoint(name)` / `env()` to configure the gateway, and
drive faults through `cluster[name]`.  `serve_forever` blocks until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType, TracebackType
from typing import Any

from gateway.sim.server import SimServer
from gateway.sim.spec import SimSpec

__all__ = ["SimCluster", "SimSpec", "serve_forever"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class SimCluster:
    def __init__(self, specs: Sequence[SimSpec], host: str = "127.0.0.1") -> None:
        names = [spec.name for spec in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate sim provider names: {', '.join(duplicates)}")
        self.host = host
        self._servers = {spec.name: SimServer(spec, host) for spec in specs}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._errors: list[BaseException] = []

    # ---- access ------------------------------------------------------------

    def __getitem__(self, name: str) -> SimServer:
        try:
            return self._servers[name]
        except KeyError:
            raise KeyError(
                f"no sim provider named {name!r}; have {sorted(self._servers)}"
            ) from None

    def __iter__(self) -> Iterator[SimServer]:
        return iter(self._servers.values())

    def __len__(self) -> int:
        return len(self._servers)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._servers)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def endpoint(self, name: str) -> str:
        """Base URL for `<NAME>_ENDPOINT`: openai ".../v1", gemini ".../v1beta",
        anthropic "http://host:port"."""
        return self[name].endpoint

    def env(self) -> dict[str, str]:
        """`<NAME>_ENDPOINT` and `<NAME>_API_KEY` (omitted when auth is off) per provider;
        NAME is upper-cased with '-' and '.' turned into '_'."""
        out: dict[str, str] = {}
        for server in self:
            prefix = server.name.upper().replace("-", "_").replace(".", "_")
            out[f"{prefix}_ENDPOINT"] = server.endpoint
            if server.api_key is not None:
                out[f"{prefix}_API_KEY"] = server.api_key
        return out

    def reset(self) -> None:
        """Reset faults, request logs and replies of every server."""
        for server in self:
            server.reset()

    # ---- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Start every server in one background thread; returns when all listen."""
        if self._thread is not None:
            raise RuntimeError("sim cluster already started")
        self._errors = []
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(ready,), name="sim-cluster", daemon=True)
        thread.start()
        if not ready.wait(START_TIMEOUT):
            raise TimeoutError("sim cluster did not start in time")
        if self._errors:
            thread.join(STOP_TIMEOUT)
            raise self._errors[0]
        self._thread = thread

    def stop(self) -> None:
        """Stop every server and join the thread (no-op when not started)."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or stop_event is None:
            return
        loop.call_soon_threadsafe(stop_event.set)
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            raise TimeoutError("sim cluster did not stop in time")
        self._thread = self._loop = self._stop_event = None
        if self._errors:
            raise RuntimeError("sim cluster shut down with errors") from self._errors[0]

    def __enter__(self) -> SimCluster:
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
        except BaseException as exc:  # reported to start()/stop()
            self._errors.append(exc)
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        servers = list(self)
        try:
            results = await asyncio.gather(*(s.start() for s in servers), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                self._errors.extend(failures)
                return
            ready.set()
            await self._stop_event.wait()
        finally:
            results = await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)
            self._errors.extend(r for r in results if isinstance(r, BaseException))


def serve_forever(
    specs: Sequence[SimSpec],
    host: str = "127.0.0.1",
    *,
    on_ready: Callable[[SimCluster], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the sims until SIGINT/SIGTERM (when called from the main thread) or
    until `stop` is set; `on_ready` is called once everything listens."""
    stop_event = stop if stop is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def handle(signum: int, frame: FrameType | None) -> None:
            stop_event.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handle)
    try:
        with SimCluster(specs, host) as cluster:
            if on_ready is not None:
                on_ready(cluster)
            while not stop_event.wait(0.2):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
