"""`gateway serve --workers 2`: metrics from every worker add up (prometheus multiprocess mode)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.sim.cluster import SimCluster
from tests.integration.support import new_session


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_two_workers_report_every_request_in_metrics(sims: SimCluster, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"},
                "logging": {"format": "json"},
            }
        )
    )
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in sims.env().items()))
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_ENDPOINT"))}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            "--env-file",
            str(env_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as client:
            url = new_session(client, {"name": "w", "model": "openai:gpt-4o-mini"})
            for _ in range(20):
                # New connections spread the requests over both workers.
                assert (
                    httpx.post(f"{base}{url}", json={"content": "hi"}, timeout=10).status_code
                    == 200
                )
            text = client.get("/metrics").text
        match = re.search(
            r'gateway_upstream_requests_total\{outcome="success",provider="openai"\} (\S+)', text
        )
        assert match, text[:2000]
        assert float(match.group(1)) == 20.0
        pids = set(re.findall(r"pid=(\d+)", " ".join(os.listdir(tmp_path / "metrics")))) or {
            name.split("_")[-1].split(".")[0] for name in os.listdir(tmp_path / "metrics")
        }
        assert len(pids) >= 2  # both workers wrote metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
