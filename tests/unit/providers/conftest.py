"""Shared fixtures of the provider adapter tests: a client, the canary key and stream helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import pytest_asyncio
from pytest_httpx import IteratorStream

from tests.unit.providers.rawserver import RawServer

API_KEY = "sk-test-canary-0123456789"


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http_client:
        yield http_client


@pytest.fixture
def assert_no_key_leak() -> Callable[[str], None]:
    """Fails if a text holds the key or any 8-character piece of it."""

    def check(text: str) -> None:
        assert API_KEY not in text
        for start in range(len(API_KEY) - 7):
            assert API_KEY[start : start + 8] not in text, text

    return check


@pytest.fixture
def cut_stream() -> Callable[[list[bytes]], IteratorStream]:
    """A response body that sends some chunks and then loses the connection."""

    def build(chunks: list[bytes]) -> IteratorStream:
        def body() -> Iterator[bytes]:
            yield from chunks
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")

        return IteratorStream(body())

    return build


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    listener = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    raw.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield raw
