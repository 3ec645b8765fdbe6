"""The router over MockTransport upstreams: selection, failover classes, records and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.config.settings import ProviderRuntime, Settings
from gateway.domain.models import ModelCatalog
from gateway.domain.types import ChatMessage, ChatRequest
from gateway.errors import (
    NoProviderAvailableError,
    UpstreamClientError,
    UpstreamsTimedOutError,
    UpstreamStreamError,
)
from gateway.observability.metrics import GatewayMetrics
from gateway.providers.registry import ProviderRegistry
from gateway.routing.health import HealthBook
from gateway.routing.router import Router
from gateway.state import label_bounds

Handler = Callable[[httpx.Request], Any]
REQUEST = ChatRequest(model="", messages=(ChatMessage(role="user", content="hi"),))


def completion(text: str, model: str = "m") -> dict[str, Any]:
    return {
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }


def sse(*chunks: str, done: bool = True) -> bytes:
    frames = [
        f'data: {{"choices":[{{"delta":{{"content":"{c}"}},"finish_reason":null}}]}}\n\n'
        for c in chunks
    ]
    if done:
        frames.append('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n')
        frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


class Upstreams:
    """One MockTransport handler per provider name; counts calls."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.calls: dict[str, int] = {}

    def transport(self, runtime: ProviderRuntime) -> httpx.AsyncBaseTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            self.calls[runtime.name] = self.calls.get(runtime.name, 0) + 1
            result = self.handlers[runtime.name](request)
            if asyncio.iscoroutine(result):
                result = await result
            assert isinstance(result, httpx.Response)
            return result

        return httpx.MockTransport(handle)


@pytest.fixture
def upstreams() -> Upstreams:
    return Upstreams()


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    env = {
        "OPENAI_API_KEY": "k1",
        "OPENAI_ENDPOINT": "http://openai.test/v1",
        "GROQ_API_KEY": "k2",
        "GROQ_ENDPOINT": "http://groq.test/v1",
        "CEREBRAS_API_KEY": "k3",
        "CEREBRAS_ENDPOINT": "http://cerebras.test/v1",
    }
    return settings_factory(
        env=env,
        providers={"openai": {"timeouts": {"firstToken": "200ms"}}},
        runtime={"router": {"providerTimeout": "300ms"}},
    )


class Harness:
    def __init__(self, settings: Settings, upstreams: Upstreams) -> None:
        self.registry = ProviderRegistry(upstreams.transport)
        self.registry.apply(settings.providers)
        self.metrics = GatewayMetrics(CollectorRegistry(), label_bounds(settings))
        self.health = HealthBook(settings.providers, self.metrics)
        self.catalog = ModelCatalog(settings.providers, settings.models, settings.routes)
        self.router = Router(
            self.registry,
            self.health,
            self.metrics,
            settings.providers,
            attempt_timeout_s=settings.runtime.router.provider_timeout,
            request_timeout_s=settings.runtime.request_timeout,
        )

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@pytest.fixture
async def harness(settings: Settings, upstreams: Upstreams) -> AsyncIterator[Harness]:
    h = Harness(settings, upstreams)
    yield h
    await h.registry.aclose()


async def test_primary_serves_when_healthy(harness: Harness, upstreams: Upstreams) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(200, json=completion("hello"))
    result, record = await harness.router.complete(
        harness.catalog.plan("openai:gpt-4o-mini", ["groq:llama"]), REQUEST
    )
    assert result.content == "hello"
    assert record.decision == "primary"
    assert record.reason == "healthy"
    assert (
        harness.sample(
            "gateway_routing_decisions_total",
            route="none",
            requested_model="other",
            served_model="other",
            provider="openai",
            decision="primary",
            reason="healthy",
        )
        == 1
    )
    assert harness.sample("gateway_tokens_total", provider="openai", kind="completion") == 5


async def test_failover_on_server_error_records_both_attempts(
    harness: Harness, upstreams: Upstreams
) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(
        503, json={"error": {"message": "busy"}}
    )
    upstreams.handlers["groq"] = lambda r: httpx.Response(200, json=completion("from groq"))
    result, record = await harness.router.complete(
        harness.catalog.plan("openai:gpt-4o-mini", ["groq:llama"]), REQUEST
    )
    assert result.content == "from groq"
    assert [a.outcome for a in record.attempts] == ["server_error", "success"]
    assert record.fallback
    assert record.reason == "error"
    assert (
        harness.sample(
            "gateway_fallbacks_total", from_provider="openai", to_provider="groq", reason="error"
        )
        == 1
    )
    assert (
        harness.sample("gateway_upstream_requests_total", provider="openai", outcome="server_error")
        == 1
    )


