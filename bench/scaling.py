"""``gateway serve --workers N`` across cores: throughput of 1 and 2 workers, and metrics that add up.

On a 2-core machine the servers cannot have a core each plus one for the load generator, so this phase
pins nothing: the gateway's workers, the fake upstream and wrk share both cores, for 1 worker and
for 2 alike (the same conditions, so the ratio is what the second worker adds). After each measured
run the gateway's own request count (``gateway_request_duration_seconds_count`` for the OpenAI API,
summed over the workers by prometheus-client's multiprocess mode) is compared with what wrk counted:
it may exceed it only by the requests wrk cut off at its end (at most the concurrency).
"""

from __future__ import annotations

import time
import urllib.request
from typing import TYPE_CHECKING, Any

from bench.loadgen import Load, drive
from bench.measure import measure
from bench.stack import MODEL, GatewayOptions

if TYPE_CHECKING:
    from bench.run import Bench

WORKERS = (1, 2)
CONCURRENCY = 64
ALL_CORES = "0,1"
_COUNT = "gateway_request_duration_seconds_count{"


def openai_requests(base_url: str) -> float:
    """The gateway's count of finished /v1 requests, every worker summed."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(_COUNT) and 'api="openai"' in line
    )


def _settled_count(base_url: str, timeout_s: float = 10.0) -> float:
    """The count once requests cut off by wrk have finished in the gateway (it stops moving)."""
    deadline = time.monotonic() + timeout_s
    count = openai_requests(base_url)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = openai_requests(base_url)
        if again == count:
            break
        count = again
    return count


def scaling(bench: Bench) -> None:
    args = bench.args
    stack = bench.stack
    body = bench.chat_body(f"openai:{MODEL}", False)
    for workers in WORKERS:
        name = f"gateway-w{workers}"
        stack.start_gateway(GatewayOptions(name=name, workers=workers, pinned=False))
        url = stack.urls[name]
        try:
            load = Load(url, body, bench.v1_paths(), CONCURRENCY, args.duration)
            warm = Load(url, body, bench.v1_paths(), CONCURRENCY, max(1.0, args.warmup))
            for repeat in range(args.repeats):
                drive(warm, args.loadgen, ALL_CORES)
                before = _settled_count(url)
                result: dict[str, Any] = measure(
                    target=name,
                    kind="json",
                    load=load,
                    tool=args.loadgen,
                    load_cpu=ALL_CORES,
                    measured=stack.procs[name],
                    ours=bench.ours(),
                    warmup_s=0,
                )
                counted = _settled_count(url) - before
                extra = counted - result["requests"]
                record = {
                    "phase": "scaling",
                    "target": name,
                    "kind": "json",
                    "concurrency": CONCURRENCY,
                    "workers": workers,
                    "repeat": repeat,
                    "noisy": result["foreign_cpu"] > args.max_foreign,
                    "metrics_counted": counted,
                    "metrics_ok": 0 <= extra <= CONCURRENCY,
                    **result,
                }
                bench.runs.append(record)
                print(
                    f"  scaling  workers={workers} {result['rps']:8.0f} req/s  "
                    f"p99 {result['p99_ms']:8.2f} ms  wrk counted {result['requests']}, "
                    f"metrics {counted:.0f}",
                    flush=True,
                )
        finally:
            stack.stop(name)
