"""`gateway check-config`: prints availability, exit 1 on an invalid file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main

REPO_CONFIG = Path(__file__).parents[3] / "config" / "default.yaml"


def test_check_config_prints_each_provider(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    env = tmp_path / ".env"
    env.write_text("GEMINI_API_KEY=abc\n")
    assert main(["check-config", "--config", str(REPO_CONFIG), "--env-file", str(env)]) == 0
    out = capsys.readouterr().out
    assert "configuration OK" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert "available" in lines["gemini"]
    assert "missing OPENAI_API_KEY" in lines["openai"]
    assert "abc" not in out


def test_check_config_exits_1_on_invalid_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 1\n")
    assert main(["check-config", "--config", str(bad), "--env-file", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: server: Object contains unknown field `prot`" in err
