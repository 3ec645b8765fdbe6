"""`gateway serve` reloads its .env on SIGHUP: a removed key takes effect with no restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.support.process import GatewayProcess


def _openai_status(url: str) -> str:
    rows = {p["provider"]: p for p in httpx.get(f"{url}/health").json()["providers"]}
    status: str = rows["openai"]["status"]
    return status


def _wait_for(url: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while _openai_status(url) != status:
        assert time.monotonic() < deadline, f"openai never became {status}"
        time.sleep(0.05)


@pytest.mark.slow
def test_sighup_reloads_keys(sims: SimCluster, tmp_path: Path) -> None:
    env = sims.env()
    config = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"},
        "logging": {"format": "json"},
    }
    proc = GatewayProcess(tmp_path, config, env)
    proc.start()
    try:
        assert _openai_status(proc.url) == "available"
        env_file = tmp_path / "gw.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if k != "OPENAI_API_KEY"))
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for(proc.url, "not-configured")
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        proc.proc.send_signal(signal.SIGHUP)
        _wait_for(proc.url, "available")
        assert proc.proc.poll() is None  # still the same process
    finally:
        proc.stop()
