"""One profile on demand: the gateway (or the pass-through) under wrk, sampled by py-spy.

    .venv/bin/python -m bench.spy --target gateway --kind sse --concurrency 16 --seconds 8

Prints the inclusive and self shares of the hottest functions (``--match gateway/`` narrows the
inclusive list) and keeps the speedscope file for https://www.speedscope.app.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.loadgen import Load, drive
from bench.procs import install_cleanup
from bench.profile import pyspy_path, pyspy_record
from bench.run import MESSAGES, V1_PATH
from bench.stack import MODEL, SSE_GAP_MODEL, GatewayOptions, Stack


def _label(frame: dict[str, object]) -> str:
    path = str(frame.get("file", ""))
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        path = path.split(marker, 1)[-1]
    return f"{frame['name']} ({path}:{frame.get('line', '')})"


def shares(speedscope: Path) -> tuple[Counter[str], Counter[str], float]:
    data = json.loads(speedscope.read_text())
    frames = data["shared"]["frames"]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            labels = [_label(frames[i]) for i in stack]
            for label in set(labels):
                inclusive[label] += weight
            if labels:
                own[labels[-1]] += weight
    return inclusive, own, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=["gateway", "baseline"], default="gateway")
    p.add_argument(
        "--kind",
        choices=["json", "sse", "sse-gap"],
        default="json",
        help="sse-gap: the SSE relay check's streams (10 chunks 10 ms apart)",
    )
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--match", default="", help="only inclusive rows containing this text")
    p.add_argument("--top", type=int, default=60)
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    args = p.parse_args()
    install_cleanup()
    pyspy = pyspy_path()
    with tempfile.TemporaryDirectory(prefix="bench-spy-") as tmp:
        stack = Stack(Path(tmp), server_cpu="0", load_cpu="1")
        try:
            stack.start_upstream()
            upstream_model = SSE_GAP_MODEL if args.kind == "sse-gap" else MODEL
            if args.target == "gateway":
                proc = stack.start_gateway(GatewayOptions())
                model = f"openai:{upstream_model}"
            else:
                proc = stack.start_baseline()
                model = upstream_model
            body = {"model": model, "messages": MESSAGES, "max_tokens": 64}
            if args.kind != "json":
                body["stream"] = True
            body_file = Path(tmp) / "body.json"
            body_file.write_text(json.dumps(body))
            paths = Path(tmp) / "paths.txt"
            paths.write_text(V1_PATH + "\n")
            url = stack.urls[args.target]
            drive(Load(url, body_file, paths, args.concurrency, 2), "wrk", "1")  # warm-up
            args.out.mkdir(parents=True, exist_ok=True)
            dest = args.out / f"spy-{args.target}-{args.kind}-c{args.concurrency}.speedscope.json"
            spy = subprocess.Popen(  # noqa: S603
                pyspy_record(pyspy, proc.pid, args.seconds, args.rate, dest),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.3)
            result = drive(
                Load(url, body_file, paths, args.concurrency, args.seconds + 1), "wrk", "1"
            )
            spy.wait(timeout=args.seconds + 60)
        finally:
            stack.close()
    rps = result["requests"] / (result["duration_us"] / 1e6)
    inclusive, own, total = shares(dest)
    print(f"{args.target} {args.kind} c={args.concurrency}: {rps:,.0f} req/s; {dest}")
    print("\n-- inclusive --")
    rows = [(k, v) for k, v in inclusive.most_common() if args.match in k][: args.top]
    for label, weight in rows:
        print(f"{100 * weight / total:5.1f}%  {label}")
    print("\n-- self --")
    for label, weight in own.most_common(args.top // 2):
        print(f"{100 * weight / total:5.1f}%  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
