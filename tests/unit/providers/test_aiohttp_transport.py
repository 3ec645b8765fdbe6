"""The gateway's aiohttp transport against a real loopback server that answers with raw bytes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.providers.aiohttp_transport import WholeAnswerTransport
from gateway.providers.http import ClientLimits, UpstreamClient, build_client
from gateway.providers.whole import READ_WHOLE
from tests.unit.providers.rawserver import BODY, RawServer, answer, head, post


@pytest.fixture
async def transport() -> AsyncIterator[WholeAnswerTransport]:
    t = WholeAnswerTransport(limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))
    yield t
    await t.aclose()


async def test_cookies_a_provider_sets_are_never_sent_back(
    server: RawServer, transport: WholeAnswerTransport
) -> None:
    server.answers = [
        answer(head(len(BODY), b"Set-Cookie: session=abc; Path=/") + BODY),
        answer(head(len(BODY)) + BODY),
    ]
    for _ in range(2):  # by name: aiohttp's jar never keeps cookies of a bare IP address
        await transport.handle_async_request(post(server.port, whole=True, host="localhost"))
    assert len(server.heads) == 2
    assert not any(b"cookie:" in h for h in server.heads)


async def test_upstream_client_marks_only_calls_it_does_not_stream(server: RawServer) -> None:
    client = build_client(ClientLimits(), stack="aiohttp")
    assert isinstance(client._transport, WholeAnswerTransport)
    upstream = UpstreamClient(client)
    url = httpx.URL(f"http://127.0.0.1:{server.port}/v1/chat/completions")
    headers = UpstreamClient.headers(url, {"content-type": "application/json"})
    server.answers = [answer(head(len(BODY)) + BODY), answer(head(len(BODY)) + BODY)]
    try:
        whole = upstream.request(url, b"{}", headers)
        assert (await upstream.send(whole)).content == BODY
        assert whole.extensions.get(READ_WHOLE) is True
        streamed = upstream.request(url, b"{}", headers)
        response = await upstream.send(streamed, stream=True)
        assert READ_WHOLE not in streamed.extensions
        assert await response.aread() == BODY
        await response.aclose()
    finally:
        await client.aclose()


def test_aiohttp_is_loaded_only_when_its_stack_is_configured() -> None:
    # aiohttp adds about 7 MB to every worker: the default stack must not import it.
    code = (
        "import sys, gateway.cli, gateway.app, gateway.server\n"
        "from gateway.providers.http import ClientLimits, build_client\n"
        "build_client(ClientLimits())\n"
        "print('aiohttp' in sys.modules, end=' ')\n"
        "build_client(ClientLimits(), stack='aiohttp')\n"
        "print('aiohttp' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "False True\n"
