"""Canary keys: providers fail in every way, some echoing the key; nothing the gateway emits holds it.

The gateway runs as a subprocess with debug logging in JSON. Each simulator accepts only its own
recognisable key and, while faulted, echoes that key in its error body. Every response body and header,
every log line and the ``/metrics`` text are then searched for each key and every 8-character piece.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.security.support import (
    ADMIN_TOKEN,
    CANARY_KEYS,
    CLIENT_KEY,
    REPO,
    GatewayProcess,
    find_leaks,
    scrubbed_environ,
    sim_env,
    start_gateway_process,
)

FALLBACKS = ["gemini:gemini-2.0-flash", "anthropic:claude-3-5-haiku-latest"]
AGENT = {
    "name": "canary",
    "model": "openai:gpt-4o-mini",
    "config": {"fallbackModels": FALLBACKS},
}
FAST_TIMEOUTS = {
    "connect": "1s",
    "read": "250ms",
    "write": "1s",
    "pool": "1s",
    "firstToken": "250ms",
}
CONFIG: dict[str, Any] = {
    "server": {"drainTimeout": "2s"},
    "logging": {"level": "debug", "format": "json"},
    "providers": {
        name: {"timeouts": FAST_TIMEOUTS, "models": [model]}
        for name, model in (
            ("openai", "gpt-4o-mini"),
            ("gemini", "gemini-2.0-flash"),
            ("anthropic", "claude-3-5-haiku-latest"),
        )
    },
    "runtime": {"router": {"providerTimeout": "1s", "providerRetries": 0}},
    # Failures must keep reaching the simulators: no breaker opens during the test.
    "health": {"breaker": {"failMax": 10000}, "minCalls": 10000},
    "auth": {"enabled": True, "clientKeys": [{"name": "canary-client", "keyEnv": "CLIENT_KEY"}]},
}
# Every error status a provider may answer with; each error body echoes the provider's key.
STATUSES = (400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529)


@dataclass(frozen=True)
class Exchange:
    label: str
    status: int
    headers: list[tuple[str, str]]
    body: str

    @property
    def text(self) -> str:
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"{self.status}\n{head}\n\n{self.body}"


class Driver:
    """Sends every kind of request to the gateway and keeps every answer."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.http = gateway.client(headers={"authorization": f"Bearer {CLIENT_KEY}"})
        self.exchanges: list[Exchange] = []
        created = self.http.post("/agents", json=AGENT)
        assert created.status_code == 201, created.text
        agent_id = created.json()["agentId"]
        session = self.http.post(f"/agents/{agent_id}/sessions", json={})
        assert session.status_code == 201, session.text
        self.messages_url = f"/agents/{agent_id}/sessions/{session.json()['sessionId']}/messages"

    def send(
        self, label: str, method: str, url: str, client: httpx.Client | None = None, **kw: Any
    ) -> Exchange:
        with (client or self.http).stream(method, url, **kw) as response:
            body = response.read().decode("utf-8", "replace")
        exchange = Exchange(
            f"{label}: {method} {url}", response.status_code, response.headers.multi_items(), body
        )
        self.exchanges.append(exchange)
        return exchange

    def routed(self, phase: str) -> dict[str, Exchange]:
        """Both APIs, plain and streaming."""
        chat = {
            "model": "openai:gpt-4o-mini",
            "fallbacks": FALLBACKS,
            "messages": [{"role": "user", "content": "one two three four five six"}],
        }
        message = {"role": "user", "content": "one two three four five six"}
        return {
            "agentos": self.send(phase, "POST", self.messages_url, json=message),
            "agentos-stream": self.send(
                phase, "POST", f"{self.messages_url}?stream=true", json=message
            ),
            "v1": self.send(phase, "POST", "/v1/chat/completions", json=chat),
            "v1-stream": self.send(
                phase, "POST", "/v1/chat/completions", json={**chat, "stream": True}
            ),
        }

    def reload(self) -> Exchange:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        reloaded = self.send("reload", "POST", "/admin/reload", headers=admin)
        assert reloaded.status == 200, reloaded.text
        return reloaded

    def operations(self) -> None:
        for path in (
            "/health",
            "/ready",
            "/providers",
            "/metrics",
            "/v1/models",
            "/v1/models/openai:gpt-4o-mini",
            "/schema/openapi.json",
            "/agents",
            self.messages_url,
        ):
            response = self.send("ops", "GET", path)
            assert response.status == 200, response.text
        with self.gateway.client() as anonymous:
            self.send("anonymous", "GET", "/agents", client=anonymous)
            self.send("anonymous", "POST", "/admin/reload", client=anonymous)
            self.send(
                "wrong admin token",
                "POST",
                "/admin/reload",
                client=anonymous,
                headers={"authorization": "Bearer not-the-admin-token"},
            )


@pytest.fixture
def canary_gateway(canary_sims: SimCluster, tmp_path: Path) -> Iterator[GatewayProcess]:
    gateway = start_gateway_process(tmp_path, CONFIG, sim_env(canary_sims), name="canary")
    try:
        yield gateway
    finally:
        gateway.stop()


