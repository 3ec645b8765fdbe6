"""Driving one target for a while: wrk (pinned to the load core) or the asyncio fallback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "post.lua"


@dataclass(frozen=True, slots=True)
class Load:
    base_url: str  # http://127.0.0.1:PORT
    body_file: Path
    paths_file: Path
    concurrency: int
    duration_s: float


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def command(load: Load, tool: str, cpu: str | None) -> list[str]:
    if tool == "wrk":
        cmd = [
            "wrk",
            "-t1",
            f"-c{load.concurrency}",
            f"-d{max(1, round(load.duration_s))}s",  # wrk takes whole seconds
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            load.base_url,
            "--",
            str(load.body_file),
            str(load.paths_file),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "bench.aioload",
            "--url",
            load.base_url,
            "--body-file",
            str(load.body_file),
            "--paths-file",
            str(load.paths_file),
            "--concurrency",
            str(load.concurrency),
            "--duration",
            f"{load.duration_s:g}",
        ]
    return ["taskset", "-c", cpu, *cmd] if cpu is not None else cmd


def drive(load: Load, tool: str, cpu: str | None) -> dict[str, float]:
    """Run the load; wrk's (or the fallback's) BENCH_RESULT line as a dict."""
    proc = subprocess.run(  # noqa: S603
        command(load, tool, cpu),
        capture_output=True,
        text=True,
        timeout=load.duration_s + 120,
        cwd=HERE.parent,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, float] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise RuntimeError(
        f"{tool} printed no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
