"""Metric updates: label bounding and the shape of every DESIGN 3.8 collector."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gateway.observability.metrics import GatewayMetrics, LabelBounds

DESIGN_METRICS = {
    "gateway_routing_decisions": (
        "counter",
        {"route", "requested_model", "served_model", "provider", "decision", "reason"},
    ),
    "gateway_fallbacks": ("counter", {"from_provider", "to_provider", "reason"}),
    "gateway_upstream_requests": ("counter", {"provider", "outcome"}),
    "gateway_upstream_latency_seconds": ("histogram", {"provider"}),
    "gateway_upstream_ttft_seconds": ("histogram", {"provider"}),
    "gateway_breaker_state": ("gauge", {"provider"}),
    "gateway_breaker_transitions": ("counter", {"provider", "to_state"}),
    "gateway_provider_up": ("gauge", {"provider"}),
    "gateway_request_duration_seconds": ("histogram", {"api", "status_class"}),
    "gateway_overhead_seconds": ("histogram", {"api"}),
    "gateway_inflight_requests": ("gauge", {"provider"}),
    "gateway_tokens": ("counter", {"provider", "kind"}),
}


def test_every_design_metric_exists_with_its_type_and_labels() -> None:
    metrics = GatewayMetrics(CollectorRegistry(), LabelBounds(["openai"], [], []))
    found = {m.name: m for m in metrics.registry.collect()}
    for name, (kind, _labels) in DESIGN_METRICS.items():
        assert name in found, name
        assert found[name].type == kind, name
    # Label names come from the collector objects themselves.
    by_name = {
        "gateway_routing_decisions": metrics.routing_decisions,
        "gateway_fallbacks": metrics.fallbacks,
        "gateway_upstream_requests": metrics.upstream_requests,
        "gateway_upstream_latency_seconds": metrics.upstream_latency,
        "gateway_upstream_ttft_seconds": metrics.upstream_ttft,
        "gateway_breaker_state": metrics.breaker_state,
        "gateway_breaker_transitions": metrics.breaker_transitions,
        "gateway_provider_up": metrics.provider_up,
        "gateway_request_duration_seconds": metrics.request_duration,
        "gateway_overhead_seconds": metrics.overhead,
        "gateway_inflight_requests": metrics.inflight,
        "gateway_tokens": metrics.tokens,
    }
    for name, collector in by_name.items():
        assert set(collector._labelnames) == DESIGN_METRICS[name][1], name


def test_labels_outside_the_config_become_other() -> None:
    bounds = LabelBounds(["openai", "gemini"], ["openai:gpt-4o-mini", "gemini:flash-1.5"], ["chat"])
    assert bounds.provider("openai") == "openai"
    assert bounds.provider("evil\nprovider") == "other"
    assert bounds.provider(None) == "none"
    assert bounds.model("gemini:flash-1.5") == "gemini:flash-1.5"
    assert bounds.model("openai:random-123") == "other"
    assert bounds.route("chat") == "chat"
    assert bounds.route("nope") == "other"
    assert bounds.route(None) == "none"


def test_breaker_state_and_transitions_are_recorded() -> None:
    metrics = GatewayMetrics(CollectorRegistry(), LabelBounds(["openai"], [], []))
    metrics.record_breaker_state("openai", "open", transition=True)
    metrics.record_breaker_state("openai", "half-open", transition=True)
    metrics.record_breaker_state("openai", "closed", transition=True)
    get = metrics.registry.get_sample_value
    assert get("gateway_breaker_state", {"provider": "openai"}) == 0
    for state in ("open", "half-open", "closed"):
        assert (
            get("gateway_breaker_transitions_total", {"provider": "openai", "to_state": state}) == 1
        )
    metrics.record_breaker_state("mystery", "open", transition=False)
    assert get("gateway_breaker_state", {"provider": "other"}) == 2


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value  # type: ignore[misc]
        for m in registry.collect()
        if m.name == name
        for s in m.samples
        if not s.name.endswith("_created")
    }


def _twins() -> tuple[GatewayMetrics, GatewayMetrics]:
    bounds = LabelBounds(["openai"], [], [])
    return GatewayMetrics(CollectorRegistry(), bounds), GatewayMetrics(CollectorRegistry(), bounds)


def test_histogram_handles_fill_the_buckets_prometheus_client_fills() -> None:
    fast, stock = _twins()
    # on every bound exactly, between bounds, below the first, above the last
    amounts = [0.0, 0.0001, 0.00011, 0.001, 0.0049, 0.005, 0.3, 0.5, 0.50001, 7.0, -1.0]
    for amount in amounts:
        fast.histogram(fast.overhead, "openai").observe(amount)
        stock.overhead.labels("openai").observe(amount)
    name = "gateway_overhead_seconds"
    assert _samples(fast.registry, name) == _samples(stock.registry, name)
    assert _samples(fast.registry, name)[(f"{name}_count", (("api", "openai"),))] == len(amounts)


def test_value_handles_count_like_prometheus_client() -> None:
    fast, stock = _twins()
    for amount in (1, 5, 0.5):
        fast.value(fast.tokens, "openai", "prompt").inc(amount)
        stock.tokens.labels("openai", "prompt").inc(amount)
    for delta in (1, 1, -1):
        fast.value(fast.inflight, "openai").inc(delta)
        stock.inflight.labels("openai").inc(delta)
    for name in ("gateway_tokens", "gateway_inflight_requests"):
        assert _samples(fast.registry, name) == _samples(stock.registry, name)
    fast.value(fast.tokens, "openai", "prompt").inc(-3)  # a counter never goes down
    assert _samples(fast.registry, "gateway_tokens") == _samples(stock.registry, "gateway_tokens")


def test_a_handle_is_made_once_per_label_set() -> None:
    metrics, _ = _twins()
    assert metrics.value(metrics.tokens, "openai", "prompt") is metrics.value(
        metrics.tokens, "openai", "prompt"
    )
    assert metrics.histogram(metrics.overhead, "a") is not metrics.histogram(metrics.overhead, "b")


def test_a_providers_series_follow_new_label_bounds() -> None:
    metrics = GatewayMetrics(CollectorRegistry(), LabelBounds(["openai"], [], []))
    metrics.series("groq").success.inc()  # not configured yet: counted as "other"
    metrics.bounds = LabelBounds(["openai", "groq"], [], [])  # a reload adds it
    metrics.series("groq").success.inc()
    counts = _samples(metrics.registry, "gateway_upstream_requests")
    for provider in ("other", "groq"):
        key = (("outcome", "success"), ("provider", provider))
        assert counts[("gateway_upstream_requests_total", key)] == 1
