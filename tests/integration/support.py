"""Helpers for integration tests: a real server in a thread, and the guide's agent."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from litestar import Litestar


class ServerThread:
    """A Litestar app under a real uvicorn server, in a thread, on a free loopback port."""

    def __init__(self, app: Litestar) -> None:
        self.app = app
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else Nagle adds ~40 ms a reply).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("gateway server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until ``predicate()`` holds (polled every 10 ms), or None after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.01)
    return None


ROUTING_AGENT = {
    "name": "routing-agent",
    "model": "openai:gpt-4o-mini",
    "tools": [],
    "config": {"fallbackModel": "gemini:flash-1.5"},
}


def new_session(client: httpx.Client, agent: dict[str, Any] | None = None) -> str:
    """Create an agent and a session; returns the messages URL."""
    created = client.post("/agents", json=agent or ROUTING_AGENT)
    assert created.status_code == 201, created.text
    agent_id = created.json()["agentId"]
    session = client.post(f"/agents/{agent_id}/sessions", json={})
    assert session.status_code == 201, session.text
    return f"/agents/{agent_id}/sessions/{session.json()['sessionId']}/messages"
