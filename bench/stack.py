"""Starting the benchmark's servers: fake upstream, gateway(s), pass-through baseline, nginx.

Everything lives in one temporary directory (configs, logs, the SQLite store) and every process is
started pinned with ``taskset``: the servers under test on the gateway core, the fake upstream on the
load core (with the load generator).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import Proc, closed_port, free_port, wait_http

REPO = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
SSE_GAP_MODEL = "bench-gap10"  # the fake upstream waits 10 ms between chunks for this model

# Provider variables of the parent environment must not leak into the gateway under test.
_STRIP_PREFIXES = ("GATEWAY_", "PROMETHEUS_MULTIPROC")
_STRIP_SUFFIXES = ("_API_KEY", "_ENDPOINT")


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_STRIP_PREFIXES) and not k.endswith(_STRIP_SUFFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
        raw = resp.read()
    return json.loads(raw) if raw else None


@dataclass
class GatewayOptions:
    """What a gateway instance under test differs in (the production settings are the default)."""

    name: str = "gateway"
    log_level: str = "info"
    metrics: bool = True
    http_client: str | None = None  # runtime.router.httpClient; None = the gateway's default
    never_trip: bool = False  # breakers and failure-rate ejection that never open (refused probe)
    workers: int = 1  # gateway serve --workers N
    pinned: bool = True  # False: free to run on every core (the scaling phase)
    extra_env: dict[str, str] = field(default_factory=dict)


def gateway_yaml(port: int, db: Path, opts: GatewayOptions) -> str:
    if opts.never_trip:
        health = (
            "health:\n  breaker:\n    failMax: 1000000000\n    resetTimeout: 1s\n"
            "  window: 60s\n  minCalls: 1000000000\n  failureRate: 1.0\n"
            "  slowCallMs: 30000\n  slowCallRate: 1.0\n"
        )
    else:  # config/default.yaml's values
        health = (
            "health:\n  breaker:\n    failMax: 5\n    resetTimeout: 30s\n  window: 60s\n"
            "  minCalls: 10\n  failureRate: 0.5\n  slowCallMs: 30000\n  slowCallRate: 0.8\n"
        )
    http_client = f"    httpClient: {opts.http_client}\n" if opts.http_client else ""
    return f"""# Written by bench/ for one benchmark run: production settings, providers on the fake upstream.
server:
  host: 127.0.0.1
  port: {port}
  maxBodyBytes: 4194304
  drainTimeout: 5s
  shutdownDelay: 0s
logging:
  level: {opts.log_level}
  format: json
providers:
  openai:
    endpoint: ${{OPENAI_ENDPOINT}}
    models: [{MODEL}]
  groq:
    endpoint: ${{GROQ_ENDPOINT}}
    models: [{MODEL}]
  openrouter:
    endpoint: ${{OPENROUTER_ENDPOINT}}
    models: [{MODEL}]
  cerebras:
    endpoint: ${{CEREBRAS_ENDPOINT}}   # a closed loopback port: every connection is refused
    models: [{MODEL}]
memory:
  storeType: memory
  tokenWindow: 256
runtime:
  maxConcurrentRequests: 64
  requestQueue: 32
  requestTimeout: 60s
  router:
    maxProviderConcurrency: 128
    providerTimeout: 55s
    providerRetries: 1
    providerBackoff: 50ms
{http_client}routes:
  chat:
    primary: openai:{MODEL}
    sloMs: 4000
  bench-ref:            # the fallback of the probes, called directly as primary
    primary: groq:{MODEL}
  bench-drained:        # primary drained by POST /admin/providers/openrouter/drain
    primary: openrouter:{MODEL}
    fallbacks: [groq:{MODEL}]
  bench-refused:        # primary refuses the connection
    primary: cerebras:{MODEL}
    fallbacks: [groq:{MODEL}]
{health}storage:
  url: sqlite+aiosqlite:///{db}
auth:
  enabled: false
