"""The Prometheus configuration the Compose stack mounts, checked by promtool (Debian's ``prometheus``
package, which CI installs): ``promtool check config`` also checks the rule files it names. The rules of
the Kubernetes PrometheusRule go through ``promtool check rules`` too. A missing promtool fails the test
(``GATEWAY_ALLOW_MISSING_PROMETHEUS=1`` skips it on a laptop)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.deploy_support import K8S_DIR, PROMETHEUS_DIR, load_yaml, require_tool

HINT = "install Debian's 'prometheus' package (sudo bash scripts/install-ci-deps.sh)"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool(
        "promtool", allow_env="GATEWAY_ALLOW_MISSING_PROMETHEUS", install_hint=HINT
    )
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_config() -> None:
    config = PROMETHEUS_DIR / "prometheus.yml"
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = load_yaml(config).get("rule_files", [])
    assert rule_files, "the config loads the alert rules"
    for rule_file in rule_files:
        assert f"{rule_file}" in result.stdout + result.stderr, "promtool checked the rule file"


def test_promtool_check_rules_of_the_prometheusrule(tmp_path: Path) -> None:
    spec = load_yaml(K8S_DIR / "prometheusrule.yaml")["spec"]
    rules = tmp_path / "prometheusrule-rules.yml"
    rules.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "prometheus.yml"
    broken.write_text("scrape_configs:\n  - job_name: x\n    scrape_intervall: 5s\n")
    assert promtool("check", "config", str(broken)).returncode != 0
