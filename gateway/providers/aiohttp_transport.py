"""The aiohttp-backed httpx transport (``runtime.router.httpClient: aiohttp``): httpx-aiohttp's, with
answers read whole in one call.

httpx-aiohttp hands every answer over as a stream; a request marked ``READ_WHOLE`` (see
``gateway.providers.whole``) is answered with its body already read by aiohttp in one call.
Everything else (streams, the mapping of aiohttp's exceptions to httpx's) is httpx-aiohttp's
own, but for one mapping (``aiohttp_errors``).

Per call it also skips what aiohttp would redo from httpx's types: the URL is parsed once per
request URL object (adapters keep theirs), and the headers go over as aiohttp's own multidict.

Its session keeps no cookies: aiohttp's default jar would store a provider's ``Set-Cookie`` from
one client's call and send it on every other client's calls (httpx's own stack never does, as
``UpstreamClient`` bypasses the client's jar).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from aiohttp import (
    ClientConnectionError,
    ClientConnectorError,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    DummyCookieJar,
    ServerTimeoutError,
    TCPConnector,
)
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict
from yarl import URL

from gateway.providers.whole import HTTP_11, READ_WHOLE, whole_response


@contextmanager
def aiohttp_errors() -> Iterator[None]:
    """httpx-aiohttp's mapping of aiohttp's exceptions, but for a connection the upstream closed or
    reset after it was made: httpx-aiohttp maps every ``ClientConnectionError`` to
    ``ConnectTimeout``, a disconnect after the request was sent too, which is a ``ReadError``
    (a failure of the call, not of connecting). Only connector errors and timeouts are about
    connecting."""
    try:
        with map_aiohttp_exceptions():
            yield
    except httpx.ConnectTimeout as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientConnectionError) and not isinstance(
            cause, ClientConnectorError | ServerTimeoutError
        ):
            raise httpx.ReadError(f"upstream connection lost: {cause}") from cause
        raise


class WholeAnswerTransport(AiohttpTransport):
    """``AiohttpTransport`` for one provider's pool, minus its per-call work the gateway never needs
    (proxies, a new ``ClientTimeout`` per call) and with ``READ_WHOLE`` answers read at once."""

    def __init__(self, *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._timeouts: dict[tuple[object, ...], ClientTimeout] = {}
        # The last request URL and its parsed form: an adapter sends every call to one URL object.
        self._url: tuple[httpx.URL, URL] | None = None

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

    def _parsed(self, url: httpx.URL) -> URL:
        last = self._url
        if last is None or last[0] is not url:  # identity: httpx.URL's == would format it
            last = self._url = (url, URL(str(url), encoded=True))
        return last[1]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self.client
        if not isinstance(session, ClientSession):
            session = self.client = self.get_client()
        try:
            data: bytes | httpx.AsyncByteStream | None = request.content or None
        except httpx.RequestNotRead:  # a streamed upload: aiohttp frames it itself
            data = request.stream  # type: ignore[assignment]
            request.headers.pop("transfer-encoding", None)
        with aiohttp_errors():
            answer = await session.request(
                request.method,
                self._parsed(request.url),
                # aiohttp would build its multidict from httpx's decoded items, one at a time
                headers=_headers(request.headers),
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
                return whole_response(answer.status, answer.raw_headers, body, request)
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=AnswerStream(answer),
            request=request,
            extensions=HTTP_11,
        )


class AnswerStream(httpx.AsyncByteStream):
    """A streamed answer's body as aiohttp receives it: one ``readany()`` per step, whatever has
    arrived. httpx-aiohttp's stream wraps aiohttp's chunk iterator in a generator of its own: two
    more hops per read, on every chunk of every stream. aiohttp's errors are mapped as it maps them.
    """

    __slots__ = ("_answer", "_content")

    def __init__(self, answer: ClientResponse) -> None:
        self._answer = answer
        self._content = answer.content

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._content.readany()
        except Exception:
            with aiohttp_errors():  # only on failure: no context manager per read
                raise
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        with aiohttp_errors():
            await self._answer.__aexit__(None, None, None)


def _headers(headers: httpx.Headers) -> CIMultiDict[str]:
    """What aiohttp builds from httpx's decoded items, built from the raw pairs in one go."""
    encoding = headers.encoding  # what ``items()`` decodes with
    return CIMultiDict([(k.decode(encoding), v.decode(encoding)) for k, v in headers.raw])