"""


class Stack:
    """The processes of one benchmark run; ``close()`` (or exit) stops them all."""

    def __init__(self, workdir: Path, *, server_cpu: str, load_cpu: str) -> None:
        self.dir = workdir
        self.server_cpu = server_cpu
        self.load_cpu = load_cpu
        self.env = clean_env()
        self.upstream_port = free_port()
        self.upstream_url = f"http://127.0.0.1:{self.upstream_port}"
        self.refused_port = closed_port()
        self.procs: dict[str, Proc] = {}
        self.urls: dict[str, str] = {}

    # -- processes ---------------------------------------------------------------------------

    def start_upstream(self) -> Proc:
        proc = Proc(
            "upstream",
            [sys.executable, "-m", "bench.upstream", "--port", str(self.upstream_port)],
            cpu=self.load_cpu,
            log=self.dir / "upstream.log",
            env=self.env,
            cwd=str(REPO),
        )
        wait_http(self.upstream_url + "/health", proc)
        self.procs["direct"] = proc
        self.urls["direct"] = self.upstream_url
        return proc

    def start_baseline(self, name: str = "baseline", client: str = "aiohttp") -> Proc:
        port = free_port()
        proc = Proc(
            name,
            [
                sys.executable,
                "-m",
                "bench.baseline",
                "--port",
                str(port),
                "--upstream",
                self.upstream_url + "/v1",
                "--client",
                client,
            ],
            cpu=self.server_cpu,
            log=self.dir / f"{name}.log",
            env=self.env,
            cwd=str(REPO),
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc)
        self.procs[name] = proc
        self.urls[name] = url
        return proc

    def start_nginx(self) -> Proc | None:
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx is None:
            return None
        port = free_port()
        prefix = self.dir / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        temp = "".join(
            f"  {kind}_temp_path {prefix}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}  upstream fake {{ server 127.0.0.1:{self.upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
        )
        proc = Proc(
            "nginx",
            [
                nginx,
                "-p",
                str(prefix),
                "-c",
                str(conf),
                "-e",
                str(prefix / "error.log"),
                "-g",
                "daemon off;",
            ],
            cpu=self.server_cpu,
            log=self.dir / "nginx.log",
            env=self.env,
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", proc)
        self.procs["nginx"] = proc
        self.urls["nginx"] = url
        return proc

    def start_gateway(self, opts: GatewayOptions | None = None) -> Proc:
        opts = opts or GatewayOptions()
        port = free_port()
        gdir = self.dir / opts.name
        gdir.mkdir(exist_ok=True)
        config = gdir / "gateway.yaml"
        config.write_text(gateway_yaml(port, gdir / "gateway.db", opts))
        envfile = gdir / ".env"
        upstream = self.upstream_url + "/v1"
        envfile.write_text(
            f"OPENAI_ENDPOINT={upstream}\nOPENAI_API_KEY=bench\n"
            f"GROQ_ENDPOINT={upstream}\nGROQ_API_KEY=bench\n"
            f"OPENROUTER_ENDPOINT={upstream}\nOPENROUTER_API_KEY=bench\n"
            f"CEREBRAS_ENDPOINT=http://127.0.0.1:{self.refused_port}/v1\nCEREBRAS_API_KEY=bench\n"
        )
        serve = [
            "serve",
            "--config",
            str(config),
            "--env-file",
            str(envfile),
            "--host",
            "127.0.0.1",
        ]
        serve += ["--port", str(port)]
        if opts.workers > 1:
            serve += ["--workers", str(opts.workers)]
        if opts.metrics:
            cmd = [sys.executable, "-m", "gateway", *serve]
        else:
            cmd = [sys.executable, "-m", "bench.gateway_shim", "--no-metrics", *serve]
        env = {**self.env, **opts.extra_env}
        proc = Proc(
            opts.name,
            cmd,
            cpu=self.server_cpu if opts.pinned else None,
            log=gdir / "gateway.log",
            env=env,
            cwd=str(REPO),
        )
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/ready", proc, timeout=60)
        self.procs[opts.name] = proc
        self.urls[opts.name] = url
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            proc.stop()
        self.urls.pop(name, None)

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # -- AgentOS fixtures --------------------------------------------------------------------

    def create_agent(self, gateway: str, model: str) -> str:
        body = {
            "name": f"bench-{model}-{time.monotonic_ns()}",
            "model": f"openai:{model}",
            "instructions": "Answer briefly.",
        }
        answer = http_json("POST", self.urls[gateway] + "/agents", body)
        return str(answer["agentId"])

    def create_sessions(self, gateway: str, agent_id: str, count: int) -> list[str]:
        url = f"{self.urls[gateway]}/agents/{agent_id}/sessions"

        def one(_: int) -> str:
            return str(http_json("POST", url, {"userId": "bench"})["sessionId"])

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))


def versions() -> dict[str, str]:
    from importlib import metadata

    out: dict[str, str] = {"python": sys.version.split()[0]}
    for pkg in (
        "litestar",
        "uvicorn",
        "httpx",
        "httpx-aiohttp",
        "aiohttp",
        "h11",
        "httptools",
        "uvloop",
        "structlog",
        "prometheus-client",
        "sqlalchemy",
        "aiosqlite",
        "msgspec",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "-"
    for tool, args in (("wrk", ["wrk", "-v"]), ("nginx", ["nginx", "-v"])):
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=5, check=False)  # noqa: S603
            text = (proc.stdout + proc.stderr).strip().splitlines()
            out[tool] = text[0] if text else "?"
        except (OSError, subprocess.SubprocessError):
            out[tool] = "-"
    return out


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }
