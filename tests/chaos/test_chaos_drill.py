"""``gateway chaos``: the operators' drill, run against a live gateway over the simulators."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.config.loader import load_settings
from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.chaos.conftest import RigFactory
from tests.chaos.support import FALLBACK, PRIMARY, ServerThread

RATE = 10


def _report(out: str) -> dict[str, Any]:
    """The JSON report in stdout (the in-process gateway's log lines share it in these tests)."""
    report, _ = json.JSONDecoder().raw_decode(out[out.index('{\n  "passed"') :])
    assert isinstance(report, dict)
    return report


def _drill(url: str, *extra: str) -> list[str]:
    return ["chaos", "--url", url, "--provider", "openai", "--duration", "1s", *extra]


def test_drain_drill_reports_fallbacks_from_answers_and_metrics_and_exits_0(
    rig: RigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = rig()
    code = main([*_drill(gw.url, "--rate", str(RATE), "--json")])
    report = _report(capsys.readouterr().out)
    assert code == 0
    assert report["passed"] is True
    assert report["clientErrors"] == 0
    during = [r for r in report["requests"] if r["phase"] == "fault"]
    after = [r for r in report["requests"] if r["phase"] == "restored"]
    assert len(during) == RATE
    assert {(r["servedModel"], r["decision"], r["reason"]) for r in during} == {
        (FALLBACK, "fallback", "drained")
    }
    assert {r["servedModel"] for r in after} == {PRIMARY}  # traffic returned after the restore

    decisions = {
        (row["decision"], row["reason"]): row["delta"]
        for row in report["metrics"]["gateway_routing_decisions_total"]
    }
    assert decisions == {("fallback", "drained"): RATE, ("primary", "healthy"): len(after)}
    fallbacks = report["metrics"]["gateway_fallbacks_total"]
    assert [(f["from_provider"], f["to_provider"], f["reason"], f["delta"]) for f in fallbacks] == [
        ("openai", "gemini", "drained", RATE)
    ]
    assert gw.sims["openai"].request_count == len(after)
    assert gw.provider("openai")["drained"] is False  # restored
    assert gw.http.get("/agents").json()["agents"] == []  # the drill cleans up its agent


def test_drill_with_client_errors_says_fail_and_exits_1(
    rig: RigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = rig()
    gw.sims["gemini"].set_faults(status_always=503)  # the fallback is down too
    code = main(_drill(gw.url, "--rate", "4"))
    text = capsys.readouterr().out
    assert code == 1
    assert "client errors      4" in text
    assert "503 no_provider_available" in text
    assert "result: FAIL (4 client errors)" in text
    assert gw.provider("openai")["drained"] is False


def test_drill_needs_the_admin_token_when_the_gateway_has_one(
    rig: RigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = rig(env_changes={"GATEWAY_ADMIN_TOKEN": "s3cret-admin"})
    assert main(_drill(gw.url, "--rate", "2")) == 2
    assert "drill not run" in capsys.readouterr().err
    assert gw.http.get("/agents").json()["agents"] == []

    assert main(_drill(gw.url, "--rate", "2", "--admin-token", "s3cret-admin")) == 0
    text = capsys.readouterr().out
    assert "fallback  drained" in text
    assert "result: PASS (0 client errors)" in text


def test_unknown_provider_is_refused_before_anything_changes(
    rig: RigFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = rig()
    args = ["chaos", "--url", gw.url, "--provider", "nope", "--duration", "1s"]
    assert main(args) == 2
    assert "unknown provider 'nope'" in capsys.readouterr().err
    assert gw.http.get("/agents").json()["agents"] == []


def test_reload_without_key_drill_removes_and_restores_the_key_in_the_env_file(
    tmp_path: Path,
    sims: SimCluster,
    start_gateway: Callable[..., ServerThread],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"},
                "models": {"gemini:flash-1.5": "gemini:gemini-1.5-flash"},
            }
        )
    )
    env_file = tmp_path / ".env"
    env_file.write_text("# keys\n" + "".join(f"{k}={v}\n" for k, v in sims.env().items()))
    original = env_file.read_bytes()

    def load() -> Settings:
        return load_settings(config, env_file, environ={})

    server = start_gateway(load(), settings_loader=load)
    args = _drill(server.url, "--rate", "5", "--mode", "reload-without-key", "--json")
    code = main([*args, "--env-file", str(env_file)])
    report = _report(capsys.readouterr().out)
    assert code == 0
    during = [r for r in report["requests"] if r["phase"] == "fault"]
    assert {(r["servedModel"], r["reason"]) for r in during} == {(FALLBACK, "not_configured")}
    assert {r["servedModel"] for r in report["requests"] if r["phase"] == "restored"} == {PRIMARY}
    assert env_file.read_bytes() == original
