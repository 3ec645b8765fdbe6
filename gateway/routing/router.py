"""The router: order a plan's candidates, ask health before each, call, fail over, record why.

Non-streaming calls fail over on any failover-class error. Streams fail over until the first content
event has been received (nothing has reached the client yet); after that a failure ends the stream with
an error the API layer turns into an explicit error frame. A route with ``hedgeAfterMs`` starts the next
candidate when the current one has produced nothing by then; the first to answer wins, the other is
cancelled. When health skipped every candidate, one ``panic`` attempt goes to the breaker opened first.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import msgspec.structs
import structlog

from gateway.config.settings import ProviderRuntime
from gateway.domain.models import Candidate, Plan
from gateway.domain.types import ChatRequest, ChatResult, EventBatch, Usage
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
from gateway.routing.deadline import Deadlines
from gateway.routing.health import Admission, HealthBook
from gateway.routing.race import Race, Running
from gateway.routing.record import Attempt, RoutingRecord
from gateway.routing.selection import order_candidates
from gateway.routing.stream import RoutedStream

log = structlog.get_logger("gateway.router")
T = TypeVar("T")
Head = tuple[EventBatch, AsyncGenerator[EventBatch, None]]


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
        request_timeout_s: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
    ) -> None:
        self._registry = registry
        self.health = health
        self.metrics = metrics
        self._providers = providers
        self._attempt_timeout_s = attempt_timeout_s
        self._request_timeout_s = request_timeout_s
        self.clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - load balancing, not cryptography
        self._deadlines = Deadlines()

    def update_providers(self, providers: Mapping[str, ProviderRuntime]) -> None:
        self._providers = providers

    # -- selection -------------------------------------------------------------------------

    def _begin(self, plan: Plan) -> RoutingRecord:
        ordering = order_candidates(plan, self.health, self._rng)
        return RoutingRecord(plan, ordering.candidates, ordering.reason)

    def _admissions(self, record: RoutingRecord) -> Iterator[tuple[int, Candidate, Admission]]:
        """Candidates health lets through, in order; then the panic attempt if nobody was."""
        for index, candidate in enumerate(record.ordered):
            provider = candidate.ref.provider
            admitted = self.health.admit(provider)
            if isinstance(admitted, str) or self._registry.get(provider) is None:
                reason = admitted if isinstance(admitted, str) else "not_configured"
                if isinstance(admitted, Admission):
                    self.health.release(admitted)
                record.attempts.append(
                    Attempt(provider, str(candidate.ref), "skipped", reason=reason)
                )
                continue
            yield index, candidate, admitted
        if record.upstream_calls == 0:
            panic = self.health.admit_panic(c.ref.provider for c in record.ordered)
            if panic is not None:
                index = next(
                    i for i, c in enumerate(record.ordered) if c.ref.provider == panic.provider
                )
                log.warning("panic_attempt", provider=panic.provider)
                yield index, record.ordered[index], panic

    def _hedge_after(self, plan: Plan) -> float | None:
        route = plan.route_settings
        return route.hedge_after_ms / 1000 if route and route.hedge_after_ms else None

    # -- outcome bookkeeping ------------------------------------------------------------------

    def record_success(
        self,
        admission: Admission,
        latency_s: float,
        usage: Usage | None,
        ttft_s: float | None = None,
    ) -> None:
        series = self.metrics.series(admission.provider)
        series.success.inc()
        series.latency.observe(latency_s)
        if ttft_s is not None:
            series.ttft.observe(ttft_s)
        if usage is not None:
            series.prompt_tokens.inc(usage.prompt_tokens)
            series.completion_tokens.inc(usage.completion_tokens)
        self.health.record_success(admission, latency_s, ttft_s)
        log.debug(
            "upstream_call", provider=admission.provider, outcome="success", latency_s=latency_s
        )

    def record_failure(self, admission: Admission, error: UpstreamError) -> None:
        m = self.metrics
        m.value(m.upstream_requests, m.bounds.provider(admission.provider), error.label).inc()
        self.health.record_failure(admission, error)
        log.debug("upstream_call", provider=admission.provider, outcome=error.label)

    def attempt_failed(
        self, record: RoutingRecord, run: Running[Any], error: UpstreamError
    ) -> None:
        self.record_failure(run.admission, error)
        latency_ms = (self.clock() - run.started) * 1000
        record.attempts.append(
            Attempt(
                run.admission.provider,
                str(run.candidate.ref),
                error.label,
                latency_ms,
                _failure_reason(error),
            )
        )
        log.info(
            "upstream_failed",
            provider=run.admission.provider,
            model=str(run.candidate.ref),
            outcome=error.label,
            status=error.upstream_status,
            failover=error.failover,
        )

    def _served(self, record: RoutingRecord, run: Running[Any], latency_s: float) -> None:
        record.attempts.append(
            Attempt(
                run.admission.provider,
                str(run.candidate.ref),
                "success",
                latency_s * 1000,
                "panic" if run.admission.panic else None,
            )
        )
        record.served, record.served_index, record.panic = (
            run.candidate,
            run.index,
            run.admission.panic,
        )
        self.publish_decision(record)

    def publish_decision(self, record: RoutingRecord) -> None:
        m = self.metrics
        b = m.bounds
        served = record.served
        m.value(
            m.routing_decisions,
            b.route(record.plan.route),
            b.model(record.plan.requested),
            b.model(str(served.ref)) if served else "none",
            b.provider(served.ref.provider) if served else "none",
            record.decision,
            record.reason,
        ).inc()
        if record.fallback and served is not None:
            m.value(
                m.fallbacks,
                b.provider(record.plan.candidates[0].ref.provider),
                b.provider(served.ref.provider),
                record.reason,
            ).inc()

    def _exhausted(self, record: RoutingRecord) -> NoProviderAvailableError:
        self.publish_decision(record)
        attempts = [a.to_json() for a in record.attempts]
        called = [a for a in record.attempts if a.outcome != "skipped"]
        waits = [self.health.unavailable_for(c.ref.provider) for c in record.ordered]
        retry_after = min([w for w in waits if w > 0] or [1.0])
        if called and all(a.outcome == "timeout" for a in called):
            return UpstreamsTimedOutError(
                "every candidate timed out", attempts=attempts, retry_after_s=retry_after
            )
        return NoProviderAvailableError(
            f"no provider available for {record.plan.requested!r}",
            attempts=attempts,
            retry_after_s=retry_after,
        )

    async def _race(
        self,
        record: RoutingRecord,
        attempt: Callable[[Candidate], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
    ) -> tuple[Running[T], T]:
        race = Race(
            self,
            record,
            self._admissions(record),
            attempt=attempt,
            discard=discard,
            hedge_after_s=self._hedge_after(record.plan),
        )
        try:
            # The whole routing of one request (every attempt, until the first answer or first
            # streamed token) gets runtime.requestTimeout.
            with self._deadlines.after(self._request_timeout_s):
                won = await race.run()
        except TimeoutError:
            self.publish_decision(record)
            raise UpstreamsTimedOutError(
                f"no answer within the request timeout ({self._request_timeout_s:g}s)",
                attempts=[a.to_json() for a in record.attempts],
            ) from None
        if won is None:
            raise self._exhausted(record)
        return won

    # -- non-streaming -----------------------------------------------------------------------

    async def complete(self, plan: Plan, request: ChatRequest) -> tuple[ChatResult, RoutingRecord]:
        record = self._begin(plan)

        async def attempt(candidate: Candidate) -> ChatResult:
            adapter = self._registry.get(candidate.ref.provider)
            assert adapter is not None
            try:
                with self._deadlines.after(self._attempt_timeout_s):
                    return await adapter.complete(
                        msgspec.structs.replace(request, model=candidate.ref.model)
                    )
            except TimeoutError:
                provider = candidate.ref.provider
                raise UpstreamTimeoutError(
                    f"{provider}: no answer in time", provider=provider
                ) from None

        async def discard(result: ChatResult) -> None:
            del result

        run, result = await self._race(record, attempt, discard)
        latency = self.clock() - run.started
        self.record_success(run.admission, latency, result.usage)
        record.usage = result.usage
        self._served(record, run, latency)
        return result, record

    # -- streaming ---------------------------------------------------------------------------

    async def open_stream(self, plan: Plan, request: ChatRequest) -> RoutedStream:
        """The first candidate that produces content; raises like ``complete`` if none does."""
        record = self._begin(plan)

        async def attempt(candidate: Candidate) -> Head:
            adapter = self._registry.get(candidate.ref.provider)
            assert adapter is not None
            events = adapter.stream(msgspec.structs.replace(request, model=candidate.ref.model))
            first_token_s = self._providers[candidate.ref.provider].timeouts.first_token
            try:
                return await self._read_head(candidate, events, first_token_s), events
            except BaseException:
                await events.aclose()
                raise

        async def discard(head: Head) -> None:
            await head[1].aclose()

        run, (head, events) = await self._race(record, attempt, discard)
        ttft = self.clock() - run.started
        self.health.track_inflight(run.admission.provider, 1)
        self._served(record, run, ttft)
        return RoutedStream(
            self,
            record,
            admission=run.admission,
            head=head,
            events=events,
            started=run.started,
            ttft_s=ttft,
        )

    async def _read_head(
        self, candidate: Candidate, events: AsyncGenerator[EventBatch, None], timeout_s: float
    ) -> EventBatch:
        """Events up to and including the batch with the first content (or the finish): nothing
        sent yet."""
        head: EventBatch = ()
        provider = candidate.ref.provider
        try:
            with self._deadlines.after(timeout_s):
                async for batch in events:
                    head += batch
                    for event in batch:
                        if event.has_content or event.finish_reason is not None:
                            return head
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"{provider}: no first token in time", provider=provider
            ) from None
        raise UpstreamStreamError(f"{provider}: stream ended before any content", provider=provider)
