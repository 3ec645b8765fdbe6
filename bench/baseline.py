"""The minimal pass-through baseline: a raw ASGI app on the gateway's own client stack.

``POST /v1/chat/completions`` is forwarded unchanged to ``<upstream>/chat/completions`` with one shared
``httpx.AsyncClient`` over ``httpx_aiohttp.AiohttpTransport`` (``--client httpx`` for httpx's own pool),
a pre-parsed URL and ``send()`` of a built request; ``--client gateway`` uses the gateway's own
client path instead (``UpstreamClient`` over the default client stack, ``H1Transport``: what
the pass-through would cost with every client-side saving the gateway has); a JSON answer is read
whole and sent with its length, an SSE answer is relayed chunk by chunk. No routing, logging,
metrics or storage: what any Python proxy on this stack must pay. Served by uvicorn with one
worker, like ``gateway serve``.

Run: ``python -m bench.baseline --port 9100 --upstream http://127.0.0.1:9000/v1``.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import uvicorn

from bench.upstream import STREAM_FIELD
from gateway.providers.http import ClientLimits, UpstreamClient, build_client

_JSON = [(b"content-type", b"application/json")]


def make_client(client_kind: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    timeout = httpx.Timeout(connect=5.0, read=60.0, write=10.0, pool=5.0)
    transport: httpx.AsyncBaseTransport | None = None
    if client_kind == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport, trust_env=False)


async def read_body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def relay(response: httpx.Response, send: Any) -> None:
    """A JSON answer whole with its length; an SSE answer chunk by chunk as it arrives."""
    ctype = response.headers.get("content-type", "application/json")
    start = {"type": "http.response.start", "status": response.status_code}
    if ctype.startswith("text/event-stream"):
        headers = [(b"content-type", ctype.encode()), (b"cache-control", b"no-cache")]
        await send({**start, "headers": headers})
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    payload = await response.aread()
    headers = [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(payload))]
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class PassThrough:
    """The ASGI app: one shared client, built at startup, closed at shutdown."""

    def __init__(self, upstream: str, client_kind: str) -> None:
        self.url = httpx.URL(upstream.rstrip("/") + "/chat/completions")
        self.headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "authorization": "Bearer bench",
        }
        self.client_kind = client_kind
        self.client: httpx.AsyncClient | None = None
        self.upstream: UpstreamClient | None = None
        self._lean_headers: httpx.Headers | None = None

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.client_kind == "gateway":
                    self.client = build_client(ClientLimits())
                    self.upstream = UpstreamClient(self.client)
                    self._lean_headers = UpstreamClient.headers(self.url, self.headers)
                else:
                    self.client = make_client(self.client_kind)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions" or not self.client:
            await send({"type": "http.response.start", "status": 200, "headers": _JSON})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})
            return
        body = await read_body(receive)
        if self.upstream is not None:
            response = await self._send_lean(body)
        else:
            request = self.client.build_request(
                "POST", self.url, content=body, headers=self.headers
            )
            response = await self.client.send(request, stream=True)
        try:
            await relay(response, send)
        finally:
            await response.aclose()

    async def _send_lean(self, body: bytes) -> httpx.Response:
        """The gateway's way: headers normalized once, the request handed to the transport, a JSON
        answer read whole by aiohttp (the body is only looked at for ``"stream": true``)."""
        assert self.upstream is not None
        assert self._lean_headers is not None
        request = self.upstream.request(self.url, body, self._lean_headers)
        return await self.upstream.send(request, stream=STREAM_FIELD.search(body) is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000/v1")
    parser.add_argument("--client", choices=["aiohttp", "httpx", "gateway"], default="aiohttp")
    args = parser.parse_args()
    uvicorn.run(
        PassThrough(args.upstream, args.client),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
