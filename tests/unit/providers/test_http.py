"""The shared HTTP helpers: Retry-After parsing, SSE framing, error classification, redaction."""

from __future__ import annotations

import email.utils
import gzip
from collections.abc import Callable

import httpx
import pytest
from pytest_httpx import IteratorStream

from gateway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamModelNotFoundError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from gateway.providers.http import (
    SseEvent,
    error_from_response,
    parse_retry_after,
    sse_batches,
    upstream_errors,
)
from gateway.redaction import redact

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7", 7.0), (" 12 ", 12.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0)],
)
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_retry_after_as_http_date_counts_from_now() -> None:
    value = email.utils.formatdate(NOW + 30, usegmt=True)

    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


def test_retry_after_date_in_the_past_is_zero() -> None:
    value = email.utils.formatdate(NOW - 600, usegmt=True)

    assert parse_retry_after(value, now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo 2015 99:99:99 GMT", "7s"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


async def batches_of(chunks: list[bytes]) -> list[list[SseEvent]]:
    response = httpx.Response(200, stream=IteratorStream(chunks))
    return [batch async for batch in sse_batches("test", response)]


async def events_of(chunks: list[bytes]) -> list[SseEvent]:
    return [event for batch in await batches_of(chunks) for event in batch]


async def test_sse_batches_are_the_events_each_read_completed() -> None:
    chunks = [b"data: a\n\ndata: b\n\ndata: c", b"", b"\n\n", b"data: d\n\n"]

    assert await batches_of(chunks) == [
        [SseEvent(None, b"a"), SseEvent(None, b"b")],
        [SseEvent(None, b"c")],
        [SseEvent(None, b"d")],
    ]


async def test_sse_joins_multi_line_data_with_newlines() -> None:
    events = await events_of([b"data: first\ndata: second\ndata:third\n\n"])

    assert events == [SseEvent(None, b"first\nsecond\nthird")]


async def test_sse_skips_comments_and_ignores_unknown_fields() -> None:
    body = b": keep-alive\n\nid: 4\nretry: 100\ndata: x\n: inside\n\n"

    assert await events_of([body]) == [SseEvent(None, b"x")]


async def test_sse_carries_event_names_and_resets_them_per_event() -> None:
    body = b"event: message_start\ndata: {}\n\ndata: plain\n\nevent: ping\n\n"

    assert await events_of([body]) == [SseEvent("message_start", b"{}"), SseEvent(None, b"plain")]


async def test_sse_yields_the_last_event_without_a_trailing_blank_line() -> None:
    assert await events_of([b"data: one\n\ndata: two"]) == [
        SseEvent(None, b"one"),
        SseEvent(None, b"two"),
    ]


async def test_sse_reassembles_lines_split_across_chunks_and_crlf() -> None:
    body = b"event: a\r\ndata: hello world\r\n\r\ndata: b\r\n\r\n"
    chunks = [body[i : i + 5] for i in range(0, len(body), 5)]

    assert await events_of(chunks) == [SseEvent("a", b"hello world"), SseEvent(None, b"b")]


async def test_sse_folds_lone_cr_and_a_crlf_split_between_reads() -> None:
    chunks = [b"data: a\r", b"\n\r", b"\ndata: b\r\r", b"data: c\r"]

    assert await events_of(chunks) == [
        SseEvent(None, b"a"),
        SseEvent(None, b"b"),
        SseEvent(None, b"c"),
    ]


async def test_sse_byte_by_byte_keeps_multibyte_text_whole() -> None:
    body = 'data: {"t": "héllo ✓"}\n\ndata: [DONE]\n\n'.encode()
    chunks = [body[i : i + 1] for i in range(len(body))]

    events = await events_of(chunks)

    assert events == [SseEvent(None, '{"t": "héllo ✓"}'.encode()), SseEvent(None, b"[DONE]")]


async def test_sse_of_a_gzip_encoded_stream_is_decoded_first() -> None:
    body = gzip.compress(b"data: one\n\ndata: two\n\n")
    chunks = [body[i : i + 7] for i in range(0, len(body), 7)]
    response = httpx.Response(
        200, headers={"content-encoding": "gzip"}, stream=IteratorStream(chunks)
    )

    events = [event async for batch in sse_batches("test", response) for event in batch]

    assert events == [SseEvent(None, b"one"), SseEvent(None, b"two")]


async def test_sse_keeps_all_but_one_leading_space_of_a_value() -> None:
    assert await events_of([b"data:  indented\n\n"]) == [SseEvent(None, b" indented")]


async def test_sse_cut_connection_is_a_stream_error(
    cut_stream: Callable[[list[bytes]], IteratorStream],
) -> None:
    response = httpx.Response(200, stream=cut_stream([b"data: one\n\n"]))
    received: list[SseEvent] = []

    async def consume() -> None:
        async for batch in sse_batches("test", response):
            received.extend(batch)

    with pytest.raises(UpstreamStreamError):
        await consume()

    assert received == [SseEvent(None, b"one")]


@pytest.mark.parametrize(
    ("exception", "in_stream_body", "error_type"),
    [
        (httpx.ConnectError("refused"), False, UpstreamConnectError),
        (httpx.ConnectTimeout("slow"), False, UpstreamConnectError),
        (httpx.PoolTimeout("full"), False, UpstreamConnectError),
        (httpx.ReadTimeout("slow"), False, UpstreamTimeoutError),
        (httpx.ReadTimeout("slow"), True, UpstreamStreamError),
        (httpx.RemoteProtocolError("cut"), False, UpstreamServerError),
        (httpx.RemoteProtocolError("cut"), True, UpstreamStreamError),
        (httpx.ReadError("reset"), True, UpstreamStreamError),
    ],
)
def test_transport_failures_map_to_the_error_tree(
    exception: Exception, in_stream_body: bool, error_type: type[UpstreamError]
) -> None:
    with pytest.raises(error_type) as caught, upstream_errors("p", in_stream_body=in_stream_body):
        raise exception

    assert caught.value.provider == "p"
    assert caught.value.__cause__ is exception


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, UpstreamRateLimitedError),
        (401, UpstreamAuthError),
        (403, UpstreamAuthError),
        (408, UpstreamTimeoutError),
        (500, UpstreamServerError),
        (529, UpstreamServerError),
        (400, UpstreamClientError),
        (404, UpstreamModelNotFoundError),
        (422, UpstreamClientError),
    ],
)
def test_statuses_are_classified(status: int, error_type: type[UpstreamError]) -> None:
    error = error_from_response("p", status, httpx.Headers(), b"{}", None)

    assert type(error) is error_type
    assert error.upstream_status == status