async def test_client_error_goes_back_without_failover(
    harness: Harness, upstreams: Upstreams
) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(
        400, json={"error": {"message": "maximum context length exceeded"}}
    )
    with pytest.raises(UpstreamClientError) as info:
        await harness.router.complete(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    assert info.value.status_code == 400
    assert upstreams.calls == {"openai": 1}


async def test_not_configured_candidate_is_skipped_without_a_call(
    settings_factory: Callable[..., Settings], upstreams: Upstreams
) -> None:
    settings = settings_factory(env={"GROQ_API_KEY": "k", "GROQ_ENDPOINT": "http://groq.test/v1"})
    harness = Harness(settings, upstreams)
    upstreams.handlers["groq"] = lambda r: httpx.Response(200, json=completion("ok"))
    _, record = await harness.router.complete(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    assert record.reason == "not_configured"
    assert upstreams.calls == {"groq": 1}
    await harness.registry.aclose()


async def test_every_candidate_timing_out_is_504(harness: Harness, upstreams: Upstreams) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    upstreams.handlers["openai"] = hang
    upstreams.handlers["groq"] = hang
    with pytest.raises(UpstreamsTimedOutError) as info:
        await harness.router.complete(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    assert info.value.status == 504
    assert [a["outcome"] for a in info.value.details["attempts"]] == ["timeout", "timeout"]


async def test_nothing_left_is_503_with_retry_after_from_cooling(
    harness: Harness, upstreams: Upstreams
) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(429, headers={"retry-after": "7"})
    upstreams.handlers["groq"] = lambda r: httpx.Response(500)
    with pytest.raises(NoProviderAvailableError) as info:
        await harness.router.complete(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    assert info.value.status == 503
    assert info.value.retry_after == pytest.approx(7, abs=0.5)
    assert (
        harness.sample(
            "gateway_routing_decisions_total",
            route="none",
            requested_model="other",
            served_model="none",
            provider="none",
            decision="none",
            reason="cooling",
        )
        == 1
    )


async def test_stream_fails_over_before_the_first_content(
    harness: Harness, upstreams: Upstreams
) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(
        200, content=b"", headers={"content-type": "text/event-stream"}
    )
    upstreams.handlers["groq"] = lambda r: httpx.Response(200, content=sse("a", "b"))
    stream = await harness.router.open_stream(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    text = "".join([e.delta async for batch in stream for e in batch])
    assert text == "ab"
    assert stream.record.served is not None
    assert stream.record.served.ref.provider == "groq"
    assert [a.outcome for a in stream.record.attempts] == ["stream_error", "success"]


async def test_stream_without_finish_after_content_is_an_error(
    harness: Harness, upstreams: Upstreams
) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(200, content=sse("a", "b", done=False))
    stream = await harness.router.open_stream(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    seen = []
    with pytest.raises(UpstreamStreamError):
        async for batch in stream:
            seen.extend(e.delta for e in batch)
    assert seen == ["a", "b"]
    assert (
        harness.sample("gateway_upstream_requests_total", provider="openai", outcome="stream_error")
        == 1
    )
    assert harness.sample("gateway_inflight_requests", provider="openai") == 0


async def test_first_token_timeout_fails_over(harness: Harness, upstreams: Upstreams) -> None:
    async def slow_stream() -> AsyncIterator[bytes]:
        await asyncio.sleep(2)
        yield sse("late")

    upstreams.handlers["openai"] = lambda r: httpx.Response(200, content=slow_stream())
    upstreams.handlers["groq"] = lambda r: httpx.Response(200, content=sse("fast"))
    stream = await harness.router.open_stream(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    assert "".join([e.delta async for batch in stream for e in batch]) == "fast"
    assert stream.record.attempts[0].outcome == "timeout"


async def test_random_model_names_do_not_create_series(
    harness: Harness, upstreams: Upstreams
) -> None:
    upstreams.handlers["openai"] = lambda r: httpx.Response(200, json=completion("x"))
    for i in range(20):
        await harness.router.complete(harness.catalog.plan(f"openai:random-{i}"), REQUEST)
    samples = [
        s
        for m in harness.metrics.registry.collect()
        if m.name == "gateway_routing_decisions"
        for s in m.samples
        if s.name.endswith("_total")
    ]
    assert len(samples) == 1
    assert samples[0].labels["requested_model"] == "other"


async def test_request_timeout_bounds_all_attempts_together(
    settings_factory: Callable[..., Settings], upstreams: Upstreams
) -> None:
    env = {
        "OPENAI_API_KEY": "k",
        "OPENAI_ENDPOINT": "http://openai.test/v1",
        "GROQ_API_KEY": "k",
        "GROQ_ENDPOINT": "http://groq.test/v1",
    }
    settings = settings_factory(
        env=env, runtime={"requestTimeout": "300ms", "router": {"providerTimeout": "250ms"}}
    )
    harness = Harness(settings, upstreams)

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(503)

    upstreams.handlers["openai"] = slow
    upstreams.handlers["groq"] = slow
    with pytest.raises(UpstreamsTimedOutError) as info:
        await harness.router.complete(harness.catalog.plan("openai:x", ["groq:y"]), REQUEST)
    assert "request timeout" in info.value.message
    assert info.value.details["attempts"][0]["outcome"] == "server_error"
    await harness.registry.aclose()
