"""Per-provider health as the router sees it.

This first version knows what does not need statistics: whether a provider is configured, drained by
an operator, cooling after a 429 (for its ``Retry-After``), or holding a key the provider rejected
(401/403, unusable until the next reload). Circuit breakers and rolling latency statistics slot in
behind the same ``skip_reason`` / ``record_*`` methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from gateway.config.settings import ProviderRuntime
from gateway.errors import UpstreamAuthError, UpstreamError, UpstreamRateLimitedError
from gateway.observability.metrics import GatewayMetrics

# A 429 without Retry-After still keeps the provider out briefly, so a burst does not hammer it.
DEFAULT_COOLDOWN_S = 1.0


class HealthBook:
    def __init__(
        self,
        providers: Mapping[str, ProviderRuntime],
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._providers: Mapping[str, ProviderRuntime] = {}
        self._drained: set[str] = set()
        self._cooling_until: dict[str, float] = {}
        self._key_rejected: set[str] = set()
        self.update_providers(providers)

    def update_providers(self, providers: Mapping[str, ProviderRuntime]) -> None:
        """After a reload: new keys get a fresh chance."""
        self._providers = providers
        self._key_rejected.clear()
        for name in providers:
            self._publish(name)

    def _publish(self, name: str) -> None:
        self._metrics.set_provider_up(name, self.skip_reason(name) is None)

    def skip_reason(self, name: str) -> str | None:
        """Why the router must not call this provider now, or None when it may."""
        runtime = self._providers.get(name)
        if runtime is None or not runtime.configured or name in self._key_rejected:
            return "not_configured"
        if name in self._drained:
            return "drained"
        until = self._cooling_until.get(name)
        if until is not None:
            if self._clock() < until:
                return "cooling"
            del self._cooling_until[name]
        return None

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

    def cooling_remaining(self, name: str) -> float:
        until = self._cooling_until.get(name)
        return max(0.0, until - self._clock()) if until is not None else 0.0

    def record_success(self, name: str, latency_s: float, ttft_s: float | None = None) -> None:
        del latency_s, ttft_s  # rolling statistics use these

    def record_failure(self, name: str, error: UpstreamError) -> None:
        if isinstance(error, UpstreamRateLimitedError):
            self._cooling_until[name] = self._clock() + (error.retry_after or DEFAULT_COOLDOWN_S)
        elif isinstance(error, UpstreamAuthError):
            self._key_rejected.add(name)
        self._publish(name)
