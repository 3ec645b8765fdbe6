"""Abandoning a model call when its client goes away before the answer.

uvicorn tells an app about a closed connection only through ``receive()``, and nothing reads it
while a handler waits for a provider: without a watcher, a client that gave up (its own timeout, a
user closing the tab) leaves the gateway waiting for an answer nobody will read, holding a
concurrency slot and paying the provider for the tokens. ``while_connected`` runs the routing under a
watcher that cancels it on ``http.disconnect``; the router records the attempt as cancelled (the
provider is not blamed) and the request ends as ``ClientDisconnectedError`` (499 in the request log
line, ``client_disconnected`` set). Streams hand over to ``EventStreamAnswer``'s own watcher once
the first token is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from litestar.types import Receive, Scope

from gateway.api.context import SCOPE_KEY, RequestContext
from gateway.errors import ClientDisconnectedError

T = TypeVar("T")


async def while_connected(scope: Scope, receive: Receive, work: Awaitable[T]) -> T:
    """``await work``, cancelled if the client disconnects first (the request body must be read)."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()  # our own cancellation: the request ends with a 499, not a cancelled task
        context = scope.get(SCOPE_KEY)
        if isinstance(context, RequestContext):
            context.client_disconnected = True
        raise ClientDisconnectedError(
            "the client closed the connection before the answer was ready"
        ) from None
    finally:
        watcher.cancel()


def connected_guard(scope: Scope, receive: Receive) -> Callable[[Awaitable[T]], Awaitable[T]]:
    """``while_connected`` for this request, as the AgentOS service's ``CallGuard``: the service
    guards only the model call, so the store's writes around it are never cut in half."""

    def guard(work: Awaitable[T]) -> Awaitable[T]:
        return while_connected(scope, receive, work)

    return guard
