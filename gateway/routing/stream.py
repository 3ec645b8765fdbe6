"""A routed stream after its first content: the routing decision is final, failures are explicit.

It is iterated in the batches the adapter yields (the events of one upstream read), the first being
the head the router read before choosing it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from gateway.domain.types import EventBatch, StreamEvent, Usage
from gateway.errors import UpstreamError, UpstreamStreamError
from gateway.routing.health import Admission
from gateway.routing.record import RoutingRecord

if TYPE_CHECKING:
    from gateway.routing.router import Router


class RoutedStream:
    def __init__(
        self,
        router: Router,
        record: RoutingRecord,
        *,
        admission: Admission,
        head: EventBatch,
        events: AsyncGenerator[EventBatch, None],
        started: float,
        ttft_s: float,
    ) -> None:
        self.record = record
        self._router = router
        self._admission = admission
        self._head = head
        self._events = events
        self._started = started
        self._ttft_s = ttft_s
        self._closed = False
        self._settled = False
        self._usage: Usage | None = None
        self._finished = False

    # An iterator object, not an async generator: the loop registers every async generator in a
    # weak set at its first step and removes it at its end (about 190 bytecodes a stream).

    def __aiter__(self) -> RoutedStream:
        return self

    async def __anext__(self) -> EventBatch:
        head = self._head
        if head:
            self._head = ()
            batch = head
        elif self._settled or self._closed:
            raise StopAsyncIteration
        else:
            try:
                batch = await anext(self._events)
            except StopAsyncIteration:
                await self._end()
                raise
            except UpstreamError as exc:
                self._settled = True
                self._router.record_failure(self._admission, exc)
                await self.aclose()
                raise
        for event in batch:
            if event.usage is not None or event.finish_reason is not None:
                self._note(event)
        return batch

    def _note(self, event: StreamEvent) -> None:
        if event.usage is not None:
            self._usage = event.usage
        if event.finish_reason is not None:
            self._finished = True

    async def _end(self) -> None:
        """The upstream ended the stream: the provider's verdict, then the upstream is closed."""
        self._settled = True
        try:
            if not self._finished:
                provider = self._admission.provider
                cut = UpstreamStreamError(
                    f"{provider}: stream ended without finishing", provider=provider
                )
                self._router.record_failure(self._admission, cut)
                raise cut
            latency = self._router.clock() - self._started
            self.record.usage = self._usage
            self._router.record_success(self._admission, latency, self._usage, self._ttft_s)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            router = self._router
            if not self._settled:  # the client went away: no verdict on the provider
                router.health.release(self._admission)
            router.health.track_inflight(self._admission.provider, -1)
            await self._events.aclose()
