"""The gateway's own concurrency limit (``runtime.maxConcurrentRequests`` + ``runtime.requestQueue``).

Routed requests (messages, chat completions) take a slot for their whole life, streams included.
When every slot is busy a request waits in a bounded queue; when the queue is full too it is refused at
once with 429 and ``Retry-After``, in Agno-Go's backpressure shape merged with ours. The gateway's own
overload never touches a provider's breaker or statistics.
"""

from __future__ import annotations

import asyncio
import re

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

_ROUTED = re.compile(r"^/(agents/[^/]+/sessions/[^/]+/messages|v1/chat/completions)/?$")
_RETRY_AFTER_S = 1


class ConcurrencySlots:
    """The app's one count of routed requests in flight and waiting.

    Shared by every ``ConcurrencyLimiter``: Litestar builds a route's middleware stack per route, so
    a count kept in the middleware would give each route a limit of its own."""

    __slots__ = ("_semaphore", "in_flight", "limit", "queue", "waiting")

    def __init__(self, *, limit: int, queue: int) -> None:
        self.limit = max(1, limit)
        self.queue = max(0, queue)
        self.in_flight = 0
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None

    def full(self) -> bool:
        """Every slot taken (or promised to a waiter) and the queue full. Counted by hand, as
        ``Semaphore.locked()`` scans its waiters on every call."""
        return self.in_flight + self.waiting >= self.limit and self.waiting >= self.queue

    async def acquire(self) -> None:
        if self._semaphore is None:  # created in the serving loop, not at build time
            self._semaphore = asyncio.Semaphore(self.limit)
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1

    def release(self) -> None:
        assert self._semaphore is not None
        self.in_flight -= 1
        self._semaphore.release()


class ConcurrencyLimiter:
    def __init__(self, app: ASGIApp, *, slots: ConcurrencySlots) -> None:
        self.app = app
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or scope["method"] != "POST"
            or not _ROUTED.match(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        slots = self.slots
        if slots.full():
            await self._refuse(scope, send)
            return
        await slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()

    async def _refuse(self, scope: Scope, send: Send) -> None:
        slots = self.slots
        message = "the gateway is at its concurrency limit; retry shortly"
        if scope["path"].startswith("/v1/"):
            body: dict[str, object] = {
                "error": {"message": message, "type": "rate_limit_error", "code": "backpressure"}
            }
        else:
            details = {"limit": slots.limit, "queue": slots.queue, "inFlight": slots.in_flight}
            body = {
                "code": "backpressure",
                "message": message,
                "details": details,
                # Agno-Go's fields, for its clients.
                "error": "backpressure",
                "retryAfterMs": _RETRY_AFTER_S * 1000,
                "limit": slots.limit,
                "inFlight": slots.in_flight,
            }
        payload = msgspec.json.encode(body)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(_RETRY_AFTER_S).encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
        await send(start)
        body_event: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": payload,
            "more_body": False,
        }
        await send(body_event)
