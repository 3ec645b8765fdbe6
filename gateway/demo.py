"""``gateway demo``: the whole failover story on this machine, with no provider keys.

Simulated providers (real HTTP servers on loopback) stand in for OpenAI, Gemini, Anthropic and Groq; a
real ``gateway serve`` process runs on top of them. The demo creates the routing agent of the Agno-Go
guide, talks to it, removes the primary's key (reload, no restart), then breaks the primary with a 503
storm, and shows each answer with the model that served it and why. Exit code 0 only if every step
behaved as promised.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config.settings import KNOWN_PROVIDERS
from gateway.sim.cluster import SimCluster, SimSpec

SIMS = (
    SimSpec("openai", "openai"),
    SimSpec("gemini", "gemini"),
    SimSpec("anthropic", "anthropic"),
    SimSpec("groq", "openai"),
)
AGENT: dict[str, Any] = {
    "name": "routing-agent",
    "description": "Routes between providers by live health",
    "model": "openai:gpt-4o-mini",
    "tools": [],
    "config": {"fallbackModel": "gemini:flash-1.5"},
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_config(storage_path: Path) -> dict[str, Any]:
    return {
        "logging": {"level": "info", "format": "json"},
        "providers": {
            name: {"endpoint": f"${{{name.upper()}_ENDPOINT}}"}
            for name in ("openai", "gemini", "anthropic", "groq")
        },
        "models": {
            "gemini:flash-1.5": "gemini:gemini-1.5-flash",
            "groq:llama3-70b": "groq:llama3-70b-8192",
        },
        "storage": {"url": f"sqlite+aiosqlite:///{storage_path}"},
        "runtime": {"router": {"providerTimeout": "10s"}},
    }


def write_env(path: Path, env: dict[str, str], without: tuple[str, ...] = ()) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items()) if k not in without))


@dataclass
class Story:
    out: Callable[[str], None] = print
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def step(self, title: str) -> None:
        self.out(f"\n== {title}")

    def check(self, what: str, ok: bool) -> bool:
        self.checks.append((what, ok))
        self.out(f"   [{'ok' if ok else 'FAILED'}] {what}")
        return ok

    def show_answer(self, body: dict[str, Any], headers: httpx.Headers) -> None:
        routing = body.get("routing") or {}
        self.out(f"   answer : {body.get('content')!r}")
        self.out(
            f"   served : {routing.get('servedModel')} (fallback={routing.get('fallback')}, "
            f"reason={routing.get('reason')}, X-Gateway-Attempts={headers.get('x-gateway-attempts')})"
        )
        for attempt in routing.get("attempts", []):
            reason = f" reason={attempt['reason']}" if attempt.get("reason") else ""
            self.out(
                f"     - {attempt['model']:<28} {attempt['outcome']:<12}"
                f" {attempt['latencyMs']:>7} ms{reason}"
            )


class GatewayProcess:
    """``gateway serve`` in a child process, with only the demo's environment (no real keys)."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "gateway.log"
        self._workdir = workdir
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not any(k.startswith(f"{p.upper()}_") for p in KNOWN_PROVIDERS)
        }
        env.pop("GATEWAY_ADMIN_TOKEN", None)
        cmd = [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(self._workdir / "config.yaml"),
            "--env-file",
            str(self._workdir / ".env"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"gateway exited early, see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway did not become ready, see {self.log_path}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def _send(client: httpx.Client, base: str, text: str) -> httpx.Response:
    return client.post(f"{base}/messages", json={"role": "user", "content": text})


def _story(
    story: Story, client: httpx.Client, sims: SimCluster, gw: GatewayProcess, workdir: Path
) -> None:
    env = sims.env()
    story.step("1. Create the routing agent of the Agno-Go guide and a session")
    agent = client.post("/agents", json=AGENT).json()
    story.out(
        f"   POST /agents -> agentId {agent['agentId']}  model={AGENT['model']}  "
        f"fallback={AGENT['config']['fallbackModel']}"
    )
    session = client.post(f"/agents/{agent['agentId']}/sessions", json={"userId": "demo"}).json()
    base = f"/agents/{agent['agentId']}/sessions/{session['sessionId']}"
    story.out(f"   POST {base.rsplit('/', 2)[0]}/... -> sessionId {session['sessionId']}")

    story.step("2. Everything healthy: the primary answers")
    resp = _send(client, base, "What is a circuit breaker?")
    story.show_answer(resp.json(), resp.headers)
    story.check(
        "primary openai:gpt-4o-mini served",
        resp.json()["routing"]["servedModel"] == "openai:gpt-4o-mini",
    )

    story.step("3. Remove OPENAI_API_KEY from .env and reload (no restart)")
    write_env(workdir / ".env", env, without=("OPENAI_API_KEY",))
    reload = client.post("/admin/reload").json()
    story.out(f"   POST /admin/reload -> openai is {reload['providers']['openai']}")
    calls_before = sims["openai"].request_count
    resp = _send(client, base, "Are you still there?")
    story.show_answer(resp.json(), resp.headers)
    routing = resp.json()["routing"]
    story.check(
        "fallback gemini served with reason not_configured",
        routing["servedModel"] == "gemini:gemini-1.5-flash"
        and routing["reason"] == "not_configured",
    )
    story.check(
        "the primary received no call while its key was gone",
        sims["openai"].request_count == calls_before,
    )

    story.step("4. Key back, then a 503 storm on the primary")
    write_env(workdir / ".env", env)
    client.post("/admin/reload")
    sims["openai"].set_faults(status_always=503)
    resp = _send(client, base, "Tell me about failover.")
    story.show_answer(resp.json(), resp.headers)
    routing = resp.json()["routing"]
    story.check(
        "503 from the primary failed over to gemini, client saw 200",
        resp.status_code == 200
        and routing["fallback"]
        and routing["attempts"][0]["outcome"] == "server_error",
    )

    story.step("5. Streaming during the storm: failover happens before the first byte")
    with client.stream(
        "POST",
        f"{base}/messages?stream=true",
        json={"messages": [{"role": "user", "content": "stream please"}]},
    ) as sresp:
        frames = [line for line in sresp.iter_lines() if line.startswith("data:")]
        story.out(
            f"   status {sresp.status_code}, served by {sresp.headers.get('x-gateway-model')}, "
            f"{len(frames)} frames, last: {frames[-1][:90] if frames else None}"
        )
        story.check(
            "stream served by the fallback and ended with an end frame",
            sresp.status_code == 207
            and sresp.headers.get("x-gateway-fallback") == "true"
            and bool(frames)
            and '"type":"end"' in frames[-1],
        )

    story.step("6. The storm passes: traffic returns to the primary")
    sims["openai"].clear_faults()
    resp = _send(client, base, "Back to normal?")
    story.show_answer(resp.json(), resp.headers)
    story.check(
        "primary serves again", resp.json()["routing"]["servedModel"] == "openai:gpt-4o-mini"
    )

    history = client.get(f"{base}/messages").json()["messages"]
    story.check(f"session history kept all {len(history)} messages", len(history) == 10)
    health = client.get("/health").json()
    story.out(
        "   /health: " + ", ".join(f"{p['provider']}={p['status']}" for p in health["providers"])
    )


def _curl_help(story: Story, gw: GatewayProcess, sims: SimCluster) -> None:
    story.out(f"""
The stack is up (Ctrl-C to stop). Gateway: {gw.url}   logs: {gw.log_path}
  curl -s {gw.url}/health
  curl -s {gw.url}/providers
  curl -s -X POST {gw.url}/agents -H 'content-type: application/json' \\
       -d '{{"name":"mine","model":"openai:gpt-4o-mini","config":{{"fallbackModel":"gemini:flash-1.5"}}}}'
  curl -s -X POST {gw.url}/agents/<agentId>/sessions -d '{{}}'
  curl -s -X POST {gw.url}/agents/<agentId>/sessions/<sessionId>/messages \\
       -d '{{"role":"user","content":"hi"}}'
  curl -N -X POST '{gw.url}/agents/<agentId>/sessions/<sessionId>/messages?stream=true' \\
       -d '{{"messages":[{{"role":"user","content":"hi"}}]}}'
  # break the primary (simulator control API), then heal it:
  curl -s -X POST {sims["openai"].base_url}/_sim/faults -d '{{"statusAlways":503}}'
  curl -s -X DELETE {sims["openai"].base_url}/_sim/faults
  curl -s {gw.url}/metrics | grep gateway_routing_decisions_total""")


def run_demo(
    *, keep_running: bool = False, port: int = 0, out: Callable[[str], None] = print
) -> int:
    story = Story(out)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    sims = SimCluster(list(SIMS))
    gw = GatewayProcess(workdir, port or _free_port())
    try:
        sims.start()
        (workdir / "config.yaml").write_text(yaml.safe_dump(demo_config(workdir / "demo.db")))
        write_env(workdir / ".env", sims.env())
        story.out("gateway demo: simulated providers on loopback, no real keys used")
        for server in sims:
            story.out(f"   sim {server.name:<10} {server.wire:<9} {server.endpoint}")
        gw.start()
        story.out(f"   gateway    {gw.url} (gateway serve, pid log {gw.log_path})")
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            _story(story, client, sims, gw, workdir)
        passed = sum(ok for _, ok in story.checks)
        story.step(f"Summary: {passed}/{len(story.checks)} checks passed")
        for what, ok in story.checks:
            story.out(f"   {'ok    ' if ok else 'FAILED'} {what}")
        if keep_running:
            _curl_help(story, gw, sims)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if passed == len(story.checks) else 1
    finally:
        gw.stop()
        sims.stop()
        if not keep_running:
            shutil.rmtree(workdir, ignore_errors=True)
