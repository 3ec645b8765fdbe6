"""The alert rules: complete annotations, runbook links that resolve, DESIGN 3.8 names, promtool tests.

``promtool`` comes with Debian's ``prometheus`` package (``scripts/install-ci-deps.sh``). Without it the
promtool tests fail rather than skip; ``GATEWAY_ALLOW_MISSING_PROMETHEUS=1`` skips them on a laptop.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.prometheus_server import (
    ALERTS_FILE,
    REPO,
    contract_problems,
    fast_alert_rules,
    require_binary,
)

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RUNBOOK = REPO / "docs" / "runbook.md"
EXPECTED_ALERTS = {
    "GatewayBreakerOpen",
    "GatewayAllCandidatesUnhealthy",
    "GatewayHighFallbackRate",
    "GatewayUpstreamErrorRate",
    "GatewayOverheadP99High",
    "GatewayProviderKeyUnusable",
}
SEVERITIES = {"warning", "critical"}


def _groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return groups


def _alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule for group in _groups() for rule in group["rules"] if "alert" in rule
    }


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text().splitlines()
        if re.match(r"^#{1,6} ", line)
    }


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_one_group_with_the_expected_alerts() -> None:
    groups = _groups()
    assert [g["name"] for g in groups] == ["llm-gateway"]
    names = [rule["alert"] for rule in groups[0]["rules"]]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_ALERTS


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_alert_is_labelled_annotated_and_linked(alert: str) -> None:
    rule = _alerts()[alert]
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{alert}: no {key}"
    url = annotations["runbook_url"]
    assert url.startswith("docs/runbook.md#"), url
    anchor = url.split("#", 1)[1]
    assert anchor == alert.lower()
    assert anchor in runbook_anchors(), f"{alert}: no heading for #{anchor} in docs/runbook.md"


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_alert_uses_only_the_metric_contract(alert: str) -> None:
    expr = _alerts()[alert]["expr"]
    assert not contract_problems(expr), contract_problems(expr)


def test_runbook_anchor_helper() -> None:
    assert github_anchor(" GatewayBreakerOpen") == "gatewaybreakeropen"
    assert github_anchor("What it means, really?") == "what-it-means-really"


def test_every_alert_has_a_firing_and_a_quiet_promtool_case() -> None:
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


def test_fast_rules_for_the_integration_test_keep_every_expression() -> None:
    fast = fast_alert_rules()
    rules = {r["alert"]: r for g in fast["groups"] for r in g["rules"]}
    assert set(rules) == EXPECTED_ALERTS
    for name, rule in rules.items():
        assert rule["for"] == "0s"
        assert rule["expr"] == _alerts()[name]["expr"]


def test_promtool_check_rules() -> None:
    output = _promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in output


def test_promtool_check_example_config() -> None:
    _promtool("check", "config", "prometheus.yml")


def test_promtool_unit_tests() -> None:
    output = _promtool("test", "rules", "alerts_test.yml")
    assert "SUCCESS" in output
