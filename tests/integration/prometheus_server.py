"""A real Prometheus server for tests: Debian's ``prometheus`` binary on a free loopback port.

CI installs Debian's ``prometheus`` package (``scripts/install-ci-deps.sh``), which brings ``prometheus``
and ``promtool``. A test that needs one of them fails when it is missing, so that no check is silently
skipped; ``GATEWAY_ALLOW_MISSING_PROMETHEUS=1`` turns that failure into a skip on a developer's laptop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
import yaml

ALLOW_MISSING_ENV = "GATEWAY_ALLOW_MISSING_PROMETHEUS"
REPO = Path(__file__).resolve().parents[2]
ALERTS_FILE = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS_DIR = REPO / "dashboards"


def require_binary(name: str) -> str:
    """The path of ``name`` (promtool, prometheus); fails the test when it is missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = (
        f"{name} is not on PATH: install Debian's 'prometheus' package "
        "(sudo bash scripts/install-ci-deps.sh)"
    )
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        pytest.skip(f"{message}; skipped because {ALLOW_MISSING_ENV}=1")
    pytest.fail(f"{message}, or set {ALLOW_MISSING_ENV}=1 to skip this check on a laptop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fast_alert_rules(source: Path = ALERTS_FILE) -> dict[str, Any]:
    """The alert rules with every ``for:`` set to 0s, so a test sees them fire within seconds."""
    rules: dict[str, Any] = yaml.safe_load(source.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    return rules


class PrometheusServer:
    """``prometheus`` scraping the given targets every second, rules evaluated every second."""

    def __init__(
        self, workdir: Path, targets: list[str], rules: dict[str, Any] | None = None
    ) -> None:
        self.binary = require_binary("prometheus")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "scrape_configs": [
                {
                    "job_name": "llm-gateway",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        if rules is not None:
            (workdir / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
            config["rule_files"] = [str(workdir / "alerts.yml")]
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._process: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=10)

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 30) -> None:
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited at startup:\n{self.log()}")
            try:
                if self._http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout_s}s:\n{self.log()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._http.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def _api(self, path: str, **params: str) -> Any:
        response = self._http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert response.status_code == 200, f"{path} {params}: {response.status_code} {body}"
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result as a list of ``{"metric": {...}, "value": [ts, "v"]}``."""
        data = self._api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self._api(f"label/{label}/values", **{"match[]": match})
        return values

    def alerting_rules(self) -> dict[str, dict[str, Any]]:
        """Every alerting rule by name, with its ``state``, ``health``, ``lastError`` and ``alerts``."""
        data = self._api("rules", type="alert")
        return {rule["name"]: rule for group in data["groups"] for rule in group["rules"]}

    def wait_for(self, expr: str, timeout_s: float = 15) -> list[dict[str, Any]]:
        """Polls ``expr`` until it returns something (a scrape happened, a series appeared)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr!r} still empty after {timeout_s}s\n{self.log()}")
            time.sleep(0.2)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of ``dashboards/`` by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def iter_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Panels in order, those nested in collapsed rows included."""
    flat: list[dict[str, Any]] = []
    for panel in panels:
        flat.append(panel)
        flat.extend(iter_panels(panel.get("panels", [])))
    return flat


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(panel title, refId, expr)`` of every target of every panel."""
    return [
        (panel.get("title", ""), target.get("refId", ""), target.get("expr", ""))
        for panel in iter_panels(dashboard["panels"])
        if panel.get("type") != "row"
        for target in panel.get("targets", [])
    ]


# DESIGN 3.8, the metric-name contract: name -> type. Dashboards and alerts may use only these.
CONTRACT_METRICS = {
    "gateway_routing_decisions_total": "counter",
    "gateway_fallbacks_total": "counter",
    "gateway_upstream_requests_total": "counter",
    "gateway_upstream_latency_seconds": "histogram",
    "gateway_upstream_ttft_seconds": "histogram",
    "gateway_breaker_state": "gauge",
    "gateway_breaker_transitions_total": "counter",
    "gateway_provider_up": "gauge",
    "gateway_request_duration_seconds": "histogram",
    "gateway_overhead_seconds": "histogram",
    "gateway_inflight_requests": "gauge",
    "gateway_tokens_total": "counter",
}
# The closed label-value sets of DESIGN 3.8 that queries may match on.
CONTRACT_LABEL_VALUES = {
    "decision": {"primary", "fallback", "none"},
    "reason": {
        "healthy",
        "not_configured",
        "breaker_open",
        "cooling",
        "drained",
        "slow",
        "error",
        "weighted",
        "panic",
    },
    "outcome": {
        "success",
        "rate_limited",
        "server_error",
        "timeout",
        "connect_error",
        "auth_error",
        "client_error",
        "stream_error",
    },
    "kind": {"prompt", "completion"},
    "to_state": {"closed", "half-open", "open"},
    "status_class": {"1xx", "2xx", "3xx", "4xx", "5xx"},
    "api": {"agentos", "openai", "admin", "ops"},
}
_METRIC = re.compile(r"\bgateway_[a-z0-9_]+")
_MATCHER = re.compile(r'\b([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def series_names() -> set[str]:
    """The series names Prometheus stores for the contract's metrics."""
    names: set[str] = set()
    for name, kind in CONTRACT_METRICS.items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(name)
    return names


def contract_problems(expr: str) -> list[str]:
    """What in a PromQL expression is not in DESIGN 3.8: unknown series names, unknown label values."""
    problems = []
    known = series_names()
    used = _METRIC.findall(expr)
    if not used:
        problems.append("uses no gateway_* metric")
    problems += [f"unknown metric {name}" for name in used if name not in known]
    for label, op, value in _MATCHER.findall(expr):
        allowed = CONTRACT_LABEL_VALUES.get(label)
        if allowed is None:
            continue
        values = value.split("|") if op in ("=~", "!~") else [value]
        problems += [f'unknown {label} value "{v}"' for v in values if v not in allowed]
    return problems
