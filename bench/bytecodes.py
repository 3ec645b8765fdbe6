"""Python bytecodes per request, counted by tracing: which of the gateway's layers a change moves.

    .venv/bin/python -m bench.bytecodes --kind sse-gap              # the SSE relay check's streams
    .venv/bin/python -m bench.bytecodes --kind json --top 30
    .venv/bin/python -m bench.bytecodes --kind sse-gap --target lean   # the pass-through, to compare

The app (the gateway with production settings as ``bench.instructions`` builds it, or the lean
pass-through of ``bench.baseline``) runs in-process over ASGI against the fast fake upstream, two
requests at a time. After a warm-up, ``N`` requests are traced (``sys.settrace`` with per-opcode
events) and the count per request is printed, with the functions that execute the most. Counts repeat
to about 1 %: unlike valgrind's instructions for gapped streams, which drift with timing (a run slowed
by valgrind merges upstream reads). It counts Python only, not the C work of msgspec, uvloop or the
kernel: it ranks the Python layers of a path, and is no substitute for instructions or timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from bench.instructions import call_once, chat_scope, fast_upstream, production_app
from bench.procs import install_cleanup
from bench.run import MESSAGES
from bench.stack import MODEL, SSE_GAP_MODEL

REPO = Path(__file__).resolve().parent.parent
Key = tuple[str, str, int]


class OpcodeCounter:
    """Bytecodes executed per function (file, name, first line) while installed."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()

    def _call(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            return self._opcode
        return None

    def _opcode(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            code = frame.f_code
            self.counts[(code.co_filename, code.co_name, code.co_firstlineno)] += 1
        return self._opcode

    def start(self) -> None:
        sys.settrace(self._call)

    def stop(self) -> None:
        sys.settrace(None)


def _gateway_app(upstream: str) -> tuple[Any, Callable[[], Any]]:
    app = production_app(upstream)
    return app, app.lifespan


def _lean_app(upstream: str) -> tuple[Any, Callable[[], Any]]:
    from bench.baseline import PassThrough

    app = PassThrough(upstream, "gateway")

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        task = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, outbox.put))
        await outbox.get()
        yield
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return app, lifespan


async def _run(args: argparse.Namespace, upstream: str, counter: OpcodeCounter) -> int:
    app, lifespan = (_gateway_app if args.target == "gateway" else _lean_app)(upstream)
    model = SSE_GAP_MODEL if args.kind == "sse-gap" else MODEL
    if args.target == "gateway":
        model = f"openai:{model}"
    body = json.dumps(
        {"model": model, "messages": MESSAGES, "stream": args.kind != "json"}
    ).encode()
    scope = chat_scope(body)
    failures = 0

    async def worker(count: int) -> None:
        nonlocal failures
        for _ in range(count):
            failures += await call_once(app, scope, body) != 200

    async def both(count: int) -> None:
        await asyncio.gather(worker(count // 2), worker(count - count // 2))

    async with lifespan():
        await both(args.warmup)
        counter.start()
        try:
            await both(args.requests)
        finally:
            counter.stop()
    return failures


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", f"{REPO}/"):
        path = path.split(marker, 1)[-1]
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kind", choices=["json", "sse", "sse-gap"], default="sse-gap")
    p.add_argument("--target", choices=["gateway", "lean"], default="gateway")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    install_cleanup()
    counter = OpcodeCounter()
    with fast_upstream("gateway-bytecodes-") as url:
        import uvloop

        started = time.monotonic()
        failures = uvloop.run(_run(args, url, counter))
    if failures:
        raise SystemExit(f"{failures} of the requests failed")
    total = sum(counter.counts.values()) / args.requests
    by_package: Counter[str] = Counter()
    for (path, _, _), count in counter.counts.items():
        by_package[_short(path).split("/", 1)[0]] += count
    print(
        f"{args.target} {args.kind}: {total:,.0f} Python bytecodes a request "
        f"({args.requests} traced, {time.monotonic() - started:.0f} s)"
    )
    print("\nby package (per request):")
    for package, count in by_package.most_common(12):
        print(f"{count / args.requests:9,.0f}  {package}")
    print("\nby function (per request):")
    for (path, name, line), count in counter.counts.most_common(args.top):
        print(f"{count / args.requests:9,.0f}  {name} ({_short(path)}:{line})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
