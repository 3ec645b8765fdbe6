"""Helpers of the security suite: the gateway as a real subprocess, and tiny loopback upstreams.

The gateway runs as ``python -m gateway serve`` (not in a thread) so its logging is configured exactly
as in production and every line it writes lands in one file the tests can grep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.sim.cluster import SimCluster, SimSpec

REPO = Path(__file__).resolve().parents[2]

# Fake provider keys, recognisable anywhere they might surface. One per wire format.
CANARY_KEYS = {
    "openai": "sk-canary-7f3a9c2e41b8d6f0a5e3c9b2d4f6a8e1",
    "gemini": "AIzaCanary-e29b41d4a716446655440000c0ffee",
    "anthropic": "sk-ant-canary-5d1e8b3f7a9c2046e8d1b5f3a7c9",
}
ADMIN_TOKEN = "admin-canary-0b7e2d9a4c6f1835"
CLIENT_KEY = "client-canary-93e1f7b2a6d4c508"
CANARY_SPECS = (
    SimSpec("openai", "openai", api_key=CANARY_KEYS["openai"]),
    SimSpec("gemini", "gemini", api_key=CANARY_KEYS["gemini"]),
    SimSpec("anthropic", "anthropic", api_key=CANARY_KEYS["anthropic"]),
)
# Variables of the test process that must not reach the gateway: keys and endpoints come from .env.
_SCRUBBED_SUFFIXES = ("_API_KEY", "_ENDPOINT")
_SCRUBBED = frozenset({"GATEWAY_ADMIN_TOKEN", "PROMETHEUS_MULTIPROC_DIR"})


def sim_env(cluster: SimCluster) -> dict[str, str]:
    """Endpoints and canary keys of the simulators, plus the admin token and a client key."""
    return {**cluster.env(), "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN, "CLIENT_KEY": CLIENT_KEY}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrubbed_environ() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(_SCRUBBED_SUFFIXES) and k not in _SCRUBBED
    }


def pieces(secret: str, size: int = 8) -> set[str]:
    """The secret and every ``size``-character substring of it."""
    return {secret} | {secret[i : i + size] for i in range(len(secret) - size + 1)}


def find_leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """Every secret piece found in ``text`` (empty: nothing leaked)."""
    return sorted({p for s in secrets for p in pieces(s) if p in text})


@dataclass
class GatewayProcess:
    """``gateway serve`` in a subprocess; stdout and stderr go to ``log_path``."""

    url: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if line.strip()]

    def log_events(self) -> list[dict[str, Any]]:
        """Every log line, parsed (a line that is not a JSON object fails the test)."""
        events = []
        for line in self.log_lines():
            event = json.loads(line)
            assert isinstance(event, dict), line
            events.append(event)
        return events

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 15), **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_gateway_process(
    workdir: Path,
    config: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    name: str = "gateway",
) -> GatewayProcess:
    """Write ``config`` as YAML and ``env`` as a .env file, serve on a free loopback port, wait ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yaml"
    raw = {"storage": {"url": f"sqlite+aiosqlite:///{workdir / f'{name}.db'}"}, **config}
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env_path = workdir / f"{name}.env"
    env_path.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    log_path = workdir / f"{name}.log"
    port = free_port()
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(config_path),
                "--env-file",
                str(env_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=scrubbed_environ(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    gateway = GatewayProcess(f"http://127.0.0.1:{port}", log_path, proc)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{gateway.log_text()}")
        try:
            if httpx.get(f"{gateway.url}/ready", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError(f"gateway did not become ready:\n{gateway.log_text()}")
        time.sleep(0.1)


# -- tiny loopback upstreams -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Responder = Callable[[Received], Answer]


@dataclass
class LoopbackUpstream:
    """A plain HTTP server on a free loopback port that records every request and answers with
    ``responder`` (raw headers kept, nothing redacted: what the gateway sent is what we see)."""

    responder: Responder
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                upstream.received.append(request)
                answer = upstream.responder(request)
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def json_answer(status: int, payload: object) -> Answer:
    return Answer(status, json.dumps(payload).encode(), (("content-type", "application/json"),))
