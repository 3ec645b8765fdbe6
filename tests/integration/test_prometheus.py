"""The dashboards and alert rules against a real Prometheus scraping a real gateway.

A gateway over the simulated providers takes traffic: healthy calls and streams, a provider whose key is
rejected (401), then a 503 storm on the primary that fails over and trips its breaker. A real
``prometheus`` (Debian's package, see ``scripts/install-ci-deps.sh``) scrapes it every second and
evaluates ``deploy/prometheus/alerts.yml`` with every ``for:`` cut to 0s. Then every PromQL expression of
every dashboard panel must return data, and exactly the alerts this traffic deserves must fire.

Counters are born on their first increment and Prometheus 2.42 takes a series' first sample as its
baseline, so the warm-up creates the series before the first scrape, and the traffic that alerts
must see happens after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.prometheus_server import (
    PrometheusServer,
    fast_alert_rules,
    load_dashboards,
    panel_queries,
    require_binary,
)
from tests.integration.support import ROUTING_AGENT, ServerThread, new_session

pytestmark = pytest.mark.slow

HEALTH = {"breaker": {"failMax": 3, "resetTimeout": "10m"}}
GROQ_AGENT = {
    "name": "groq-agent",
    "model": "groq:llama3-70b-8192",
    "config": {"fallbackModel": "openai:gpt-4o-mini"},
}
DRILL_PROVIDER = "openai"  # the provider that sees every kind of traffic below
SUBSTITUTIONS = {
    "${provider}": DRILL_PROVIDER,
    "$provider": DRILL_PROVIDER,
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$__interval": "15s",
}
EXPECTED_FIRING = {
    "GatewayBreakerOpen": {"openai"},
    "GatewayHighFallbackRate": None,  # not per provider
    "GatewayUpstreamErrorRate": {"openai"},
    "GatewayProviderKeyUnusable": {"groq"},
}
EXPECTED_QUIET = {"GatewayAllCandidatesUnhealthy"}
# The AgentOS API's overhead includes the store (SQLite here: p99 of 50-100 ms on a busy test machine),
# right at this alert's 50 ms limit; the OpenAI API's (a few ms) must stay far below it.
OVERHEAD_ALERT = "GatewayOverheadP99High"


def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    return expr


class Traffic:
    """Requests to the gateway, each checked for the answer the scenario expects."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.openai_agent = new_session(http, ROUTING_AGENT)
        self.groq_agent = new_session(http, GROQ_AGENT)

    def ask(self, url: str, served: str, *, stream: bool = False) -> None:
        body = {"role": "user", "content": "a b c d"}
        if stream:
            with self.http.stream("POST", f"{url}?stream=true", json=body) as response:
                text = "".join(response.iter_text())
            assert response.status_code == 207, text
            assert response.headers["x-gateway-provider"] == served
            return
        response = self.http.post(url, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["routing"]["provider"] == served, response.text

    def v1(self, model: str) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        response = self.http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text


@pytest.fixture
def gateway_server(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> ServerThread:
    return start_gateway(settings_factory(env=sim_env, health=HEALTH))


@pytest.fixture
def prometheus(tmp_path: Path, gateway_server: ServerThread) -> Iterator[PrometheusServer]:
    require_binary("prometheus")
    server = PrometheusServer(
        tmp_path / "prometheus", [f"127.0.0.1:{gateway_server.port}"], fast_alert_rules()
    )
    yield server  # started by the test, after the warm-up
    server.stop()


def _warm_up(traffic: Traffic, sims: SimCluster) -> None:
    """Create every series the scenario moves later, before Prometheus takes its baseline."""
    for stream in (False, True):
        traffic.ask(traffic.openai_agent, "openai", stream=stream)
        traffic.ask(traffic.groq_agent, "groq", stream=stream)
    traffic.v1("anthropic:claude-3-5-haiku-latest")
    sims["openai"].set_faults(statuses=[503])  # one failover: server_error and fallback series
    traffic.ask(traffic.openai_agent, "gemini")


def _drive(traffic: Traffic, sims: SimCluster) -> None:
    # Healthy traffic, spread over several scrapes.
    for i in range(12):
        traffic.ask(traffic.openai_agent, "openai", stream=i % 2 == 1)
        traffic.ask(traffic.groq_agent, "groq")
        time.sleep(0.3)
    for _ in range(40):  # enough OpenAI-API traffic for the overhead alert's guard (0.1 req/s)
        traffic.v1("anthropic:claude-3-5-haiku-latest")
    # groq's key is rejected: fail over to openai; groq stays out until a reload.
    sims["groq"].set_faults(status_always=401)
    traffic.ask(traffic.groq_agent, "openai")
    time.sleep(1.5)
    # A 503 storm on openai: three failovers trip its breaker, then traffic skips it.
    sims["openai"].set_faults(status_always=503)
    for _ in range(4):
        traffic.ask(traffic.openai_agent, "gemini")
    time.sleep(1.5)  # the breaker_open series gets its baseline
    for i in range(40):
        traffic.ask(traffic.openai_agent, "gemini", stream=i % 4 == 0)
        time.sleep(0.05)


def _wait_for_alerts(prometheus: PrometheusServer, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        rules = prometheus.alerting_rules()
        if all(rules[name]["state"] == "firing" for name in EXPECTED_FIRING):
            return rules
        if time.monotonic() > deadline:
            return rules
        time.sleep(0.5)


def _check_dashboards(prometheus: PrometheusServer) -> None:
    assert DRILL_PROVIDER in prometheus.label_values("provider", "gateway_provider_up")
    problems = []
    queries = 0
    for name, dashboard in load_dashboards().items():
        for title, ref, expr in panel_queries(dashboard):
            queries += 1
            promql = substitute(expr)
            result = prometheus.query(promql)
            values = [float(sample["value"][1]) for sample in result]
            if not result:
                problems.append(f"{name} / {title} / {ref}: no data for {promql}")
            elif not any(math.isfinite(v) for v in values):
                problems.append(f"{name} / {title} / {ref}: only NaN for {promql}")
    assert queries >= 40
    assert not problems, "\n".join(problems)


def _check_alerts(rules: dict[str, Any]) -> None:
    broken = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert not broken, broken
    for name, providers in EXPECTED_FIRING.items():
        rule = rules[name]
        firing = [a for a in rule["alerts"] if a["state"] == "firing"]
        assert rule["state"] == "firing" and firing, (name, rule)
        if providers is not None:
            assert {a["labels"]["provider"] for a in firing} == providers, (name, firing)
        for alert in firing:
            assert alert["annotations"]["runbook_url"].startswith("docs/runbook.md#")
    for name in EXPECTED_QUIET:
        assert rules[name]["state"] == "inactive", (name, rules[name])
    assert set(rules) == {*EXPECTED_FIRING, *EXPECTED_QUIET, OVERHEAD_ALERT}


def _check_overhead_alert(prometheus: PrometheusServer) -> None:
    """Quiet for the OpenAI API; for AgentOS, firing exactly when its expression holds."""

    def firing() -> set[str]:
        rule = prometheus.alerting_rules()[OVERHEAD_ALERT]
        return {a["labels"]["api"] for a in rule["alerts"] if a["state"] == "firing"}

    query = prometheus.alerting_rules()[OVERHEAD_ALERT]["query"]
    for _ in range(5):  # read the expression between two identical alert states
        before = firing()
        holds = {sample["metric"]["api"] for sample in prometheus.query(query)}
        after = firing()
        if before == after:
            break
    guard = 'sum(rate(gateway_overhead_seconds_count{api="openai"}[5m])) > 0.1'
    assert prometheus.query(guard), "too little OpenAI-API traffic to test the overhead alert"
    assert "openai" not in after
    assert after == holds


def test_dashboards_and_alerts_against_a_real_prometheus(
    gateway_server: ServerThread, prometheus: PrometheusServer, sims: SimCluster
) -> None:
    with httpx.Client(base_url=gateway_server.url, timeout=10) as http:
        traffic = Traffic(http)
        _warm_up(traffic, sims)
        prometheus.start()
        prometheus.wait_for('gateway_fallbacks_total{from_provider="openai"}')  # first scrape
        _drive(traffic, sims)

        rules = _wait_for_alerts(prometheus)
        health = {p["provider"]: p for p in http.get("/health").json()["providers"]}
    assert health["openai"]["breaker"]["state"] == "open"
    assert health["groq"]["keyRejected"] is True
    _check_dashboards(prometheus)
    _check_alerts(rules)
    _check_overhead_alert(prometheus)
