"""One structured log line per request with the routing story; breaker transitions are logged too."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from structlog.testing import capture_logs

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, new_session


def test_request_line_carries_the_routing_decision_and_no_prompt(
    client: httpx.Client, sims: SimCluster
) -> None:
    url = new_session(client)
    sims["openai"].set_faults(status_always=503)
    with capture_logs() as logs:
        response = client.post(
            url, json={"content": "a very private prompt"}, headers={"X-Request-ID": "req-42"}
        )
        # The line is written when the response has been sent: wait for it.
        deadline = time.monotonic() + 5
        while not [e for e in logs if e.get("path") == url] and time.monotonic() < deadline:
            time.sleep(0.01)
    assert response.status_code == 200
    lines = [e for e in logs if e["event"] == "request" and e.get("path") == url]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-42"
    assert line["api"] == "agentos"
    assert line["requested_model"] == "openai:gpt-4o-mini"
    assert line["served_model"] == "gemini:gemini-1.5-flash"
    assert line["provider"] == "gemini"
    assert line["decision"] == "fallback"
    assert line["reason"] == "error"
    assert line["attempts"] == 2
    assert line["status"] == 200
    assert line["duration_ms"] > 0
    assert "upstream_ms" in line
    assert all("a very private prompt" not in repr(e) for e in logs)


def test_breaker_transitions_and_reloads_are_logged(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
    sims: SimCluster,
) -> None:
    settings = settings_factory(env=sim_env, health={"breaker": {"failMax": 2}})
    server = start_gateway(settings, settings_loader=lambda: settings)
    sims["openai"].set_faults(status_always=503)
    with capture_logs() as logs, httpx.Client(base_url=server.url, timeout=10) as client:
        url = new_session(client)
        for _ in range(2):
            client.post(url, json={"content": "x"})
        client.post("/admin/reload")
    transitions = [e for e in logs if e["event"] == "breaker_transition"]
    assert [(e["provider"], e["from_state"], e["to_state"]) for e in transitions] == [
        ("openai", "closed", "open")
    ]
    assert any(e["event"] == "config_applied" for e in logs)
