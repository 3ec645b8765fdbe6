"""The router: walk a plan's candidates, consult health before each, call, fail over, record why.

Non-streaming calls fail over on any failover-class error. Streams fail over until the first content
event has been received (nothing has reached the client yet); after that a failure ends the stream with
an error the API layer turns into an explicit error frame.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any

import structlog

from gateway.config.settings import ProviderRuntime
from gateway.domain.models import Candidate, Plan
from gateway.domain.types import ChatRequest, ChatResult, StreamEvent, Usage
from gateway.errors import (
    NoProviderAvailableError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamsTimedOutError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from gateway.observability.metrics import GatewayMetrics
from gateway.providers.registry import ProviderRegistry
from gateway.routing.health import HealthBook
from gateway.routing.record import Attempt, RoutingRecord

log = structlog.get_logger("gateway.router")


def _failure_reason(error: UpstreamError) -> str:
    return "cooling" if isinstance(error, UpstreamRateLimitedError) else "error"


class Router:
    def __init__(
        self,
        registry: ProviderRegistry,
        health: HealthBook,
        metrics: GatewayMetrics,
        providers: Mapping[str, ProviderRuntime],
        *,
        attempt_timeout_s: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._registry = registry
        self._health = health
        self._metrics = metrics
        self._providers = providers
        self._attempt_timeout_s = attempt_timeout_s
        self._clock = clock

    def update_providers(self, providers: Mapping[str, ProviderRuntime]) -> None:
        self._providers = providers

    # -- selection -------------------------------------------------------------------------

    def _usable(self, record: RoutingRecord, candidate: Candidate) -> bool:
        reason = self._health.skip_reason(candidate.ref.provider)
        if reason is None and self._registry.get(candidate.ref.provider) is None:
            reason = "not_configured"
        if reason is not None:
            record.attempts.append(
                Attempt(candidate.ref.provider, str(candidate.ref), "skipped", reason=reason)
            )
            return False
        return True

    def _on_failure(
        self, record: RoutingRecord, candidate: Candidate, error: UpstreamError, started: float
    ) -> None:
        provider = candidate.ref.provider
        latency = self._clock() - started
        self._record_failure(provider, error)
        record.attempts.append(
            Attempt(
                provider, str(candidate.ref), error.label, latency * 1000, _failure_reason(error)
            )
        )
        log.info(
            "upstream_failed",
            provider=provider,
            model=str(candidate.ref),
            outcome=error.label,
            status=error.upstream_status,
            failover=error.failover,
        )

    def _record_success(
        self, provider: str, latency_s: float, usage: Usage | None, ttft_s: float | None = None
    ) -> None:
        label = self._metrics.bounds.provider(provider)
        self._metrics.upstream_requests.labels(label, "success").inc()
        self._metrics.upstream_latency.labels(label).observe(latency_s)
        if ttft_s is not None:
            self._metrics.upstream_ttft.labels(label).observe(ttft_s)
        if usage is not None:
            self._metrics.tokens.labels(label, "prompt").inc(usage.prompt_tokens)
            self._metrics.tokens.labels(label, "completion").inc(usage.completion_tokens)
        self._health.record_success(provider, latency_s, ttft_s)

    def _record_failure(self, provider: str, error: UpstreamError) -> None:
        label = self._metrics.bounds.provider(provider)
        self._metrics.upstream_requests.labels(label, error.label).inc()
        if error.counts_against_health or isinstance(error, UpstreamRateLimitedError):
            self._health.record_failure(provider, error)

    @staticmethod
    def _mark_served(
        record: RoutingRecord, index: int, candidate: Candidate, latency_s: float
    ) -> None:
        record.attempts.append(
            Attempt(candidate.ref.provider, str(candidate.ref), "success", latency_s * 1000)
        )
        record.served, record.served_index = candidate, index

    def _publish_decision(self, record: RoutingRecord) -> None:
        b = self._metrics.bounds
        served = record.served
        self._metrics.routing_decisions.labels(
            b.route(record.plan.route),
            b.model(record.plan.requested),
            b.model(str(served.ref)) if served else "none",
            b.provider(served.ref.provider) if served else "none",
            record.decision,
            record.reason,
        ).inc()
        if record.fallback and served is not None:
            self._metrics.fallbacks.labels(
                b.provider(record.plan.candidates[0].ref.provider),
                b.provider(served.ref.provider),
                record.reason,
            ).inc()

    def _exhausted(self, record: RoutingRecord) -> NoProviderAvailableError:
        self._publish_decision(record)
        attempts = [a.to_json() for a in record.attempts]
        called = [a for a in record.attempts if a.outcome != "skipped"]
        cooling = [self._health.cooling_remaining(c.ref.provider) for c in record.plan.candidates]
        retry_after = min([c for c in cooling if c > 0] or [1.0])
        if called and all(a.outcome == "timeout" for a in called):
            return UpstreamsTimedOutError(
                "every candidate timed out", attempts=attempts, retry_after_s=retry_after
            )
        return NoProviderAvailableError(
            f"no provider available for {record.plan.requested!r}",
            attempts=attempts,
            retry_after_s=retry_after,
        )

    def _inflight(self, provider: str) -> Any:
        return self._metrics.inflight.labels(self._metrics.bounds.provider(provider))

    # -- non-streaming -----------------------------------------------------------------------

    async def complete(self, plan: Plan, request: ChatRequest) -> tuple[ChatResult, RoutingRecord]:
        record = RoutingRecord(plan)
        for index, candidate in enumerate(plan.candidates):
            if not self._usable(record, candidate):
                continue
            adapter = self._registry.get(candidate.ref.provider)
            assert adapter is not None
            started = self._clock()
            inflight = self._inflight(candidate.ref.provider)
            inflight.inc()
            try:
                async with asyncio.timeout(self._attempt_timeout_s):
                    result = await adapter.complete(
                        dataclasses.replace(request, model=candidate.ref.model)
                    )
            except TimeoutError:
                error: UpstreamError = UpstreamTimeoutError(
                    f"{candidate.ref.provider}: no answer in time", provider=candidate.ref.provider
                )
                self._on_failure(record, candidate, error, started)
                continue
            except UpstreamError as exc:
                self._on_failure(record, candidate, exc, started)
                if not exc.failover:
                    self._publish_decision(record)
                    raise
                continue
            finally:
                inflight.dec()
            latency = self._clock() - started
            self._record_success(candidate.ref.provider, latency, result.usage)
            self._mark_served(record, index, candidate, latency)
            self._publish_decision(record)
            return result, record
        raise self._exhausted(record)

    # -- streaming ---------------------------------------------------------------------------

    async def open_stream(self, plan: Plan, request: ChatRequest) -> RoutedStream:
        """The first candidate that produces content; raises like ``complete`` if none does."""
        record = RoutingRecord(plan)
        for index, candidate in enumerate(plan.candidates):
            if not self._usable(record, candidate):
                continue
            adapter = self._registry.get(candidate.ref.provider)
            assert adapter is not None
            started = self._clock()
            events = adapter.stream(dataclasses.replace(request, model=candidate.ref.model))
            inflight = self._inflight(candidate.ref.provider)
            inflight.inc()
            first_token = self._providers[candidate.ref.provider].timeouts.first_token
            try:
                head = await self._read_head(candidate, events, first_token)
            except UpstreamError as exc:
                inflight.dec()
                await events.aclose()
                self._on_failure(record, candidate, exc, started)
                if not exc.failover:
                    self._publish_decision(record)
                    raise
                continue
            except BaseException:
                inflight.dec()
                await events.aclose()
                raise
            return RoutedStream(
                self,
                record=record,
                index=index,
                candidate=candidate,
                head=head,
                events=events,
                started=started,
                inflight=inflight,
            )
        raise self._exhausted(record)

    async def _read_head(
        self, candidate: Candidate, events: AsyncGenerator[StreamEvent, None], timeout_s: float
    ) -> list[StreamEvent]:
        """Events up to and including the first with content (or the finish): nothing sent yet."""
        head: list[StreamEvent] = []
        provider = candidate.ref.provider
        try:
            async with asyncio.timeout(timeout_s):
                async for event in events:
                    head.append(event)
                    if event.has_content or event.finish_reason is not None:
                        return head
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"{provider}: no first token in time", provider=provider
            ) from None
        raise UpstreamStreamError(f"{provider}: stream ended before any content", provider=provider)


class RoutedStream:
    """A stream that has produced its first content: the routing decision is final."""

    def __init__(
        self,
        router: Router,
        *,
        record: RoutingRecord,
        index: int,
        candidate: Candidate,
        head: list[StreamEvent],
        events: AsyncGenerator[StreamEvent, None],
        started: float,
        inflight: Any,
    ) -> None:
        self.record = record
        self._router = router
        self._index = index
        self._candidate = candidate
        self._head = head
        self._events = events
        self._started = started
        self._ttft = router._clock() - started
        self._inflight = inflight
        self._closed = False
        # The decision is what the client sees in headers, so it is final and published now.
        router._mark_served(record, index, candidate, self._ttft)
        router._publish_decision(record)

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        usage: Usage | None = None
        finished = False
        try:
            for event in self._head:
                usage = event.usage or usage
                finished = finished or event.finish_reason is not None
                yield event
            try:
                async for event in self._events:
                    usage = event.usage or usage
                    finished = finished or event.finish_reason is not None
                    yield event
            except UpstreamError as exc:
                self._fail(exc)
                raise
            if not finished:
                cut = UpstreamStreamError(
                    f"{self._candidate.ref.provider}: stream ended without finishing",
                    provider=self._candidate.ref.provider,
                )
                self._fail(cut)
                raise cut
            self._succeed(usage)
        finally:
            await self.aclose()

    def _fail(self, error: UpstreamError) -> None:
        self._router._record_failure(self._candidate.ref.provider, error)

    def _succeed(self, usage: Usage | None) -> None:
        latency = self._router._clock() - self._started
        self._router._record_success(self._candidate.ref.provider, latency, usage, self._ttft)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._inflight.dec()
            await self._events.aclose()
