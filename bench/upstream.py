"""A fast fake OpenAI upstream: a raw asyncio ``Protocol`` speaking just enough HTTP/1.1.

``POST .../chat/completions`` answers a fixed ``chat.completion`` JSON, or, when the body asks for
``"stream": true``, an SSE stream of ``--chunks`` content chunks (then a usage chunk and ``[DONE]``),
sent with chunked transfer encoding. The gap between chunks is ``--gap-ms``, overridden per request by
a model name containing ``gapN`` (N milliseconds), so one upstream serves both the throughput runs
(no gap) and the SSE relay check (10 ms gaps). Any other request gets a small 200 JSON (health).
Keep-alive, pipelining-safe, no parsing beyond the header block and Content-Length.

Run: ``python -m bench.upstream --port 9000 [--chunks 10] [--gap-ms 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from collections.abc import Callable

_GAP = re.compile(rb"gap(\d+)")
STREAM_FIELD = re.compile(rb'"stream"\s*:\s*true')  # the bodies that ask for SSE

COMPLETION = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,'
    b'"model":"bench-model","system_fingerprint":"fp_bench","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"Hello! This is a fixed answer from the benchmark '
    b'upstream, about as long as a short real reply."},"logprobs":null,"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}'
)
_CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench-model","choices":[{"index":0,"delta":{"content":"token%d "},'
    b'"finish_reason":null}]}\n\n'
)
_LAST = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench-model","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":10,'
    b'"total_tokens":22}}\n\ndata: [DONE]\n\n'
)
_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"x-request-id: upstream\r\n\r\n"
)
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_OK = b'{"ok":true}'


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Upstream(asyncio.Protocol):
    chunks = 10
    gap_s = 0.0

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a stream is being written; further requests wait in buf

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    def _process(self) -> None:
        while self.transport is not None and not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lower.find(b"\r\n", at + 2)
                length = int(lower[at + 17 : stop if stop >= 0 else None])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if b"/chat/completions" not in head[: head.find(b"\r\n")]:
            self.transport.write(_JSON_HEAD % len(_OK) + _OK)
            return
        if STREAM_FIELD.search(body) is None:
            self.transport.write(_JSON_HEAD % len(COMPLETION) + COMPLETION)
            return
        match = _GAP.search(body)
        gap = int(match.group(1)) / 1000 if match else self.gap_s
        if gap <= 0:
            parts = [_SSE_HEAD]
            parts.extend(_chunked(_CHUNK % i) for i in range(self.chunks))
            parts.append(_chunked(_LAST) + b"0\r\n\r\n")
            self.transport.write(b"".join(parts))
            return
        self.busy = True
        self.transport.write(_SSE_HEAD + _chunked(_CHUNK % 0))
        loop = asyncio.get_running_loop()
        self._next(loop, 1, gap)

    def _next(self, loop: asyncio.AbstractEventLoop, i: int, gap: float) -> None:
        def fire() -> None:
            if self.transport is None:
                return
            if i < self.chunks:
                self.transport.write(_chunked(_CHUNK % i))
                self._next(loop, i + 1, gap)
                return
            self.transport.write(_chunked(_LAST) + b"0\r\n\r\n")
            self.busy = False
            self._process()

        fire_cb: Callable[[], None] = fire
        loop.call_later(gap, fire_cb)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on {host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--gap-ms", type=float, default=0.0)
    args = parser.parse_args()
    Upstream.chunks = args.chunks
    Upstream.gap_s = args.gap_ms / 1000
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
