"""Contract between the generic sim server and the per-provider wire formats.

A wire handler is pure (no I/O): it matches routes, checks auth, renders error
bodies and turns a decoded request into a `Reply` (JSON or a list of SSE
frames).  The server applies faults and does the actual sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.sim.jsontools import dumps


@dataclass(frozen=True)
class Route:
    """A matched provider endpoint, e.g. action "chat"/"stream"/"models"."""

    action: str
    model: str | None = None


@dataclass(frozen=True)
class Incoming:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: object  # decoded JSON, None when empty or invalid
    body_valid: bool  # False when the body was not valid JSON


@dataclass(frozen=True)
class JsonReply:
    status: int
    payload: object
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StreamReply:
    frames: tuple[bytes, ...]  # complete SSE events, each one "frame"
    content_type: str = "text/event-stream; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


Reply = JsonReply | StreamReply


class Rejected(Exception):
    """Raised while handling a request to answer with `reply` (an error) instead."""

    def __init__(self, reply: JsonReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass(frozen=True)
class AnswerContext:
    """Per-server settings a wire needs to answer."""

    provider: str
    models: tuple[str, ...]  # allowed models; empty: any model accepted
    listed: tuple[str, ...]  # models shown by list-models endpoints
    reply: str | None

    def accepts(self, model: str) -> bool:
        return not self.models or model in self.models


class WireHandler(Protocol):
    def route(self, method: str, path: str) -> Route | None:
        """The endpoint `method path` addresses, None if unknown (-> 404)."""

    def describe(self, route: Route, request: Incoming) -> tuple[str | None, bool]:
        """(model, stream) of a request, for the request log."""

    def authorize(self, request: Incoming, api_key: str) -> JsonReply | None:
        """None if the request carries `api_key`, else the 401 answer."""

    def error(self, status: int, message: str | None = None) -> JsonReply:
        """An error answer in the provider's shape (default message per status)."""

    def handle(self, route: Route, request: Incoming, ctx: AnswerContext) -> Reply:
        """The answer to an authorized, fault-free request (may raise `Rejected`)."""


def sse_data(payload: object, *, eol: bytes = b"\n") -> bytes:
    """A `data:`-only SSE event."""
    return b"data: " + dumps(payload) + eol + eol


def sse_event(event: str, payload: object) -> bytes:
    """A named SSE event (`event:` line then `data:` line)."""
    return b"event: " + event.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def retry_after_headers(status: int, retry_after: int | None) -> tuple[tuple[str, str], ...]:
    if retry_after is not None and status in (429, 503):
        return (("retry-after", str(retry_after)),)
    return ()
