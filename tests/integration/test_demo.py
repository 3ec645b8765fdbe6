"""`gateway demo` runs the whole story and exits 0, exactly as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def test_gateway_demo_runs_to_exit_code_zero() -> None:
    executable = shutil.which("gateway", path=os.path.dirname(sys.executable))
    command = [executable] if executable else [sys.executable, "-m", "gateway"]
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_ENDPOINT"))}
    result = subprocess.run(
        [*command, "demo"], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Summary: 7/7 checks passed" in out
    assert "FAILED" not in out
    assert "fallback=True, reason=not_configured" in out
    assert "server_error" in out
