"""Breakers, statistics and health on a fake clock: long outages in milliseconds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from gateway.config.settings import Settings
from gateway.errors import (
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamRateLimitedError,
    UpstreamServerError,
)
from gateway.observability.metrics import GatewayMetrics
from gateway.routing.health import Admission, HealthBook
from gateway.routing.stats import RollingStats, percentile
from gateway.state import label_bounds


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def boom(provider: str = "openai") -> UpstreamServerError:
    return UpstreamServerError("503", provider=provider, upstream_status=503)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_book(
    settings_factory: Callable[..., Settings], clock: FakeClock
) -> Callable[..., tuple[HealthBook, GatewayMetrics]]:
    def make(**health: object) -> tuple[HealthBook, GatewayMetrics]:
        config = {
            "breaker": {"failMax": 3, "resetTimeout": "30s", "maxResetTimeout": "120s"},
            "window": "60s",
            "minCalls": 4,
            "failureRate": 0.5,
            "slowCallMs": 1000,
            "slowCallRate": 0.5,
        }
        config.update(health)
        settings = settings_factory(env={"OPENAI_API_KEY": "k", "GROQ_API_KEY": "k"}, health=config)
        metrics = GatewayMetrics(CollectorRegistry(), label_bounds(settings))
        return HealthBook(settings.providers, metrics, settings.health, clock), metrics

    return make


def admit(book: HealthBook, name: str = "openai") -> Admission:
    admitted = book.admit(name)
    assert isinstance(admitted, Admission), admitted
    return admitted


def fail(book: HealthBook, times: int, name: str = "openai") -> None:
    for _ in range(times):
        book.record_failure(admit(book, name), boom(name))


def state(metrics: GatewayMetrics, name: str = "openai") -> float | None:
    return metrics.registry.get_sample_value("gateway_breaker_state", {"provider": name})


def test_breaker_opens_after_consecutive_failures_and_refuses(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]],
) -> None:
    book, metrics = make_book(minCalls=100)
    fail(book, 2)
    assert book.skip_reason("openai") is None
    fail(book, 1)
    assert book.skip_reason("openai") == "breaker_open"
    assert book.admit("openai") == "breaker_open"
    assert state(metrics) == 2
    assert (
        metrics.registry.get_sample_value(
            "gateway_breaker_transitions_total", {"provider": "openai", "to_state": "open"}
        )
        == 1
    )
    assert metrics.registry.get_sample_value("gateway_provider_up", {"provider": "openai"}) == 0


def test_half_open_admits_exactly_one_probe_and_closes_on_success(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]], clock: FakeClock
) -> None:
    book, metrics = make_book(minCalls=100)
    fail(book, 3)
    clock.advance(29.9)
    assert book.admit("openai") == "breaker_open"
    clock.advance(0.2)
    probe = admit(book)
    assert probe.ticket == "probe"
    assert state(metrics) == 1
    assert book.admit("openai") == "breaker_open"  # the others go to the fallback
    assert book.admit("openai") == "breaker_open"
    book.record_success(probe, 0.1)
    assert state(metrics) == 0
    assert admit(book).ticket == "call"


def test_failed_probe_reopens_for_longer_capped(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]], clock: FakeClock
) -> None:
    book, _ = make_book(minCalls=100)
    fail(book, 3)
    timeouts = []
    for _ in range(4):
        clock.advance(book.view("openai")["breaker"]["resetTimeoutSeconds"] + 0.01)
        probe = admit(book)
        book.record_failure(probe, boom())
        timeouts.append(book.view("openai")["breaker"]["resetTimeoutSeconds"])
    assert timeouts == [60.0, 120.0, 120.0, 120.0]


def test_failure_rate_trips_without_consecutive_failures(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]],
) -> None:
    book, _ = make_book(breaker={"failMax": 50})
    book.record_success(admit(book), 0.1)
    fail(book, 1)
    book.record_success(admit(book), 0.1)
    assert book.skip_reason("openai") is None  # 1 failure in 3 calls, below minCalls anyway
    fail(book, 1)
    # 2 failures in 4 calls, never 2 in a row: the rate (50%) trips it.
    assert book.skip_reason("openai") == "breaker_open"


def test_slow_calls_trip_the_breaker(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]],
) -> None:
    book, _ = make_book()
    for _ in range(4):
        book.record_success(admit(book), 2.5)
    assert book.skip_reason("openai") == "breaker_open"


def test_client_errors_and_cancellations_do_not_count(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]],
) -> None:
    book, _ = make_book(minCalls=1)
    for _ in range(10):
        book.record_failure(
            admit(book), UpstreamClientError("400", provider="openai", upstream_status=400)
        )
        book.release(admit(book))  # e.g. the client disconnected
    assert book.skip_reason("openai") is None
    assert book.view("openai")["stats"]["calls"] == 0


def test_cancelled_probe_frees_the_probe_slot(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]], clock: FakeClock
) -> None:
    book, _ = make_book(minCalls=100)
    fail(book, 3)
    clock.advance(31)
    probe = admit(book)
    assert book.admit("openai") == "breaker_open"
    book.release(probe)
    assert admit(book).ticket == "probe"


def test_retry_after_cools_the_provider_then_it_returns(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]], clock: FakeClock
) -> None:
    book, _ = make_book(minCalls=1)
    error = UpstreamRateLimitedError(
        "429", provider="openai", upstream_status=429, retry_after_s=12
    )
    book.record_failure(admit(book), error)
    assert book.skip_reason("openai") == "cooling"
    assert book.cooling_remaining("openai") == pytest.approx(12)
    clock.advance(11.9)
    assert book.skip_reason("openai") == "cooling"
    clock.advance(0.2)
    assert book.skip_reason("openai") is None
    assert book.view("openai")["stats"]["errorRate"] is None  # 429 does not count as a failure


def test_rejected_key_is_unusable_until_reload(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]],
    settings_factory: Callable[..., Settings],
) -> None:
    book, _ = make_book()
    book.record_failure(
        admit(book), UpstreamAuthError("401", provider="openai", upstream_status=401)
    )
    assert book.skip_reason("openai") == "not_configured"
    assert book.key_rejected("openai")
    book.update_providers(settings_factory(env={"OPENAI_API_KEY": "new"}).providers)
    assert book.skip_reason("openai") is None


def test_panic_picks_the_breaker_opened_first(
    make_book: Callable[..., tuple[HealthBook, GatewayMetrics]], clock: FakeClock
) -> None:
    book, _ = make_book(minCalls=100)
    fail(book, 3, "groq")
    clock.advance(1)
    fail(book, 3, "openai")
    panic = book.admit_panic(["openai", "groq"])
    assert panic is not None
    assert panic.provider == "groq"
    assert panic.panic


def test_drain_and_restore(make_book: Callable[..., tuple[HealthBook, GatewayMetrics]]) -> None:
    book, metrics = make_book()
    book.drain("openai")
    assert book.skip_reason("openai") == "drained"
    assert metrics.registry.get_sample_value("gateway_provider_up", {"provider": "openai"}) == 0
    book.restore("openai")
    assert book.skip_reason("openai") is None


def test_stats_window_percentiles_and_min_calls(clock: FakeClock) -> None:
    stats = RollingStats(window_s=10, min_calls=3, slow_call_s=1, clock=clock)
    stats.record_success(0.1, 0.05)
    stats.record_failure()
    assert stats.error_rate is None  # below the minimum call count
    stats.record_success(0.3, 0.07)
    assert stats.error_rate == pytest.approx(1 / 3)
    snap = stats.snapshot()
    assert snap.latency_p50_ms == 100.0
    assert snap.latency_p95_ms == 300.0
    assert snap.ttft_p95_ms == 70.0
    clock.advance(11)
    assert stats.calls == 0
    assert stats.error_rate is None


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95
