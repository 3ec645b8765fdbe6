"""The contract both of the gateway's httpx transports keep (``H1Transport``, the default, and
``WholeAnswerTransport`` over aiohttp), against a real loopback server that answers with raw bytes."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.providers.aiohttp_transport import WholeAnswerTransport
from gateway.providers.h1_transport import H1Transport
from gateway.providers.whole import READ_WHOLE
from tests.unit.providers.rawserver import BODY, RawServer, answer, half_answer, head, post

TRANSPORTS = {"httptools": H1Transport, "aiohttp": WholeAnswerTransport}


@pytest.fixture(params=sorted(TRANSPORTS))
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncBaseTransport]:
    made = TRANSPORTS[request.param](
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4)
    )
    yield made
    await made.aclose()


async def test_a_whole_answer_arrives_already_read(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    server.answers = [answer(head(len(BODY)) + BODY), answer(head(len(BODY)) + BODY)]
    first = await transport.handle_async_request(post(server.port, whole=True))
    second = await transport.handle_async_request(post(server.port, whole=True))
    # .content raises ResponseNotRead on a response that is still a stream
    assert (first.status_code, first.content, second.content) == (200, BODY, BODY)
    assert server.connections == 1  # the connection went back to the pool after the read


async def test_an_unmarked_request_is_answered_as_a_stream(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    server.answers = [answer(head(len(BODY)) + BODY)]
    response = await transport.handle_async_request(post(server.port, whole=False))
    with pytest.raises(httpx.ResponseNotRead):
        _ = response.content
    assert await response.aread() == BODY
    await response.aclose()


async def test_a_gzip_answer_is_decoded_by_httpx(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    packed = gzip.compress(BODY)
    server.answers = [answer(head(len(packed), b"Content-Encoding: gzip") + packed)]
    response = await transport.handle_async_request(post(server.port, whole=True))
    assert response.content == BODY


async def test_a_chunked_answer_is_read_whole(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (BODY[:5], BODY[5:])) + b"0\r\n\r\n"
    server.answers = [answer(head(None, b"Transfer-Encoding: chunked") + chunked)]
    response = await transport.handle_async_request(post(server.port, whole=True))
    assert response.content == BODY


async def test_a_body_cut_halfway_is_a_read_error_and_its_connection_is_dropped(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    server.answers = [half_answer(cut), answer(head(len(BODY)) + BODY)]
    with pytest.raises(httpx.TransportError):
        await transport.handle_async_request(post(server.port, whole=True))
    after = await transport.handle_async_request(post(server.port, whole=True))
    assert after.content == BODY
    assert server.connections == 2


@pytest.mark.parametrize("ending", ["close", "reset"])
async def test_an_upstream_that_hangs_up_after_the_request_is_no_connect_failure(
    server: RawServer, transport: httpx.AsyncBaseTransport, ending: str
) -> None:
    # The request reached the provider: the failover must not count it as "could not connect".
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        if ending == "reset":
            writer.transport.abort()
        else:
            writer.close()

    server.answers = [hang_up]
    with pytest.raises(httpx.TransportError) as caught:
        await transport.handle_async_request(post(server.port, whole=True))
    assert isinstance(caught.value, httpx.ReadError | httpx.RemoteProtocolError), caught.value


async def test_a_body_that_stalls_is_a_read_timeout(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    async def stall(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)

    server.answers = [half_answer(stall)]
    with pytest.raises(httpx.ReadTimeout):
        await transport.handle_async_request(post(server.port, whole=True, read_timeout=0.2))


async def test_a_whole_answer_reads_like_one_httpx_read(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    server.answers = [answer(head(len(BODY)) + BODY)]
    response = await transport.handle_async_request(post(server.port, whole=True))
    assert response.is_closed and response.is_stream_consumed
    assert (response.text, response.json()) == (BODY.decode(), {"id": "x", "choices": []})
    assert await response.aread() == BODY
    assert response.num_bytes_downloaded == len(BODY)
    await response.aclose()


async def test_each_request_goes_to_its_own_url_and_headers(
    server: RawServer, transport: httpx.AsyncBaseTransport
) -> None:
    base = f"http://127.0.0.1:{server.port}"
    first, second = httpx.URL(base + "/v1/first"), httpx.URL(base + "/v1/second?x=%C3%A9")
    server.answers = [answer(head(len(BODY)) + BODY) for _ in range(3)]
    for url, tag in ((first, "a"), (second, "b"), (first, "c")):
        request = httpx.Request("POST", url, content=b"{}", headers={"X-Tag": tag})
        request.extensions[READ_WHOLE] = True
        assert (await transport.handle_async_request(request)).content == BODY
    lines = [h.split(b"\r\n")[0] for h in server.heads]
    assert lines == [
        b"post /v1/first http/1.1",
        b"post /v1/second?x=%c3%a9 http/1.1",
        b"post /v1/first http/1.1",
    ]
    tags = [line for h in server.heads for line in h.split(b"\r\n") if line.startswith(b"x-tag")]
    assert tags == [b"x-tag: a", b"x-tag: b", b"x-tag: c"]
