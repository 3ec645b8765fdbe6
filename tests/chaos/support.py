"""Helpers of the chaos suite: a fake clock, a gateway "rig" over the simulators, metrics scraping."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread as _IntegrationServerThread

# Primary and fallback of the chaos agent.
AGENT = {
    "name": "chaos",
    "model": "openai:gpt-4o-mini",
    "config": {"fallbackModel": "gemini:flash-1.5"},
}
PRIMARY = "openai:gpt-4o-mini"
FALLBACK = "gemini:gemini-1.5-flash"


class ServerThread(_IntegrationServerThread):
    """The integration tests' server thread on a socket made with ``IPPROTO_TCP``: asyncio sets
    ``TCP_NODELAY`` only on accepted sockets whose protocol says TCP, and without it Nagle and delayed
    ACKs add about 40 ms to every request, which a load test cannot afford."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._sock.close()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"


class FakeClock:
    """The breakers' and statistics' clock, moved by the test (the app reads it from its thread)."""

    def __init__(self) -> None:
        self.now = 5000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class Metrics:
    """One scrape of ``/metrics``; ``value`` sums the samples whose labels include ``labels``."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            v
            for n, have, v in self.samples
            if n == name and all(have.get(k) == want for k, want in labels.items())
        )


def delta(before: Metrics, after: Metrics, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


@dataclass
class StreamResult:
    status: int
    headers: httpx.Headers
    frames: list[dict[str, Any]]
    elapsed_s: float

    @property
    def text(self) -> str:
        return "".join(str(f.get("delta", "")) for f in self.frames if f.get("type") == "token")

    @property
    def types(self) -> list[str]:
        return [str(f.get("type")) for f in self.frames]


@dataclass
class Rig:
    """A real gateway server over the simulators, its reloadable environment and its fake clock."""

    server: ServerThread
    http: httpx.Client
    env: dict[str, str]
    clock: FakeClock
    sims: SimCluster
    clients: list[httpx.Client] = field(default_factory=list)
    default_agent: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> httpx.Client:
        """Another client of this gateway (one per thread), closed with the rig."""
        own = httpx.Client(base_url=self.url, timeout=15)
        self.clients.append(own)
        return own

    def agent(self, agent: Mapping[str, Any] | None = None) -> str:
        """Create an agent (a unique name is added) and return its id."""
        body = {**(agent or AGENT), "name": f"chaos-{uuid.uuid4().hex[:12]}"}
        created = self.http.post("/agents", json=body)
        assert created.status_code == 201, created.text
        agent_id: str = created.json()["agentId"]
        return agent_id

    def session(self, agent_id: str | None = None) -> str:
        """A new session (of the default chaos agent unless given); returns its messages URL."""
        if agent_id is None:
            if self.default_agent is None:
                self.default_agent = self.agent()
            agent_id = self.default_agent
        session = self.http.post(f"/agents/{agent_id}/sessions", json={})
        assert session.status_code == 201, session.text
        return f"/agents/{agent_id}/sessions/{session.json()['sessionId']}/messages"

    def ask(
        self, url: str, text: str = "hi", *, client: httpx.Client | None = None, **headers: str
    ) -> httpx.Response:
        return (client or self.http).post(
            url, json={"role": "user", "content": text}, headers=headers
        )

    def ok(self, url: str, text: str = "hi", **headers: str) -> dict[str, Any]:
        """The routing record of a request that must succeed."""
        response = self.ask(url, text, **headers)
        assert response.status_code == 200, response.text
        routing: dict[str, Any] = response.json()["routing"]
        return routing

    def stream(
        self, url: str, text: str = "a b c d e f g h i j", *, client: httpx.Client | None = None
    ) -> StreamResult:
        started = time.monotonic()
        with (client or self.http).stream(
            "POST", f"{url}?stream=true", json={"role": "user", "content": text}
        ) as response:
            frames = [
                json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
            ]
        return StreamResult(
            response.status_code, response.headers, frames, time.monotonic() - started
        )

    def provider(self, name: str) -> dict[str, Any]:
        rows = {p["provider"]: p for p in self.http.get("/health").json()["providers"]}
        row: dict[str, Any] = rows[name]
        return row

    def breaker(self, name: str) -> str:
        return str(self.provider(name)["breaker"]["state"])

    def metrics(self) -> Metrics:
        return Metrics(self.http.get("/metrics").text)

    def reload(self) -> dict[str, str]:
        response = self.http.post("/admin/reload")
        assert response.status_code == 200, response.text
        providers: dict[str, str] = response.json()["providers"]
        return providers

    def wait_idle(self, *names: str, timeout_s: float = 10.0) -> None:
        """Until no upstream call of these providers is in flight."""
        wait_for(lambda: all(self.provider(n)["inFlight"] == 0 for n in names), timeout_s)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.01) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(step_s)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
