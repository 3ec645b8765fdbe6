"""Running the app under uvicorn: one worker in-process, or several through an import-string factory.

SIGHUP reloads configuration and ``.env`` (like ``POST /admin/reload``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Generator
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import uvicorn
from litestar import Litestar
from prometheus_client import multiprocess
from uvicorn.supervisors import Multiprocess

from gateway.app import create_app
from gateway.config.loader import ConfigError, load_settings
from gateway.config.settings import Settings
from gateway.observability.logging import configure_logging
from gateway.redaction import Redactor

log = structlog.get_logger("gateway")

_CONFIG_VAR = "GATEWAY_CONFIG_FILE"
_ENV_FILE_VAR = "GATEWAY_ENV_FILE"
_MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"
_LOOP = "gateway.accept:new_event_loop" if sys.platform != "win32" else "asyncio"  # no uvloop there


def _loader(config: str | None, env_file: str | None) -> Any:
    def load() -> Settings:
        return load_settings(config, env_file)

    return load


def build_served_app(
    settings: Settings, config: str | None, env_file: str | None, redactor: Redactor
) -> Litestar:
    app = create_app(settings, settings_loader=_loader(config, env_file), redactor=redactor)

    async def install_sighup(app: Litestar) -> None:
        loop = asyncio.get_running_loop()

        def on_hup() -> None:
            async def reload() -> None:
                try:
                    await app.state.gateway.reload()
                    log.info("reloaded", trigger="SIGHUP")
                except ConfigError as exc:
                    log.error("reload_refused", error=str(exc))

            loop.create_task(reload())  # noqa: RUF006 - fire and forget, logged

        try:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        except (ValueError, NotImplementedError, RuntimeError):
            log.warning("sighup_unavailable")

    app.on_startup.append(install_sighup)
    app.on_startup.append(settle_heap)
    return app


# The youngest generation is collected after this many net allocations (Python's default: 700). At
# c=64 about 3,000 objects of the requests in flight are young at any time, and a collection walks
# them all: with 700, 27 collections a second took 3.5 % of the CPU of gapped streams, with 7,000
# (2 a second, each under 6 ms) 1.2 %. The requests make no cyclic garbage to wait for.
_YOUNG_GC_THRESHOLD = 7_000


def settle_heap(app: Litestar) -> None:
    """Move everything startup allocated (modules, the app, settings, clients: most of the heap) out
    of the cyclic collector's reach. Otherwise each full collection walks it all again, on the event
    loop, in the middle of requests: measured, the freeze takes about 10 % off the CPU per request and
    most of the p99 at c=16 (docs/performance.md). Then collect the young less often (see
    ``_YOUNG_GC_THRESHOLD``). Served processes only: tests build many apps."""
    del app
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def _fresh_multiproc_dir(settings: Settings) -> str:
    """prometheus-client's multiprocess directory, wiped: stale files would add old counts."""
    path = Path(settings.metrics_multiproc_dir or tempfile.mkdtemp(prefix="gateway-metrics-"))
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return str(path)


def worker_app() -> Litestar:
    """Factory for ``--workers N``: each worker process loads the same files."""
    config = os.environ.get(_CONFIG_VAR) or None
    env_file = os.environ.get(_ENV_FILE_VAR) or None
    settings = load_settings(config, env_file)
    redactor = Redactor(settings.secrets())
    configure_logging(settings.logging.level, settings.logging.format, redactor)
    app = build_served_app(settings, config, env_file, redactor)

    def forget_worker(app: Litestar) -> None:
        # Live gauges (in-flight requests) of a stopped worker must not linger in the sum.
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    app.on_shutdown.append(forget_worker)
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn, with a readiness grace period: the first SIGTERM/SIGINT turns ``/ready`` to 503 and
    only after ``delay_s`` does uvicorn stop accepting and drain in-flight requests."""

    def __init__(self, config: uvicorn.Config, app: Litestar, delay_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._delay_s = delay_s
        self._draining = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the signal after shutdown; a drained shutdown is a clean exit (0).
            self._captured_signals.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._delay_s <= 0:
            self._app.state.draining = True
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._app.state.draining = True
        log.info("draining", delay_s=self._delay_s)
        timer = threading.Timer(self._delay_s, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()


def run_workers(workers: int, common: dict[str, Any]) -> None:
    """``uvicorn.run`` with ``workers``, but on a socket bound with ``SO_REUSEPORT`` where the
    platform has it: each worker then listens on a queue of its own and the kernel spreads new
    connections over them (gateway/accept.py), instead of the fastest worker taking a burst."""
    config = uvicorn.Config("gateway.server:worker_app", factory=True, workers=workers, **common)
    if not hasattr(socket, "SO_REUSEPORT") or _LOOP == "asyncio":
        sock = config.bind_socket()
    else:
        from gateway.accept import reuse_port_socket  # uvloop's module: not on Windows

        sock = reuse_port_socket(config.host, config.port)
        log.info("listening", host=config.host, port=sock.getsockname()[1], reuse_port=True)
    Multiprocess(config, sockets=[sock]).run()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost could resolve anywhere


def check_exposure(settings: Settings, host: str) -> None:
    """Without client authentication the gateway serves only this machine."""
    if settings.auth.enabled:
        return
    if not _is_loopback(host):
        raise ConfigError(
            f"auth.enabled is false, so the gateway may only listen on loopback, not {host!r}: "
            "enable auth (auth.enabled: true with clientKeys) or bind to 127.0.0.1"
        )


def serve(
    settings: Settings,
    *,
    host: str | None,
    port: int | None,
    workers: int,
    config: str | None,
    env_file: str | None,
) -> int:
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    check_exposure(settings, host)  # refused before anything else is set up
    redactor = Redactor(settings.secrets())
    configure_logging(settings.logging.level, settings.logging.format, redactor)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        # The gateway never uses the client's address, so uvicorn need not rewrite it from
        # X-Forwarded-For on every request.
        "proxy_headers": False,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.server.drain_timeout),
        "lifespan": "on",
        # uvloop, accepting a burst of new connections in one loop turn (gateway/accept.py)
        "loop": _LOOP,
    }
    if settings.auth.enabled:
        log.info("auth_enabled", client_keys=len(settings.client_keys))
    else:
        log.warning("auth_disabled", detail="no client authentication: serving on loopback only")
    log.info("starting", host=host, port=port, workers=workers)
    if workers > 1:
        os.environ[_CONFIG_VAR] = str(settings.config_path or "")
        os.environ[_ENV_FILE_VAR] = str(settings.env_file or "")
        os.environ[_MULTIPROC_VAR] = _fresh_multiproc_dir(settings)
        run_workers(workers, common)
    else:
        app = build_served_app(settings, config, env_file, redactor)
        uv_config = uvicorn.Config(app, **common)
        server = DrainingServer(uv_config, app, settings.server.shutdown_delay)
        # A bound socket, as uvicorn hands each of several workers: the loop then serves it with
        # an AcceptServer (gateway/accept.py) instead of libuv's one-accept-per-turn server.
        server.run(sockets=[uv_config.bind_socket()])
    return 0
