"""The httpx transport the gateway runs on: httpx-aiohttp's, with answers read whole in one call.

httpx-aiohttp hands every answer over as a stream, and ``Response.aread()`` then pulls it through
three async-generator layers (``aiter_bytes``, ``aiter_raw``, the transport's ``iter_chunked``),
one hop each per read, even for a JSON answer the gateway always wants whole. A request marked
``READ_WHOLE`` (``UpstreamClient.send`` marks the calls it does not stream) is answered with its
body already read by aiohttp in one call; everything else (streams, errors, the mapping of
aiohttp's exceptions to httpx's) is httpx-aiohttp's own. Other transports (tests' mocks) ignore
the mark and are read the usual way.

Its session keeps no cookies: aiohttp's default jar would store a provider's ``Set-Cookie`` from
one client's call and send it on every other client's calls (httpx's own stack never does, as
``UpstreamClient`` bypasses the client's jar).
"""

from __future__ import annotations

from typing import Final

import httpx
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

READ_WHOLE: Final = "gateway.read_whole"
_HTTP_11: Final = {"http_version": b"HTTP/1.1"}


class WholeAnswerTransport(AiohttpTransport):
    """``AiohttpTransport`` for one provider's pool, minus its per-call work the gateway never needs
    (proxies, a new ``ClientTimeout`` per call) and with ``READ_WHOLE`` answers read at once."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._timeouts: dict[tuple[object, ...], ClientTimeout] = {}

    def get_client(self) -> ClientSession:
        limit = self.limits.max_connections
        connector = TCPConnector(
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            limit=limit if limit is not None else 100,  # aiohttp's default
        )
        return ClientSession(connector=connector, cookie_jar=DummyCookieJar())

    def _timeout(self, request: httpx.Request) -> ClientTimeout:
        spec = request.extensions.get("timeout", {})
        key = (spec.get("connect"), spec.get("read"), spec.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:  # one per distinct setting: the client's own, in practice
            timeout = ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
            self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self.client
        if not isinstance(session, ClientSession):
            session = self.client = self.get_client()
        try:
            data: bytes | httpx.AsyncByteStream | None = request.content or None
        except httpx.RequestNotRead:  # a streamed upload: aiohttp frames it itself
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)
        with map_aiohttp_exceptions():
            answer = await session.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._timeout(request),
                server_hostname=request.extensions.get("sni_hostname"),
            ).__aenter__()
            if request.extensions.get(READ_WHOLE):
                try:
                    body = await answer.read()  # the connection goes back to the pool at the end
                except BaseException:
                    answer.close()  # half-read: the connection cannot be reused
                    raise
                # content-encoding is left to httpx, which decodes ``content`` on its own read
                return httpx.Response(
                    answer.status,
                    headers=answer.raw_headers,
                    content=body,
                    request=request,
                    extensions=_HTTP_11,
                )
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=AiohttpResponseStream(answer),
            request=request,
            extensions=_HTTP_11,
        )
