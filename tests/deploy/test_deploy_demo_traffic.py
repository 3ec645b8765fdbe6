"""The Compose demo, without Docker: the `sims` service's command, `gateway serve` with
deploy/compose/gateway.yaml, and deploy/compose/traffic.py, all on loopback. Bounded: a few dozen
requests, one short outage of the first simulated provider; the dashboards' series appear."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.deploy_support import COMPOSE_CONFIG, COMPOSE_DIR, load_yaml
from tests.support.process import free_port

CLIENT_KEY = "test-demo-client-key"


def sims_command(ports: dict[str, int]) -> list[str]:
    """The compose `sims` command, on free loopback ports."""
    command = load_yaml(COMPOSE_DIR / "compose.yaml")["services"]["sims"]["command"]
    args = []
    for arg in command:
        if arg.startswith("--host="):
            args.append("--host=127.0.0.1")
        elif arg.startswith("--provider="):
            name, wire, _port, models = arg.split("=", 1)[1].split(":")
            args.append(f"--provider={name}:{wire}:{ports[name]}:{models}")
        else:
            args.append(arg)
    return [sys.executable, "-m", "gateway.sim", *args]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_ENDPOINT"))}


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Started, not awaited: the gateway starts meanwhile and does not need them to be up."""
    ports = {"sim-openai": free_port(), "sim-gemini": free_port()}
    log = tmp_path / "sims.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            sims_command(ports), stdout=out, stderr=subprocess.STDOUT, env=clean_env()
        )
    try:
        yield {
            "SIM_OPENAI_ENDPOINT": f"http://127.0.0.1:{ports['sim-openai']}/v1",
            "SIM_GEMINI_ENDPOINT": f"http://127.0.0.1:{ports['sim-gemini']}/v1beta",
            "SIM_API_KEY": "sim-key",
            "log": str(log),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_until_up(url: str, log: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc is None or proc.poll() is None, log.read_text()[-3000:]
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except (httpx.TransportError, httpx.HTTPStatusError):
            pass
        assert time.monotonic() < deadline, f"{url} not up: {log.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.fixture
def gateway(sims: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = clean_env() | {
        "SIM_OPENAI_ENDPOINT": sims["SIM_OPENAI_ENDPOINT"],
        "SIM_GEMINI_ENDPOINT": sims["SIM_GEMINI_ENDPOINT"],
        "SIM_API_KEY": sims["SIM_API_KEY"],
        "DEMO_CLIENT_KEY": CLIENT_KEY,
        "GATEWAY_ADMIN_TOKEN": "test-admin-token",
        "GATEWAY_STORAGE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
    }
    log = tmp_path / "gateway.log"
    command = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(COMPOSE_CONFIG),
        "--env-file",
        str(tmp_path / "none.env"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/ready", log, proc)
        for name in ("SIM_OPENAI", "SIM_GEMINI"):
            control = sims[f"{name}_ENDPOINT"].rsplit("/", 1)[0]
            wait_until_up(f"{control}/_sim/info", Path(sims["log"]))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_traffic_generator_drives_the_demo(gateway: str, sims: dict[str, str]) -> None:
    controls = ",".join(
        sims[f"{name}_ENDPOINT"].rsplit("/", 1)[0] for name in ("SIM_OPENAI", "SIM_GEMINI")
    )
    result = subprocess.run(
        [
            sys.executable,
            str(COMPOSE_DIR / "traffic.py"),
            f"--url={gateway}",
            f"--key={CLIENT_KEY}",
            f"--sim-control={controls}",
            "--sim-latency-ms=5,10",
            "--rate=50",
            "--max-requests=400",
            "--duration=2.5",
            "--fault-every=1",
            "--fault-for=0.5",
            "--ready-timeout=10",
            "--timeout=10",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done, " in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"'200 sim-openai': \d+", summary), summary
    assert re.search(r"'200 sim-gemini': \d+", summary), summary  # the fallback during the outage
    assert not re.search(r"'(4|5)\d\d ", summary), summary
    metrics = httpx.get(f"{gateway}/metrics", timeout=5).text
    assert re.search(
        r'gateway_fallbacks_total\{from_provider="sim-openai".*to_provider="sim-gemini"', metrics
    )
    assert 'route="demo"' in metrics
    # The outage was undone: the first simulated provider answers again.
    faults = httpx.get(f"{controls.split(',')[0]}/_sim/faults", timeout=5).json()
    assert faults.get("statusAlways") is None


def test_traffic_generator_refuses_without_a_key() -> None:
    result = subprocess.run(
        [sys.executable, str(COMPOSE_DIR / "traffic.py"), "--key="],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={k: v for k, v in clean_env().items() if k != "DEMO_CLIENT_KEY"},
    )
    assert result.returncode == 2
    assert "no client key" in result.stderr
