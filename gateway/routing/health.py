"""Live health of every provider, as the router consults it before each attempt.

Per provider: configured or not (key present, not rejected by the provider since the last reload),
drained by an operator, cooling after a 429 for its ``Retry-After``, a circuit breaker (``breaker.py``)
and rolling statistics (``stats.py``). The router asks ``admit()`` before a call and reports the outcome
with ``record_success`` / ``record_failure`` / ``release``; everything else here is bookkeeping and the
views shown by ``/health`` and ``/providers``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
import structlog

from gateway.config.schema import HealthSection
from gateway.config.settings import ProviderRuntime
from gateway.errors import UpstreamAuthError, UpstreamError, UpstreamRateLimitedError
from gateway.observability.metrics import GatewayMetrics
from gateway.routing.breaker import ProviderBreaker, Ticket
from gateway.routing.stats import RollingStats

log = structlog.get_logger("gateway.health")

# A 429 without Retry-After still keeps the provider out briefly, so a burst does not hammer it.
DEFAULT_COOLDOWN_S = 1.0


class Admission(msgspec.Struct, frozen=True):
    """Permission for one upstream call; ``probe`` when it is the half-open trial call."""

    provider: str
    ticket: Ticket
    panic: bool = False


class ProviderHealth:
    def __init__(self, name: str, breaker: ProviderBreaker, stats: RollingStats) -> None:
        self.name = name
        self.breaker = breaker
        self.stats = stats
        self.cooling_until: float | None = None
        self.inflight = 0


class HealthBook:
    def __init__(
        self,
        providers: Mapping[str, ProviderRuntime],
        metrics: GatewayMetrics,
        health: HealthSection | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._config = health or HealthSection()
        self._clock = clock
        self._providers: Mapping[str, ProviderRuntime] = {}
        self._health: dict[str, ProviderHealth] = {}
        self._drained: set[str] = set()
        self._key_rejected: set[str] = set()
        self.update_providers(providers)

    # -- configuration ----------------------------------------------------------------------

    def _build(self, name: str) -> ProviderHealth:
        cfg = self._config
        breaker = ProviderBreaker(
            name,
            fail_max=cfg.breaker.fail_max,
            reset_timeout_s=cfg.breaker.reset_timeout,
            max_reset_timeout_s=cfg.breaker.max_reset_timeout,
            clock=self._clock,
            on_transition=self._on_transition,
        )
        stats = RollingStats(
            window_s=cfg.window,
            min_calls=cfg.min_calls,
            slow_call_s=cfg.slow_call_ms / 1000,
            clock=self._clock,
        )
        self._metrics.init_provider(name)
        self._metrics.record_breaker_state(name, "closed", transition=False)
        return ProviderHealth(name, breaker, stats)

    def update_providers(self, providers: Mapping[str, ProviderRuntime]) -> None:
        """After a reload: new keys get a fresh chance; breakers and statistics carry over."""
        self._providers = providers
        self._key_rejected.clear()
        for name in providers:
            if name not in self._health:
                self._health[name] = self._build(name)
            self._publish(name)

    def _publish(self, name: str) -> None:
        up = self.skip_reason(name) not in ("not_configured", "drained", "breaker_open")
        self._metrics.set_provider_up(name, up)

    def _on_transition(self, provider: str, old: str, new: str) -> None:
        self._metrics.record_breaker_state(provider, new, transition=True)
        entry = self._health.get(provider)
        if entry is not None and new == "closed":
            entry.stats.reset()
        log.warning(
            "breaker_transition",
            provider=provider,
            from_state=old,
            to_state=new,
            reset_timeout_s=entry.breaker.reset_timeout_s if entry else None,
        )
        if entry is not None:
            self._publish(provider)

    # -- what the router asks ---------------------------------------------------------------

    def configured(self, name: str) -> bool:
        runtime = self._providers.get(name)
        return runtime is not None and runtime.configured and name not in self._key_rejected

    def _cooling(self, entry: ProviderHealth) -> bool:
        if entry.cooling_until is None:
            return False
        if self._clock() < entry.cooling_until:
            return True
        entry.cooling_until = None
        return False

    def skip_reason(self, name: str) -> str | None:
        """Why the router must not call this provider now, or None when it may (no side effects)."""
        entry = self._health.get(name)
        if entry is None or not self.configured(name):
            return "not_configured"
        if name in self._drained:
            return "drained"
        if self._cooling(entry):
            return "cooling"
        if entry.breaker.would_refuse():
            return "breaker_open"
        return None

    def admit(self, name: str) -> Admission | str:
        """An admission for one call, or the reason this provider is skipped."""
        reason = self.skip_reason(name)
        if reason is not None:
            return reason
        ticket = self._health[name].breaker.admit()
        if ticket is None:
            return "breaker_open"
        return Admission(name, ticket)

    def admit_panic(self, names: Iterable[str]) -> Admission | None:
        """When health skipped every configured candidate: one attempt on the breaker opened first."""
        opened = [
            (entry.breaker.opened_clock, position, name)
            for position, name in enumerate(names)
            if (entry := self._health.get(name)) is not None
            and self.configured(name)
            and name not in self._drained
            and entry.breaker.opened_clock is not None
        ]
        if not opened:
            return None
        _, _, name = min(opened)  # ties: the earlier candidate
        return Admission(name, "call", panic=True)

    def latency_p95_s(self, name: str) -> float | None:
        entry = self._health.get(name)
        return entry.stats.latency_p95_s() if entry else None

    # -- what the router reports ------------------------------------------------------------

    def record_success(
        self, admission: Admission, latency_s: float, ttft_s: float | None = None
    ) -> None:
        entry = self._health[admission.provider]
        entry.stats.record_success(latency_s, ttft_s)
        if admission.panic:
            return
        entry.breaker.on_success(admission.ticket)
        slow_rate = entry.stats.slow_rate
        if slow_rate is not None and slow_rate >= self._config.slow_call_rate:
            log.warning("slow_call_trip", provider=admission.provider, slow_rate=slow_rate)
            entry.breaker.trip()

    def record_failure(self, admission: Admission, error: UpstreamError) -> None:
        entry = self._health[admission.provider]
        if isinstance(error, UpstreamRateLimitedError):
            wait = error.retry_after if error.retry_after is not None else DEFAULT_COOLDOWN_S
            entry.cooling_until = self._clock() + wait
            entry.breaker.release(admission.ticket)
        elif isinstance(error, UpstreamAuthError):
            self._key_rejected.add(admission.provider)
            entry.breaker.release(admission.ticket)
            log.error("provider_key_rejected", provider=admission.provider)
        elif not error.counts_against_health:
            entry.breaker.release(admission.ticket)
        else:
            entry.stats.record_failure()
            if not admission.panic:
                entry.breaker.on_failure(admission.ticket, error)
                rate = entry.stats.error_rate
                if rate is not None and rate >= self._config.failure_rate:
                    log.warning("failure_rate_trip", provider=admission.provider, error_rate=rate)
                    entry.breaker.trip()
        self._publish(admission.provider)

    def release(self, admission: Admission) -> None:
        """The call ended with no verdict on the provider (cancelled, lost a hedge race)."""
        self._health[admission.provider].breaker.release(admission.ticket)

    # -- operators --------------------------------------------------------------------------

    def drain(self, name: str) -> None:
        self._drained.add(name)
        self._publish(name)

    def restore(self, name: str) -> None:
        self._drained.discard(name)
        self._publish(name)

    def is_drained(self, name: str) -> bool:
        return name in self._drained

    def key_rejected(self, name: str) -> bool:
        return name in self._key_rejected

    def track_inflight(self, name: str, delta: int) -> None:
        entry = self._health.get(name)
        if entry is not None:
            entry.inflight += delta
        self._metrics.series(name).inflight.inc(delta)

    def inflight(self, name: str) -> int:
        entry = self._health.get(name)
        return entry.inflight if entry is not None else 0

    def unavailable_for(self, name: str) -> float:
        """Seconds until health lets this provider be called again (cooling, or an open breaker)."""
        entry = self._health.get(name)
        reopens = entry.breaker.reopens_in() if entry is not None else None
        return max(self.cooling_remaining(name), reopens or 0.0)

    def cooling_remaining(self, name: str) -> float:
        entry = self._health.get(name)
        if entry is None or entry.cooling_until is None:
            return 0.0
        return max(0.0, entry.cooling_until - self._clock())

    def view(self, name: str) -> dict[str, Any]:
        """Live health of one provider for ``/health`` and ``/providers``."""
        entry = self._health[name]
        snap = entry.stats.snapshot()
        reopens = entry.breaker.reopens_in()
        return {
            "breaker": {
                "state": entry.breaker.state,
                "resetTimeoutSeconds": entry.breaker.reset_timeout_s,
                "halfOpenInSeconds": None if reopens is None else round(reopens, 3),
                "probeInFlight": entry.breaker.probe_in_flight,
            },
            "stats": {
                "calls": snap.calls,
                "errors": snap.errors,
                "errorRate": snap.error_rate,
                "slowRate": snap.slow_rate,
                "latencyP50Ms": snap.latency_p50_ms,
                "latencyP95Ms": snap.latency_p95_ms,
                "ttftP50Ms": snap.ttft_p50_ms,
                "ttftP95Ms": snap.ttft_p95_ms,
                "ewmaLatencyMs": snap.ewma_latency_ms,
            },
            "coolingSeconds": round(self.cooling_remaining(name), 3),
        }
