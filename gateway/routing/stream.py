"""A routed stream after its first content: the routing decision is final, failures are explicit.

It is iterated in the batches the adapter yields (the events of one upstream read), the first being
the head the router read before choosing it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

from gateway.domain.types import EventBatch, Usage
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

    async def __aiter__(self) -> AsyncIterator[EventBatch]:
        usage: Usage | None = None
        finished = False
        batch = self._head
        try:
            while True:
                for event in batch:
                    if event.usage is not None or event.finish_reason is not None:
                        usage = event.usage or usage
                        finished = finished or event.finish_reason is not None
                yield batch
                try:
                    batch = await anext(self._events)
                except StopAsyncIteration:
                    break
                except UpstreamError as exc:
                    self._settled = True
                    self._router.record_failure(self._admission, exc)
                    raise
            if not finished:
                provider = self._admission.provider
                cut = UpstreamStreamError(
                    f"{provider}: stream ended without finishing", provider=provider
                )
                self._settled = True
                self._router.record_failure(self._admission, cut)
                raise cut
            latency = self._router.clock() - self._started
            self._settled = True
            self.record.usage = usage
            self._router.record_success(self._admission, latency, usage, self._ttft_s)
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
