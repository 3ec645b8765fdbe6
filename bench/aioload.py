"""The fallback load generator when wrk is not installed: a bounded asyncio client on aiohttp.

``--concurrency`` workers share one connection pool of that size; each sends POSTs back to back
(round-robin over the paths) for ``--duration`` seconds and reads every answer to its end. Prints
one ``BENCH_RESULT {json}`` line in wrk's shape (latencies in microseconds).

Run: ``python -m bench.aioload --url http://127.0.0.1:8080 --body-file b.json [--paths-file p.txt]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


async def run(
    url: str, body: bytes, paths: list[str], concurrency: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "status": 0, "timeout": 0}
    total_bytes = 0
    cycle = itertools.cycle(paths)
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal total_bytes
            while time.perf_counter() < deadline:
                path = next(cycle)
                t0 = time.perf_counter()
                try:
                    async with session.post(url + path, data=body, headers=headers) as resp:
                        data = await resp.read()
                        total_bytes += len(data)
                        if resp.status >= 400:
                            errors["status"] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                    continue
                except aiohttp.ClientConnectionError:
                    errors["connect"] += 1
                    continue
                except aiohttp.ClientError:
                    errors["read"] += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1e6)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies) + errors["status"],
        "duration_us": int(elapsed * 1e6),
        "bytes": total_bytes,
        "err_connect": errors["connect"],
        "err_read": errors["read"],
        "err_write": 0,
        "err_status": errors["status"],
        "err_timeout": errors["timeout"],
        "lat_mean_us": statistics.fmean(latencies) if latencies else 0.0,
        "lat_max_us": int(latencies[-1]) if latencies else 0,
        "p50_us": int(percentile(latencies, 50)),
        "p90_us": int(percentile(latencies, 90)),
        "p99_us": int(percentile(latencies, 99)),
        "p999_us": int(percentile(latencies, 99.9)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--paths-file", default="")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    body = Path(args.body_file).read_bytes()
    paths = ["/"]
    if args.paths_file:
        paths = [p for p in Path(args.paths_file).read_text().splitlines() if p]
    result = asyncio.run(run(args.url.rstrip("/"), body, paths, args.concurrency, args.duration))
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
