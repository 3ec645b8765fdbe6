"""CPU instructions per request, counted by valgrind: a figure this VM's noise cannot blur.

    .venv/bin/python -m bench.instructions                 # /v1 JSON at c=16
    .venv/bin/python -m bench.instructions --kind sse      # /v1 SSE (10 chunks)

Timings on this shared 2-core VM drift by 10-20 % between runs, more than most single changes
save. This counts instead: the gateway app (production settings, as ``bench.run`` writes them) is
driven in-process over ASGI (no uvicorn, no socket on the client side) against the fast fake
upstream over real loopback HTTP, under callgrind, twice: ``N`` and ``3N`` requests after the
same warm-up. The difference over ``2N`` is the count per request (start-up and imports cancel
out). Four runs of the same code gave 1,459,954, 1,460,578, 1,461,285 and 1,480,223: about 1 % at
worst (the order in which 16 concurrent calls interleave differs run to run), so run it two or three
times and trust differences above that. Run it in two checkouts to compare commits. Needs
``valgrind`` (Debian package); about 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import yaml

from bench.procs import Proc, free_port, install_cleanup, wait_http
from bench.run import MESSAGES
from bench.stack import MODEL, GatewayOptions, gateway_yaml

REPO = Path(__file__).resolve().parent.parent
_COLLECTED = re.compile(rb"Collected : (\d+)")
_PROVIDERS = ("OPENAI", "GROQ", "OPENROUTER", "CEREBRAS")


def chat_scope(body: bytes) -> dict[str, Any]:
    """The ASGI scope of a ``POST /v1/chat/completions`` carrying ``body``."""
    path = "/v1/chat/completions"
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "asgi": {"version": "3.0"},
    }


async def call_once(app: Any, scope: dict[str, Any], body: bytes) -> int:
    """One request through the app over ASGI, its client staying connected: the answer's status."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    never = asyncio.Event()
    status = 0

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await never.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


async def _drive(app: Any, body: bytes, concurrency: int, requests: int, warmup: int) -> int:
    """Calls the app ``warmup`` then ``requests`` times, ``concurrency`` at once; returns failures."""
    failures = 0
    scope = chat_scope(body)

    async def one() -> None:
        nonlocal failures
        failures += await call_once(app, scope, body) != 200

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    async with app.lifespan():
        for count in (warmup, requests):
            await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    return failures


@contextmanager
def fast_upstream(prefix: str) -> Iterator[str]:
    """The fast fake upstream on a free port, for as long as the block runs: its ``/v1`` URL."""
    port = free_port()
    upstream = Proc(
        "upstream",
        [sys.executable, "-m", "bench.upstream", "--port", str(port)],
        cpu=None,
        log=Path(tempfile.mkdtemp(prefix=prefix)) / "upstream.log",
        cwd=str(REPO),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", upstream)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        upstream.stop()


def production_app(upstream: str) -> Any:
    """The gateway app with ``bench.run``'s production settings, every provider at ``upstream``."""
    from gateway.app import create_app
    from gateway.config.loader import parse_settings
    from gateway.observability.logging import configure_logging

    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-app-"))
    raw = yaml.safe_load(gateway_yaml(free_port(), workdir / "gateway.db", GatewayOptions()))
    env = {f"{p}_ENDPOINT": upstream for p in _PROVIDERS}
    env.update({f"{p}_API_KEY": "bench" for p in _PROVIDERS})
    settings = parse_settings(raw, env, source="bench-app.yaml")
    # production logging (JSON at INFO), written where it costs what a file would
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    configure_logging("info", "json")
    return create_app(settings)


def child(args: argparse.Namespace) -> int:
    """The driven app; run under callgrind by the parent."""
    import uvloop

    app = production_app(args.upstream)
    body = msgspec.json.encode(
        {"model": "chat", "messages": MESSAGES, "stream": args.kind == "sse"}
    )
    failures = uvloop.run(_drive(app, body, args.concurrency, args.requests, args.warmup))
    print(f"failures={failures}", file=sys.__stdout__)
    return 1 if failures else 0


def _count(upstream: str, args: argparse.Namespace, requests: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        "--upstream",
        upstream,
        "--kind",
        args.kind,
        "--concurrency",
        str(args.concurrency),
        "--requests",
        str(requests),
        "--warmup",
        str(args.warmup),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, check=False)  # noqa: S603
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = (done.stdout + done.stderr)[-2000:].decode(errors="replace")
        raise SystemExit(f"the counted run failed (exit {done.returncode}):\n{tail}")
    return int(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=["json", "sse"], default="json")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--requests", type=int, default=160, help="N (the second run makes 3N)")
    p.add_argument("--warmup", type=int, default=80)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    install_cleanup()
    with fast_upstream("gateway-instructions-") as url:
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # one valgrind per core
            small, large = pool.map(
                lambda n: _count(url, args, n), (args.requests, 3 * args.requests)
            )
    per_request = (large - small) / (2 * args.requests)
    print(
        f"{args.kind} c={args.concurrency} ({MODEL}): {per_request:,.0f} instructions a request "
        f"({2 * args.requests} requests counted, {time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