def _set_all(sims: SimCluster, **faults: Any) -> None:
    for server in sims:
        server.clear_faults()
        if "error_message" in faults:
            # Each provider echoes its own key, like a provider quoting the bad credential back.
            key = server.api_key or ""
            faults = {**faults, "error_message": f"invalid api key {key}: Bearer {key}"}
        server.set_faults(**faults)


@pytest.fixture
def driver(canary_gateway: GatewayProcess) -> Iterator[Driver]:
    driver = Driver(canary_gateway)
    yield driver
    driver.http.close()


def test_no_provider_key_leaks_when_providers_fail_in_every_way(
    canary_gateway: GatewayProcess, canary_sims: SimCluster, driver: Driver
) -> None:
    healthy = driver.routed("healthy")
    assert {e.status for e in healthy.values()} <= {200, 207}, healthy

    for status in STATUSES:
        _set_all(canary_sims, status_always=status, retry_after=0, error_message="echo")
        before = sum(s.request_count for s in canary_sims)
        answers = driver.routed(f"status {status}")
        assert sum(s.request_count for s in canary_sims) > before, f"no upstream call for {status}"
        if status == 400:
            # Passed back to the client: the echoed key must have been cut out of the message.
            assert answers["v1"].status == 400, answers["v1"].text
            assert "[redacted]" in answers["v1"].body, answers["v1"].text
        else:
            assert all(a.status >= 400 for a in answers.values()), answers
        driver.reload()  # 401/403 mark keys unusable until a reload

    # Timeouts: no answer at all, or headers too late.
    _set_all(canary_sims, hang=True)
    answers = driver.routed("hang")
    assert answers["v1"].status == 504, answers["v1"].text
    _set_all(canary_sims, latency_ms=800)
    driver.routed("slow")

    # Streams cut before the first byte (fail over), after it (explicit error), or stalled.
    _set_all(canary_sims, cut_after_chunks=0)
    driver.routed("cut before first byte")
    _set_all(canary_sims, cut_after_chunks=2)
    cut = driver.routed("cut after first byte")
    assert '"type":"error"' in cut["agentos-stream"].body.replace(" ", ""), cut["agentos-stream"]
    _set_all(canary_sims, stall_after_chunks=2)
    driver.routed("stalled")

    # Only the primary fails: the fallback serves.
    for server in canary_sims:
        server.clear_faults()
    canary_sims["openai"].set_faults(
        status_always=500, error_message=f"boom {CANARY_KEYS['openai']}"
    )
    fallback = driver.routed("fallback")
    assert fallback["v1"].status == 200, fallback["v1"].text
    assert dict(fallback["v1"].headers)["x-gateway-fallback"] == "true"

    for server in canary_sims:
        server.clear_faults()
    driver.reload()
    driver.operations()
    metrics = next(e for e in driver.exchanges if e.label.endswith("GET /metrics"))
    assert "gateway_upstream_requests_total" in metrics.body
    driver.http.close()
    canary_gateway.stop()  # every line flushed before the log is searched

    secrets = [*CANARY_KEYS.values(), ADMIN_TOKEN]
    for exchange in driver.exchanges:
        assert find_leaks(exchange.text, secrets) == [], exchange.label

    log = canary_gateway.log_text()
    events = canary_gateway.log_events()
    assert len(events) > 50, "the log is too short for the search to mean anything"
    assert any(e.get("level") == "debug" for e in events), "debug logging was not on"
    assert any(e.get("event") == "auth_enabled" for e in events)
    assert any(e.get("event") == "provider_key_rejected" for e in events)
    assert find_leaks(log, secrets) == []
    # The client's own key is not the gateway's secret, but it has no business in the log either.
    assert find_leaks(log, [CLIENT_KEY]) == []


# An exception whose text, and whose frame's locals, hold a key: logged by our code and by uvicorn.
_LOG_AN_EXCEPTION = """
import logging, sys
import structlog
from gateway.observability.logging import configure_logging
from gateway.redaction import Redactor

fmt, key = sys.argv[1], sys.argv[2]
configure_logging("debug", fmt, Redactor([key]))

def call_upstream(api_key):
    headers = {"authorization": "Bearer " + api_key}
    raise RuntimeError("upstream said: invalid key " + api_key + " in " + repr(headers))

try:
    call_upstream(key)
except RuntimeError:
    structlog.get_logger("gateway").exception("adapter_failed")
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
"""


@pytest.mark.parametrize(
    "fmt",
    [
        "json",
        "console",
    ],
)
def test_exception_text_in_the_log_is_redacted_in_every_format(fmt: str) -> None:
    key = CANARY_KEYS["openai"]
    done = subprocess.run(
        [sys.executable, "-c", _LOG_AN_EXCEPTION, fmt, key],
        cwd=REPO,
        env=scrubbed_environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = done.stdout + done.stderr
    assert "adapter_failed" in output
    assert "Exception in ASGI application" in output
    assert "RuntimeError" in output  # the traceback itself is there, only the key is not
    assert find_leaks(output, [key]) == []
