"""The single boundary between httpx and the gateway's error tree, plus shared HTTP helpers.

Adapters run every upstream exchange inside ``upstream_errors()`` and turn non-2xx answers into errors
with ``error_from_response()``; nothing else in the gateway sees an httpx exception.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

import httpx
import msgspec

from gateway.domain.types import EventBatch, StreamEvent
from gateway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamInvalidResponseError,
    UpstreamModelNotFoundError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from gateway.providers.h1_transport import H1Transport
from gateway.providers.whole import READ_WHOLE
from gateway.redaction import redact

_MAX_ERROR_TEXT = 500


@dataclass(frozen=True, slots=True)
class ClientLimits:
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    write_timeout_s: float = 10.0
    pool_timeout_s: float = 5.0
    max_connections: int = 256
    max_keepalive: int = 64


def build_client(
    limits: ClientLimits,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    stack: str = "httptools",
) -> httpx.AsyncClient:
    """The pooled client of one provider. Redirects are never followed; proxies never read from env.

    ``stack`` is the HTTP/1.1 machinery under httpx's API: ``"httptools"`` the gateway's own
    transport (``H1Transport``: asyncio protocols and httptools' parser, the fastest),
    ``"aiohttp"`` aiohttp's pool and parser (the httpx-aiohttp transport), ``"httpx"`` httpx's own
    pool; an explicit ``transport`` (tests) wins over all three.
    """
    pool_limits = httpx.Limits(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive,
    )
    if transport is None and stack == "httptools":
        transport = H1Transport(limits=pool_limits)
    elif transport is None and stack == "aiohttp":
        # Imported only when configured: aiohttp adds about 7 MB to every worker's memory.
        from gateway.providers.aiohttp_transport import WholeAnswerTransport

        transport = WholeAnswerTransport(limits=pool_limits)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(
            connect=limits.connect_timeout_s,
            read=limits.read_timeout_s,
            write=limits.write_timeout_s,
            pool=limits.pool_timeout_s,
        ),
        limits=pool_limits,
        follow_redirects=False,
        trust_env=False,
        transport=transport,
    )


class UpstreamClient:
    """One provider's pooled client, used the lean way: a request is built once per call and handed
    straight to the client's transport.

    ``AsyncClient.send`` wraps every call in layers the gateway never uses (auth flows, a redirect
    loop, event hooks, a cookie jar fed from every answer) and ``build_request`` merges client-wide
    headers, params and cookies again per call; together about 60 us of CPU per request. The client
    still owns the transport (its pool, its lifetime), and tests that fake the transport or patch
    httpx's (pytest-httpx) see every request as before.
    """

    __slots__ = ("_timeout", "_transport", "client")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self._timeout = client.timeout.as_dict()
        # No mounts are ever configured and proxies never come from the environment
        # (trust_env=False), so the client's one transport serves every URL.
        self._transport: httpx.AsyncBaseTransport = client._transport

    @staticmethod
    def headers(url: httpx.URL, fields: Mapping[str, str]) -> httpx.Headers:
        """The fixed headers of every call to ``url``'s host, normalized once: Host first (as httpx
        orders it), encoding settled (httpx would re-detect it on every read)."""
        return httpx.Headers([("Host", url.netloc.decode("ascii")), *fields.items()], "ascii")

    def request(self, url: httpx.URL, body: bytes, headers: httpx.Headers) -> httpx.Request:
        """A POST of ``body``: what ``httpx.Request(content=...)`` builds, at a third of its cost
        (the header dict is not normalized again, the body not wrapped and re-read).

        The fixed headers are already normalized (``headers()``), so Content-Length is appended to
        their entries as ``Headers.__setitem__`` would store it, without its scan for duplicates
        (httpx is pinned; tests read these requests through httpx's public API)."""
        fields = httpx.Headers(encoding="ascii")
        fields._list = [*headers._list, (b"Content-Length", b"content-length", b"%d" % len(body))]
        request = httpx.Request(
            "POST", url, stream=httpx.ByteStream(body), extensions={"timeout": self._timeout}
        )
        request.headers = fields
        request.read()
        return request

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """The answer's head (``stream=True``) or the whole answer; httpx errors are raised as-is
        for ``upstream_errors`` to map."""
        if not stream:
            request.extensions[READ_WHOLE] = True
        response = await self._transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            finally:
                await response.aclose()
        return response


class upstream_errors:
    """Map httpx transport failures to the error tree.

    Inside a streamed body every transport failure is a cut stream: the provider accepted the call
    and then did not finish it. A class, not ``@contextmanager``: every model call enters one, and
    the generator-based form cost about 180 bytecodes a call.
    """

    __slots__ = ("_in_stream_body", "_provider")

    def __init__(self, provider: str, *, in_stream_body: bool = False) -> None:
        self._provider = provider
        self._in_stream_body = in_stream_body

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, httpx.HTTPError):
            raise _transport_error(
                exc, self._provider, in_stream_body=self._in_stream_body
            ) from exc


