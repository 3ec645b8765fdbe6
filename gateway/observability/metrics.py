"""Every Prometheus collector of DESIGN 3.8, on one registry passed in (one per app, one per test).

Label values come from the configuration only; ``LabelBounds`` maps anything else to ``other`` so a
client sending random model names can never create new series.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# LLM calls take seconds to minutes: the default buckets (up to 10 s) would flatten everything.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

OTHER = "other"
UPSTREAM_OUTCOMES = (
    "success",
    "rate_limited",
    "server_error",
    "timeout",
    "connect_error",
    "auth_error",
    "client_error",
    "stream_error",
)
BREAKER_STATE_VALUE = {"closed": 0, "half-open": 1, "open": 2}


class LabelBounds:
    """The closed sets of label values: provider names, declared models and aliases, route names."""

    def __init__(
        self, providers: Iterable[str], models: Iterable[str], routes: Iterable[str]
    ) -> None:
        self.providers = frozenset(providers)
        self.models = frozenset(models)
        self.routes = frozenset(routes)

    def provider(self, value: str | None) -> str:
        return value if value in self.providers else (OTHER if value else "none")

    def model(self, value: str | None) -> str:
        return value if value in self.models else (OTHER if value else "none")

    def route(self, value: str | None) -> str:
        return value if value in self.routes else (OTHER if value else "none")


class Increment:
    """A labelled counter's or gauge's value, updated without prometheus_client's per-call work.

    ``metric.labels()`` validates and hashes its arguments on every call (about 2 us, ten times a
    request), and each ``inc()`` checks again that the child is observable; a child made once per
    label set is observable by construction. prometheus_client is pinned: the value objects
    (a locked float, or its multiprocess mmap) are the ones its collectors read, and
    tests/unit/observability/test_metrics.py checks the samples against its own methods.
    """

    __slots__ = ("_signed", "_value")

    def __init__(self, child: Counter | Gauge) -> None:
        self._value = child._value
        self._signed = isinstance(child, Gauge)

    def inc(self, amount: float = 1.0) -> None:
        if amount >= 0 or self._signed:  # a counter never goes down (prometheus_client raises)
            self._value.inc(amount)


class Observe:
    """A labelled histogram's buckets: ``observe()`` finds the bucket by bisection, where
    ``Histogram.observe`` scans the bounds in Python (and checks the child on every call)."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._bounds: tuple[float, ...] = tuple(child._upper_bounds)
        self._buckets: tuple[Any, ...] = tuple(child._buckets)
        self._sum = child._sum

    def observe(self, amount: float) -> None:
        self._sum.inc(amount)
        # the first bucket whose upper bound is >= amount: the one Histogram.observe's scan picks
        self._buckets[bisect_left(self._bounds, amount)].inc(1)


@dataclass(frozen=True, slots=True)
class ProviderSeries:
    """One provider's per-call series, looked up once: a call's bookkeeping reads attributes."""

    success: Increment
    latency: Observe
    ttft: Observe
    prompt_tokens: Increment
    completion_tokens: Increment
    inflight: Increment


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry, bounds: LabelBounds) -> None:
        self.registry = registry
        self._bounds = bounds
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._series: dict[str, ProviderSeries] = {}
        self.routing_decisions = Counter(
            "gateway_routing_decisions",
            "Routing decisions, one per routed request.",
            ["route", "requested_model", "served_model", "provider", "decision", "reason"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Requests served by a later candidate than the first.",
            ["from_provider", "to_provider", "reason"],
            registry=registry,
        )
        self.upstream_requests = Counter(
            "gateway_upstream_requests",
            "Upstream calls by outcome.",
            ["provider", "outcome"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Upstream call duration (whole answer).",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.upstream_ttft = Histogram(
            "gateway_upstream_ttft_seconds",
            "Time to the first streamed token.",
            ["provider"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Breaker state per provider: 0 closed, 1 half-open, 2 open.",
            ["provider"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.breaker_transitions = Counter(
            "gateway_breaker_transitions",
            "Breaker state changes.",
            ["provider", "to_state"],
            registry=registry,
        )
        self.provider_up = Gauge(
            "gateway_provider_up",
            "1 when the provider is configured, not drained and its breaker is not open.",
            ["provider"],
            registry=registry,
            multiprocess_mode="min",
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Client request duration.",
            ["api", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself (request duration minus upstream time).",
            ["api"],
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            "gateway_inflight_requests",
            "Upstream calls in flight.",
            ["provider"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens by provider and kind.",
            ["provider", "kind"],
            registry=registry,
        )

    @property
    def bounds(self) -> LabelBounds:
        return self._bounds

    @bounds.setter
    def bounds(self, bounds: LabelBounds) -> None:
        """New bounds (a reload): a provider's label may change, so its series are looked up anew."""
        self._bounds = bounds
        self._series = {}

    def series(self, provider: str) -> ProviderSeries:
        """The per-call series of ``provider`` (its name bounded: ``other`` if not configured)."""
        found = self._series.get(provider)
        if found is None:
            label = self._bounds.provider(provider)
            found = self._series[provider] = ProviderSeries(
                success=self.value(self.upstream_requests, label, "success"),
                latency=self.histogram(self.upstream_latency, label),
                ttft=self.histogram(self.upstream_ttft, label),
                prompt_tokens=self.value(self.tokens, label, "prompt"),
                completion_tokens=self.value(self.tokens, label, "completion"),
                inflight=self.value(self.inflight, label),
            )
        return found

    def value(self, metric: Counter | Gauge, *labels: str) -> Increment:
        """The value of ``metric.labels(*labels)``, remembered (see ``Increment``)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = Increment(metric.labels(*labels))
        return found

    def histogram(self, metric: Histogram, *labels: str) -> Observe:
        """The buckets of ``metric.labels(*labels)``, remembered (see ``Observe``)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = Observe(metric.labels(*labels))
        return found

    def init_provider(self, provider: str) -> None:
        """Create a provider's series at zero, so rate() sees its first failure or transition and
        dashboards show 0 rather than no data."""
        label = self.bounds.provider(provider)
        for outcome in UPSTREAM_OUTCOMES:
            self.upstream_requests.labels(label, outcome)
        for state in BREAKER_STATE_VALUE:
            self.breaker_transitions.labels(label, state)
        for kind in ("prompt", "completion"):
            self.tokens.labels(label, kind)
        self.inflight.labels(label)
        self.upstream_latency.labels(label)
        self.upstream_ttft.labels(label)

    def set_provider_up(self, provider: str, up: bool) -> None:
        self.provider_up.labels(self.bounds.provider(provider)).set(1 if up else 0)

    def record_breaker_state(self, provider: str, state: str, *, transition: bool) -> None:
        label = self.bounds.provider(provider)
        self.breaker_state.labels(label).set(BREAKER_STATE_VALUE.get(state, 0))
        if transition:
            self.breaker_transitions.labels(label, state).inc()
