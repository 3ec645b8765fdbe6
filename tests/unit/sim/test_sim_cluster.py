"""SimCluster lifecycle: endpoints/env for the gateway, clean start/stop, fixed
ports, and the `python -m gateway.sim` entry point."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from gateway.sim import SimCluster, SimSpec


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sim_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sim-cluster"]


def test_endpoints_and_env_match_what_gateway_adapters_expect(sims: SimCluster) -> None:
    openai, gemini, anthropic = sims["openai"], sims["gemini"], sims["anthropic"]
    assert sims.endpoint("openai") == f"http://127.0.0.1:{openai.port}/v1"
    assert sims.endpoint("gemini") == f"http://127.0.0.1:{gemini.port}/v1beta"
    assert sims.endpoint("anthropic") == f"http://127.0.0.1:{anthropic.port}"
    env = sims.env()
    assert env["OPENAI_ENDPOINT"] == sims.endpoint("openai")
    assert env["GEMINI_ENDPOINT"] == sims.endpoint("gemini")
    assert env["ANTHROPIC_ENDPOINT"] == sims.endpoint("anthropic")
    assert env["OPENAI_API_KEY"] == env["GEMINI_API_KEY"] == env["ANTHROPIC_API_KEY"] == "sim-key"
    assert len({openai.port, gemini.port, anthropic.port}) == 3


def test_unknown_name_and_duplicate_names_are_errors(sims: SimCluster) -> None:
    with pytest.raises(KeyError, match="nope"):
        sims["nope"]
    with pytest.raises(ValueError, match="duplicate"):
        SimCluster([SimSpec("a", "openai"), SimSpec("a", "gemini")])


def test_stop_closes_ports_and_joins_the_thread() -> None:
    before = len(_sim_threads())
    cluster = SimCluster([SimSpec("one", "openai"), SimSpec("two", "anthropic")])
    cluster.start()
    urls = [cluster.endpoint("one") + "/models", cluster.endpoint("two") + "/v1/models"]
    assert len(_sim_threads()) == before + 1
    cluster.stop()

    assert len(_sim_threads()) == before
    assert not cluster.running
    with httpx.Client(timeout=1.0) as client:
        for url in urls:
            with pytest.raises(httpx.ConnectError):
                client.get(url)
    cluster.stop()  # idempotent


def test_fixed_port_is_used_and_kept_across_restarts() -> None:
    port = _free_port()
    cluster = SimCluster([SimSpec("fixed", "gemini", port=port, api_key=None)])
    for _ in range(2):
        with cluster, httpx.Client(timeout=2.0) as client:
            assert cluster["fixed"].port == port
            assert client.get(f"http://127.0.0.1:{port}/v1beta/models").status_code == 200


def test_start_fails_cleanly_when_the_port_is_taken() -> None:
    before = len(_sim_threads())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = SimCluster([SimSpec("ok", "openai"), SimSpec("clash", "openai", port=port)])
        with pytest.raises(OSError, match="in use"):
            cluster.start()
    assert len(_sim_threads()) == before
    assert not cluster.running


def test_start_twice_is_an_error() -> None:
    with SimCluster([SimSpec("x", "openai")]) as cluster, pytest.raises(RuntimeError):
        cluster.start()


def _env_lines(lines: queue.Queue[str], count: int, timeout: float) -> dict[str, str]:
    """NAME=value lines printed by the child, waiting at most `timeout` seconds."""
    env: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(env) < count:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if "=" in line and not line.startswith("#"):
            key, value = line.strip().split("=", 1)
            env[key] = value
    return env


def test_module_entry_point_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "gateway.sim", "--provider", "alpha:openai:0"]
    command += ["--provider", "beta:anthropic"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        stdout = proc.stdout
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=pump)
        reader.start()  # a blocking readline must not be able to hang the test
        try:
            env = _env_lines(lines, 4, timeout=15)
            assert set(env) == {"ALPHA_ENDPOINT", "ALPHA_API_KEY", "BETA_ENDPOINT", "BETA_API_KEY"}
            with httpx.Client(timeout=2.0) as client:
                auth = {"authorization": f"Bearer {env['ALPHA_API_KEY']}"}
                assert (
                    client.get(env["ALPHA_ENDPOINT"] + "/models", headers=auth).status_code == 200
                )
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
        stderr = proc.stderr.read()
    assert returncode == 0, stderr


def test_module_entry_point_rejects_bad_provider_specs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.sim", "--provider", "x:soap:1"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown wire" in result.stderr
