"""The ASGI answers of the model-call routes: what reaches the server, message by message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.api.answers import EventStreamAnswer, FinalFrame, JsonAnswer
from gateway.api.context import SCOPE_KEY, RequestContext


async def _frames(*frames: bytes) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


class _Server:
    """The server's side of one exchange: what it was sent, and a client that stays connected."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._never = asyncio.Event()

    async def send(self, message: Any) -> None:
        self.sent.append(dict(message))

    async def receive(self) -> Any:
        await self._never.wait()
        return {"type": "http.disconnect"}


async def test_a_final_frame_goes_out_with_the_end_of_the_body() -> None:
    server = _Server()
    answer = EventStreamAnswer(_frames(b"one", FinalFrame(b"last")), {"X-Gateway-Provider": "p"})

    await answer({"type": "http"}, server.receive, server.send)  # type: ignore[arg-type]

    start, *bodies = server.sent
    assert start["type"] == "http.response.start"
    assert (b"x-gateway-provider", b"p") in start["headers"]
    assert [(b["body"], b["more_body"]) for b in bodies] == [(b"one", True), (b"last", False)]
    assert type(bodies[-1]["body"]) is bytes


async def test_a_stream_without_a_final_frame_ends_with_an_empty_body() -> None:
    server = _Server()

    await EventStreamAnswer(_frames(b"one"), None)(
        {"type": "http"},
        server.receive,  # type: ignore[arg-type]
        server.send,  # type: ignore[arg-type]
    )

    assert [(b["body"], b["more_body"]) for b in server.sent[1:]] == [(b"one", True), (b"", False)]


async def test_body_messages_skip_the_layers_that_only_look_at_the_start() -> None:
    outer, wrapped = _Server(), _Server()
    scope = {"type": "http", SCOPE_KEY: RequestContext("id", "openai", body_send=outer.send)}

    await EventStreamAnswer(_frames(b"a", FinalFrame(b"b")), None)(
        scope,  # type: ignore[arg-type]
        wrapped.receive,  # type: ignore[arg-type]
        wrapped.send,  # type: ignore[arg-type]
    )
    await JsonAnswer({"ok": True})(scope, wrapped.receive, wrapped.send)  # type: ignore[arg-type]

    assert [m["type"] for m in wrapped.sent] == ["http.response.start"] * 2
    assert [m["body"] for m in outer.sent] == [b"a", b"b", b'{"ok":true}']


async def test_a_client_that_leaves_mid_stream_ends_the_relay_and_closes_the_frames() -> None:
    closed = asyncio.Event()
    gone = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            gone.set()
            await asyncio.Event().wait()  # an upstream that never sends again
            yield b"never"
        finally:
            closed.set()

    async def receive() -> Any:
        await gone.wait()
        return {"type": "http.disconnect"}

    server = _Server()
    context = RequestContext("id", "openai")
    scope = {"type": "http", SCOPE_KEY: context}

    # The watcher starts WATCH_AFTER_S into the stream (one short real wait).
    await asyncio.wait_for(EventStreamAnswer(endless(), None)(scope, receive, server.send), 5)  # type: ignore[arg-type]

    assert closed.is_set()
    assert context.client_disconnected
    assert [m.get("body") for m in server.sent[1:]] == [b"first"]
