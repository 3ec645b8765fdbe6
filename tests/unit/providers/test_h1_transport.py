"""The gateway's own HTTP/1.1 transport against a real loopback server that answers with raw bytes."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme

from gateway.providers.h1_transport import H1Transport
from gateway.providers.http import ClientLimits, UpstreamClient, build_client
from tests.unit.providers.rawserver import BODY, Answer, RawServer, answer, half_answer, head, post

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def make(max_connections: int = 4) -> H1Transport:
    return H1Transport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=4)
    )


@pytest.fixture
async def transport() -> AsyncIterator[H1Transport]:
    t = make()
    yield t
    await t.aclose()


def whole(n: int = 1) -> list[Answer]:
    return [answer(head(len(BODY)) + BODY) for _ in range(n)]


async def test_a_streamed_answer_is_handed_over_chunk_by_chunk(
    server: RawServer, transport: H1Transport
) -> None:
    received_first = asyncio.Event()

    async def stream(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await received_first.wait()  # the second chunk only once the first was handed over
        writer.write(chunk(b"data: 2\n\n") + b"0\r\n\r\n")

    server.answers = [stream, *whole()]
    response = await transport.handle_async_request(post(server.port, whole=False))
    pieces = []
    async for piece in response.aiter_raw():
        pieces.append(piece)
        received_first.set()
    await response.aclose()
    assert pieces == [b"data: 1\n\n", b"data: 2\n\n"]
    again = await transport.handle_async_request(post(server.port, whole=True))
    assert again.content == BODY and server.connections == 1  # a finished stream is reused


async def test_an_answer_without_length_ends_at_the_close(
    server: RawServer, transport: H1Transport
) -> None:
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(head(None) + BODY)
        await writer.drain()
        writer.close()

    server.answers = [until_close, *whole()]
    response = await transport.handle_async_request(post(server.port, whole=True))
    assert response.content == BODY
    again = await transport.handle_async_request(post(server.port, whole=True))
    assert again.content == BODY and server.connections == 2


async def test_an_answer_with_connection_close_is_not_reused(
    server: RawServer, transport: H1Transport
) -> None:
    server.answers = [answer(head(len(BODY), b"Connection: close") + BODY), *whole()]
    assert (await transport.handle_async_request(post(server.port, whole=True))).content == BODY
    assert (await transport.handle_async_request(post(server.port, whole=True))).content == BODY
    assert server.connections == 2


async def test_an_interim_answer_is_skipped(server: RawServer, transport: H1Transport) -> None:
    server.answers = [answer(b"HTTP/1.1 100 Continue\r\n\r\n" + head(len(BODY)) + BODY)]
    response = await transport.handle_async_request(post(server.port, whole=True))
    assert (response.status_code, response.content) == (200, BODY)


async def test_a_reset_mid_stream_is_a_read_error(
    server: RawServer, transport: H1Transport
) -> None:
    async def reset(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    server.answers = [reset]
    response = await transport.handle_async_request(post(server.port, whole=False))
    pieces = []
    with pytest.raises(httpx.ReadError):
        async for piece in response.aiter_raw():
            pieces.append(piece)
    assert pieces == [b"data: 1\n\n"]


async def test_a_server_that_closes_without_answering_is_a_protocol_error(
    server: RawServer, transport: H1Transport
) -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        writer.close()

    server.answers = [hang_up]
    with pytest.raises(httpx.RemoteProtocolError):
        await transport.handle_async_request(post(server.port, whole=True))


async def test_an_answer_that_is_not_http_is_a_protocol_error(
    server: RawServer, transport: H1Transport
) -> None:
    server.answers = [answer(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")]
    with pytest.raises(httpx.RemoteProtocolError, match=r"invalid HTTP/1\.1 answer"):
        await transport.handle_async_request(post(server.port, whole=True))


@pytest.mark.parametrize("stall_after", ["request", "head"])
async def test_a_stalled_answer_is_a_read_timeout(
    server: RawServer, transport: H1Transport, stall_after: str
) -> None:
    async def stall(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)

    server.answers = [stall if stall_after == "request" else half_answer(stall)]
    with pytest.raises(httpx.ReadTimeout):
        await transport.handle_async_request(post(server.port, whole=True, read_timeout=0.1))


async def test_a_stream_longer_than_the_read_timeout_is_not_cut_while_chunks_keep_coming(
    server: RawServer, transport: H1Transport
) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        for i in range(5):  # 0.3 s in all, never 0.1 s without a chunk
            await asyncio.sleep(0.06)
            writer.write(chunk(b"data: %d\n\n" % i))
            await writer.drain()
        await asyncio.sleep(0.2)  # then a stall: the read timeout ends it
        writer.write(b"0\r\n\r\n")

    server.answers = [trickle]
    response = await transport.handle_async_request(
        post(server.port, whole=False, read_timeout=0.1)
    )
    pieces = []
    with pytest.raises(httpx.ReadTimeout):
        async for piece in response.aiter_raw():
            pieces.append(piece)
    assert b"".join(pieces) == b"".join(b"data: %d\n\n" % i for i in range(5))


async def test_a_refused_connection_is_a_connect_error(transport: H1Transport) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError, match=f"127.0.0.1:{port}"):
        await transport.handle_async_request(post(port, whole=True))


async def test_an_unsupported_scheme_is_refused(transport: H1Transport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))


async def test_with_every_connection_busy_a_request_waits_for_one(server: RawServer) -> None:
    transport = make(max_connections=1)
    release = asyncio.Event()

    async def slow_stream(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + chunk(b"data: 1\n\n"))
        await writer.drain()
        await release.wait()
        writer.write(b"0\r\n\r\n")

    server.answers = [slow_stream, *whole()]
    try:
        first = await transport.handle_async_request(post(server.port, whole=False))
        waiting = asyncio.ensure_future(
            transport.handle_async_request(post(server.port, whole=True))
        )
        await asyncio.sleep(0.05)
        assert not waiting.done()
        release.set()
        assert await first.aread() == b"data: 1\n\n"
        assert (await waiting).content == BODY
        assert server.connections == 1  # it waited for the same connection
    finally:
        await transport.aclose()


async def test_a_pool_that_stays_full_is_a_pool_timeout(server: RawServer) -> None:
    transport = make(max_connections=1)

    async def held(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD)
        await asyncio.sleep(2)

    server.answers = [held]
    try:
        first = await transport.handle_async_request(post(server.port, whole=False))
        request = post(server.port, whole=True)
        request.extensions["timeout"]["pool"] = 0.05
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(request)
        await first.aclose()
    finally:
        await transport.aclose()


async def test_a_stream_closed_half_read_frees_its_slot_and_drops_its_connection(
    server: RawServer,
) -> None:
    transport = make(max_connections=1)

    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(SSE_HEAD + chunk(b"data: 1\n\n"))
        await asyncio.sleep(2)

    server.answers = [endless, *whole()]
    try:
        response = await transport.handle_async_request(post(server.port, whole=False))
        await response.aclose()
        assert (await transport.handle_async_request(post(server.port, whole=True))).content == BODY
        assert server.connections == 2
    finally:
        await transport.aclose()


async def test_a_cancelled_request_frees_its_slot(server: RawServer) -> None:
    transport = make(max_connections=1)

    async def stall(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2)

    server.answers = [stall, *whole()]
    try:
        pending = asyncio.ensure_future(
            transport.handle_async_request(post(server.port, whole=True))
        )
        await asyncio.sleep(0.05)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        request = post(server.port, whole=True)
        request.extensions["timeout"]["pool"] = 0.5
        assert (await transport.handle_async_request(request)).content == BODY
    finally:
        await transport.aclose()


async def test_an_idle_connection_the_server_closed_is_not_reused(
    server: RawServer, transport: H1Transport
) -> None:
    server.answers = whole()
    await transport.handle_async_request(post(server.port, whole=True))
    await asyncio.sleep(0.05)  # the server ran out of answers and closed; the FIN arrives
    server.answers = whole()
    assert (await transport.handle_async_request(post(server.port, whole=True))).content == BODY
    assert server.connections == 2


async def test_a_large_body_read_slowly_arrives_whole(
    server: RawServer, transport: H1Transport
) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: more than the buffer kept for a slow reader
    server.answers = [answer(head(len(big)) + big)]
    response = await transport.handle_async_request(post(server.port, whole=False))
    pieces = []
    async for piece in response.aiter_raw():
        pieces.append(piece)
        await asyncio.sleep(0.001)
    assert b"".join(pieces) == big


async def test_a_reader_that_does_not_read_pushes_back_on_the_server(
    server: RawServer, transport: H1Transport
) -> None:
    big = b"x" * (32 << 20)  # far more than the kernel buffers of both ends hold
    drained = asyncio.Event()

    async def flood(writer: asyncio.StreamWriter) -> None:
        writer.write(head(len(big)) + big)
        await writer.drain()
        drained.set()

    server.answers = [flood]
    response = await transport.handle_async_request(post(server.port, whole=False))
    await asyncio.sleep(0.3)
    assert not drained.is_set()  # the transport stopped reading: it holds a bounded buffer
    total = 0
    async for piece in response.aiter_raw():
        total += len(piece)
    assert total == len(big) and drained.is_set()


async def test_build_client_runs_on_this_transport_by_default(server: RawServer) -> None:
    client = build_client(ClientLimits())
    assert isinstance(client._transport, H1Transport)
    upstream = UpstreamClient(client)
    url = httpx.URL(f"http://127.0.0.1:{server.port}/v1/chat/completions")
    server.answers = whole()
    try:
        request = upstream.request(url, b"{}", UpstreamClient.headers(url, {"x-a": "1"}))
        assert (await upstream.send(request)).content == BODY
    finally:
        await client.aclose()


async def test_https_is_spoken_with_sni_and_the_server_certificate_is_verified(
    server: RawServer,
) -> None:
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("upstream.test").configure_cert(served)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=served)
    port = listener.sockets[0].getsockname()[1]
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    good, untrusted = (
        H1Transport(limits=httpx.Limits(max_connections=2), ssl_context=context)
        for context in (trusted, ssl.create_default_context())
    )
    server.answers = whole(3)
    try:
        async with listener:
            for _ in range(2):  # the second call reuses the TLS connection
                request = httpx.Request(
                    "POST",
                    f"https://127.0.0.1:{port}/v1/x",
                    content=b"{}",
                    extensions={"sni_hostname": "upstream.test"},
                )
                assert await (await good.handle_async_request(request)).aread() == BODY
            assert server.connections == 1
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.handle_async_request(
                    httpx.Request(
                        "GET",
                        f"https://127.0.0.1:{port}/",
                        extensions={"sni_hostname": "upstream.test"},
                    )
                )
    finally:
        await good.aclose()
        await untrusted.aclose()
