"""Rolling statistics of one provider over a time window, on an injected clock.

Keeps the calls of the last ``window_s`` seconds: latency and time-to-first-token percentiles, an EWMA of
latency, the error rate and the slow-call rate. Rates are only reported once ``min_calls`` calls are in
the window, so two unlucky requests cannot condemn a provider.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import msgspec

# The weight of the newest sample in the latency EWMA.
EWMA_ALPHA = 0.2
# Bounds keep the hot path O(1): counts are kept incrementally over at most MAX_SAMPLES calls, and
# percentiles come from the most recent PERCENTILE_SAMPLES calls, recomputed at most once a second
# or every PERCENTILE_REFRESH_CALLS calls.
MAX_SAMPLES = 10_000
PERCENTILE_SAMPLES = 512
PERCENTILE_REFRESH_S = 1.0
PERCENTILE_REFRESH_CALLS = 32


class CallSample(msgspec.Struct, frozen=True):
    at: float
    ok: bool
    latency_s: float | None
    ttft_s: float | None
    slow: bool


class StatsSnapshot(msgspec.Struct, frozen=True):
    calls: int
    errors: int
    error_rate: float | None
    slow_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    ewma_latency_ms: float | None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


class RollingStats:
    def __init__(
        self,
        *,
        window_s: float,
        min_calls: int,
        slow_call_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._window_s = window_s
        self._min_calls = min_calls
        self._slow_call_s = slow_call_s
        self._clock = clock
        self._samples: deque[CallSample] = deque()
        self._errors = 0
        self._slow = 0
        self._ewma_s: float | None = None
        self._p95_cache: tuple[float, int, float | None] | None = None
        self._appended = 0

    def _append(self, sample: CallSample) -> None:
        self._appended += 1
        self._samples.append(sample)
        self._errors += not sample.ok
        self._slow += sample.slow
        if len(self._samples) > MAX_SAMPLES:
            self._drop_oldest()
        self._trim()

    def _drop_oldest(self) -> None:
        old = self._samples.popleft()
        self._errors -= not old.ok
        self._slow -= old.slow

    def _trim(self) -> None:
        horizon = self._clock() - self._window_s
        while self._samples and self._samples[0].at < horizon:
            self._drop_oldest()

    def record_success(self, latency_s: float, ttft_s: float | None = None) -> bool:
        """Record a successful call; returns whether it counted as slow."""
        slow = latency_s >= self._slow_call_s
        self._append(CallSample(self._clock(), True, latency_s, ttft_s, slow))
        self._ewma_s = (
            latency_s
            if self._ewma_s is None
            else EWMA_ALPHA * latency_s + (1 - EWMA_ALPHA) * self._ewma_s
        )
        return slow

    def record_failure(self) -> None:
        self._append(CallSample(self._clock(), False, None, None, False))

    def reset(self) -> None:
        """Forget the window (after a breaker closes: the provider starts with a clean slate)."""
        self._samples.clear()
        self._errors = self._slow = 0
        self._p95_cache = None

    def _rate(self, count: int) -> float | None:
        self._trim()
        total = len(self._samples)
        return count / total if total >= self._min_calls and total > 0 else None

    @property
    def calls(self) -> int:
        self._trim()
        return len(self._samples)

    @property
    def error_rate(self) -> float | None:
        return self._rate(self._errors)

    @property
    def slow_rate(self) -> float | None:
        return self._rate(self._slow)

    def _recent(self, attr: str) -> list[float]:
        values: list[float] = []
        for sample in reversed(self._samples):
            value = getattr(sample, attr)
            if value is not None:
                values.append(value)
                if len(values) >= PERCENTILE_SAMPLES:
                    break
        return values

    def latency_p95_s(self) -> float | None:
        """p95 latency, once enough successful calls are in the window to mean something."""
        now = self._clock()
        if self._p95_cache is not None:
            at, appended, cached = self._p95_cache
            fresh = (
                now - at < PERCENTILE_REFRESH_S
                and self._appended - appended < PERCENTILE_REFRESH_CALLS
            )
            if fresh and cached is not None:
                return cached
        self._trim()
        latencies = self._recent("latency_s")
        value = percentile(latencies, 95) if len(latencies) >= self._min_calls else None
        self._p95_cache = (now, self._appended, value)
        return value

    def snapshot(self) -> StatsSnapshot:
        self._trim()
        latencies = self._recent("latency_s")
        ttfts = self._recent("ttft_s")
        return StatsSnapshot(
            calls=len(self._samples),
            errors=self._errors,
            error_rate=self.error_rate,
            slow_rate=self.slow_rate,
            latency_p50_ms=_ms(percentile(latencies, 50)),
            latency_p95_ms=_ms(percentile(latencies, 95)),
            ttft_p50_ms=_ms(percentile(ttfts, 50)),
            ttft_p95_ms=_ms(percentile(ttfts, 95)),
            ewma_latency_ms=_ms(self._ewma_s),
        )
