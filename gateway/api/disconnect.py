"""Abandoning a model call when its client goes away before the answer.

uvicorn tells an app about a closed connection only through ``receive()``, and nothing reads it
while a handler waits for a provider: without a watcher, a client that gave up (its own timeout, a
user closing the tab) leaves the gateway waiting for an answer nobody will read, holding a
concurrency slot and paying the provider for the tokens. ``while_connected`` runs the routing under
a watcher (from ``WATCH_AFTER_S`` on) that cancels it on ``http.disconnect``; the router records the
attempt as cancelled (the provider is not blamed) and the request ends as ``ClientDisconnectedError``
(499 in the request log line, ``client_disconnected`` set). Streams hand over to
``EventStreamAnswer``'s own watcher once the first token is in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from litestar.types import Receive, Scope

from gateway.api.context import SCOPE_KEY, RequestContext
from gateway.errors import ClientDisconnectedError

T = TypeVar("T")


# The watcher is a task of its own (it must wait on ``receive`` while the handler waits on the
# provider); a call that ends sooner than this never pays for it (9-11 us a request with the task,
# 2-3 us with only the timer, under uvloop). A client that leaves earlier is noticed at this mark.
WATCH_AFTER_S: Final = 0.25


async def while_connected(scope: Scope, receive: Receive, work: Awaitable[T]) -> T:
    """``await work``, cancelled if the client disconnects first (the request body must be read)."""
    task = asyncio.current_task()
    assert task is not None
    gone = False
    watcher: asyncio.Future[None] | None = None

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, start_watching)
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
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def connected_guard(scope: Scope, receive: Receive) -> Callable[[Awaitable[T]], Awaitable[T]]:
    """``while_connected`` for this request, as the AgentOS service's ``CallGuard``: the service
    guards only the model call, so the store's writes around it are never cut in half."""

    def guard(work: Awaitable[T]) -> Awaitable[T]:
        return while_connected(scope, receive, work)

    return guard