def test_error_message_comes_from_json_or_text_bodies() -> None:
    from_json = error_from_response(
        "p", 400, httpx.Headers(), b'{"error": {"message": "bad"}}', None
    )
    from_text = error_from_response("p", 502, httpx.Headers(), b"<h1>Bad Gateway</h1>", None)

    assert str(from_json) == "p answered 400: bad"
    assert str(from_text) == "p answered 502: <h1>Bad Gateway</h1>"


def test_error_text_never_carries_the_key(
    api_key: str, assert_no_key_leak: Callable[[str], None]
) -> None:
    body = f"key {api_key} or {api_key[2:12]}".encode()

    error = error_from_response("p", 401, httpx.Headers(), body, api_key)

    assert_no_key_leak(str(error))


def test_redact_replaces_the_whole_key(api_key: str) -> None:
    assert redact(f"bad key {api_key}!", [api_key]) == "bad key [redacted]!"


def test_redact_replaces_every_8_character_piece(
    api_key: str, assert_no_key_leak: Callable[[str], None]
) -> None:
    text = f"a={api_key[:8]} b={api_key[4:16]} c={api_key[-10:]}"

    assert_no_key_leak(redact(text, [api_key]))


def test_redact_keeps_pieces_shorter_than_8_characters(api_key: str) -> None:
    text = f"prefix {api_key[:7]}"

    assert redact(text, [api_key]) == text


def test_redact_handles_short_and_missing_secrets() -> None:
    assert redact("pw=abc123 ok", ["abc123", None, ""]) == "pw=[redacted] ok"


def test_redact_leaves_unrelated_text_alone(api_key: str) -> None:
    assert redact("nothing secret here", [api_key]) == "nothing secret here"