_CONNECT_FAILURES: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectTimeout, "connect timed out"),
    (httpx.ConnectError, "connection failed"),
    # A saturated pool is our own overload, but from the client's view the provider is unreachable.
    (httpx.PoolTimeout, "connection pool exhausted"),
)


def _transport_error(exc: httpx.HTTPError, provider: str, *, in_stream_body: bool) -> UpstreamError:
    cls: type[UpstreamError]
    closed = isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError)
    if closed:
        cls, what = (
            (UpstreamStreamError, "stream cut")
            if in_stream_body
            else (UpstreamServerError, "connection closed")
        )
    elif isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        cls, what = (
            (UpstreamStreamError, "stream stalled")
            if in_stream_body
            else (UpstreamTimeoutError, "timed out")
        )
    else:
        cls = UpstreamConnectError
        what = next((w for t, w in _CONNECT_FAILURES if isinstance(exc, t)), "transport error")
    return cls(f"{provider}: {what}", provider=provider)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf" would cool a provider forever; "nan" is no answer at all.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _upstream_message(body: bytes) -> str:
    """The human message of an upstream error body, whatever its shape."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:_MAX_ERROR_TEXT].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:_MAX_ERROR_TEXT]
        if isinstance(err, str):
            return err[:_MAX_ERROR_TEXT]
    return ""


def error_from_response(
    provider: str,
    status: int,
    headers: httpx.Headers,
    body: bytes,
    api_key: str | None,
    *,
    sent: bytes = b"",
) -> UpstreamError:
    """Classify a non-2xx upstream answer (DESIGN section 4). The upstream text never carries the key.

    ``sent`` is the body the gateway sent: what the upstream quotes of it is the client's own text.
    """
    known = sent.decode("utf-8", "replace")
    text = redact(_upstream_message(body), [api_key], known)
    message = f"{provider} answered {status}" + (f": {text}" if text else "")
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 429:
        return UpstreamRateLimitedError(
            message, provider=provider, upstream_status=status, retry_after_s=retry_after
        )
    if status in (401, 403):
        return UpstreamAuthError(message, provider=provider, upstream_status=status)
    if status == 408:
        return UpstreamTimeoutError(message, provider=provider, upstream_status=status)
    if status == 404:
        return UpstreamModelNotFoundError(message, provider=provider, upstream_status=status)
    if status >= 500:
        return UpstreamServerError(
            message, provider=provider, upstream_status=status, retry_after_s=retry_after
        )
    return UpstreamClientError(message, provider=provider, upstream_status=status)


async def raise_for_upstream_status(
    provider: str, response: httpx.Response, api_key: str | None
) -> None:
    if response.status_code < 300:
        return
    with upstream_errors(provider):
        body = await response.aread()
    if response.status_code < 400:
        # A redirect (never followed) is no answer: invalid, so the next candidate is tried.
        raise UpstreamInvalidResponseError(
            f"{provider} answered {response.status_code}; redirects are not followed",
            provider=provider,
            upstream_status=response.status_code,
        )
    raise error_from_response(
        provider,
        response.status_code,
        response.headers,
        body,
        api_key,
        sent=response.request.content,
    )


def decode_json(provider: str, body: bytes) -> object:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: answer is not valid JSON", provider=provider
        ) from exc


class SseEvent(msgspec.Struct, frozen=True):  # a frozen dataclass costs 6x to build, per event
    event: str | None
    data: bytes  # the data lines joined by LF, as sent (msgspec decodes bytes directly)


def _sse_block(block: bytes) -> SseEvent | None:
    """One event from the lines between two blank lines; ``None`` when it carries no data."""
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return SseEvent(event, b"\n".join(data)) if data else None


class SseParser:
    """Server-sent events from the bytes of a stream, fed as they arrive.

    Works on bytes end to end: no text decoding of whole reads, no per-line iteration through
    httpx's line splitter. CR LF and lone CR line ends are folded to LF (a CR at the end of a read
    waits for the next one, which may start with its LF).
    """

    __slots__ = ("_buffer", "_cr")

    def __init__(self) -> None:
        self._buffer = b""
        self._cr = False

    def single(self, chunk: bytes) -> bytes | None:
        """The data of ``chunk`` when it is the common read, one whole single-line event with LF
        line ends and nothing carried over; ``None`` for any other read, which ``feed`` takes.
        Nearly every read of a stream is that one: its data needs no event and no list."""
        if (
            chunk[:6] == b"data: "
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk[-1:] == b"\n"
            and not self._buffer
            and not self._cr
            and b"\r" not in chunk
        ):
            return chunk[6:-2]
        return None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        data = self.single(chunk)
        if data is not None:
            return [SseEvent(None, data)]
        if self._cr:
            chunk, self._cr = b"\r" + chunk, False
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):
                chunk, self._cr = chunk[:-1], True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        # Everything after the last blank line waits for the next read ("" when the read ended an
        # event, as nearly every read does).
        *blocks, self._buffer = (self._buffer + chunk if self._buffer else chunk).split(b"\n\n")
        events = []
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:  # the common single-line event
                events.append(SseEvent(None, block[6:]))
            elif (event := _sse_block(block)) is not None:
                events.append(event)
        return events

    def close(self) -> list[SseEvent]:
        """The last event, when the stream ended without its blank line."""
        rest, self._buffer = self._buffer.rstrip(b"\n"), b""
        event = _sse_block(rest) if rest else None
        return [event] if event is not None else []


def translate_read(
    sses: list[SseEvent],
    feed: Callable[[SseEvent], StreamEvent | None],
    done: Callable[[], bool] | None = None,
) -> tuple[EventBatch, UpstreamError | None]:
    """The events ``feed`` makes of one read's SSE events, up to the one after which ``done()``
    holds; a failure ends the batch and is returned with the events before it, which are still
    relayed."""
    batch: list[StreamEvent] = []
    for sse in sses:
        try:
            event = feed(sse)
        except UpstreamError as exc:
            return tuple(batch), exc
        if event is not None:
            batch.append(event)
        if done is not None and done():
            break
    return tuple(batch), None


def body_reads(response: httpx.Response) -> AsyncIterable[bytes]:
    """What a streamed response's body is read from, chunk by chunk as the transport delivers it.

    Without a content coding the transport's own stream is read directly: httpx's aiter_bytes and
    aiter_raw would add two generator layers per read for no work (transports map their errors).
    Its transport failures are ``httpx.HTTPError``s, for ``stream_read_error``."""
    encoded = response.headers.get("content-encoding", "identity").strip().lower() != "identity"
    if encoded or not isinstance(response.stream, AsyncIterable):
        return response.aiter_bytes()
    return response.stream


def stream_read_error(provider: str, exc: httpx.HTTPError) -> UpstreamError:
    """A transport failure while reading a streamed body: the stream is cut or stalled."""
    return _transport_error(exc, provider, in_stream_body=True)


async def sse_batches(provider: str, response: httpx.Response) -> AsyncIterator[list[SseEvent]]:
    """The server-sent events of a streamed response, one non-empty list per read that completed
    any, with transport failures mapped to stream errors."""
    parser = SseParser()
    try:
        async for chunk in body_reads(response):
            events = parser.feed(chunk)
            if events:
                yield events
    except httpx.HTTPError as exc:
        # Only httpx's errors are mapped: an exception thrown in at a ``yield`` (the consumer
        # closing the generator) is none, and passes through untouched.
        raise stream_read_error(provider, exc) from exc
    last = parser.close()
    if last:
        yield last
