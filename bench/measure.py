"""One measurement: drive a target for a while and read what it cost (CPU, memory, foreign load).

"Foreign" CPU is what the two cores spent on anything but the benchmark's own processes and the load
generator during the run (another test suite on the machine, say): a run with too much of it is
thrown away and repeated after the machine has calmed down.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import Load, drive
from bench.procs import CLK_TCK, Proc


def busy_seconds() -> float:
    """Non-idle CPU time of the whole machine so far (all cores), in seconds."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_idle(max_foreign: float, timeout_s: float, cores: int = 2) -> float:
    """Wait until the machine is quiet (below ``max_foreign`` of all cores over 1 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        b0 = busy_seconds()
        time.sleep(1.0)
        load = (busy_seconds() - b0) / cores
        if load <= max_foreign or time.monotonic() > deadline:
            return load


def wait_server_idle(proc: Proc, timeout_s: float = 30.0) -> None:
    """Until the server under test burns (almost) no CPU: the previous load is fully drained."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = proc.cpu()
        time.sleep(0.2)
        if proc.cpu() - before <= 0.02:  # at most 10% of a core
            return


@dataclass
class Measurement:
    target: str
    kind: str
    concurrency: int
    result: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "concurrency": self.concurrency,
            **self.result,
        }


def server_latency(log: Path, offset: int) -> dict[str, float]:
    """Percentiles of the gateway's own request durations (its access log, from ``offset``): the
    time from the request reaching the app to its answer being handed to the server, without the
    sockets, uvicorn's parsing and the load generator. Empty for servers that log no such lines."""
    durations: list[float] = []
    with log.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            # a line still being written has no newline yet
            if line.endswith(b"\n") and b'"event":"request"' in line and b'"duration_ms"' in line:
                durations.append(float(json.loads(line)["duration_ms"]))
    if not durations:
        return {}
    durations.sort()
    last = len(durations) - 1
    return {
        "server_p50_ms": durations[last // 2],
        "server_p99_ms": durations[min(last, round(0.99 * last))],
        "server_max_ms": durations[last],
    }


def measure(
    *,
    target: str,
    kind: str,
    load: Load,
    tool: str,
    load_cpu: str,
    measured: Proc,
    ours: list[Proc],
    warmup_s: float,
    settle_s: float = 0.3,
    cores: int = 2,
) -> dict[str, Any]:
    slowest_s = 0.0
    if warmup_s > 0:
        warm = drive(
            Load(load.base_url, load.body_file, load.paths_file, load.concurrency, warmup_s),
            tool,
            load_cpu,
        )
        slowest_s = warm["lat_max_us"] / 1e6
    # wrk drops its connections at the end of a run, but the server finishes what it had in flight
    # (a stream keeps its concurrency slot until the upstream stream ends): let it, before measuring.
    time.sleep(min(5.0, max(settle_s, slowest_s)))
    wait_server_idle(measured)
    cpu0 = measured.cpu()
    _, other0 = measured.threads_cpu()
    ours0 = sum(p.cpu() for p in ours)
    kids0 = children_cpu()
    busy0 = busy_seconds()
    log_offset = measured.log_path.stat().st_size
    t0 = time.monotonic()
    raw = drive(load, tool, load_cpu)
    elapsed = time.monotonic() - t0
    busy = busy_seconds() - busy0
    ours_cpu = sum(p.cpu() for p in ours) - ours0 + children_cpu() - kids0
    cpu = measured.cpu() - cpu0
    _, other1 = measured.threads_cpu()
    # Exited threads (a thread pool shrinking) take their CPU with them: clamp at zero.
    other_threads = max(0.0, other1 - other0)
    requests = int(raw["requests"])
    errors = int(
        raw["err_connect"]
        + raw["err_read"]
        + raw["err_write"]
        + raw["err_status"]
        + raw["err_timeout"]
    )
    seconds = raw["duration_us"] / 1e6
    mem = measured.memory()
    return {
        "requests": requests,
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": raw["lat_mean_us"] / 1000,
        "max_ms": raw["lat_max_us"] / 1000,
        "errors": errors,
        "error_detail": {k: raw[k] for k in raw if k.startswith("err_") and raw[k]},
        "cpu_s": cpu,
        "cpu_us_per_req": cpu / requests * 1e6 if requests else None,
        "cpu_util": cpu / elapsed if elapsed else None,
        "cpu_other_threads_us_per_req": other_threads / requests * 1e6 if requests else None,
        "rss_mb": mem["VmRSS"] / 1024,
        "hwm_mb": mem["VmHWM"] / 1024,
        "foreign_cpu": max(0.0, (busy - ours_cpu) / (elapsed * cores)) if elapsed else 0.0,
        **server_latency(measured.log_path, log_offset),
    }


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path
