"""AgentService's message turn over a real store (in-memory SQLite) and MockTransport upstreams."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.config.settings import ProviderRuntime, Settings
from gateway.domain.agents import AgentService, AgentSpec, _history_limit
from gateway.domain.history import trim_to_window, window_taker
from gateway.domain.models import ModelCatalog, Plan
from gateway.domain.types import ChatMessage
from gateway.errors import (
    AgentNotFoundError,
    ForbiddenError,
    NoProviderAvailableError,
    SessionNotFoundError,
)
from gateway.observability.metrics import GatewayMetrics
from gateway.providers.registry import ProviderRegistry
from gateway.routing.health import HealthBook
from gateway.routing.router import Router
from gateway.state import label_bounds
from gateway.store import SqlStore, open_store

Handler = Callable[[httpx.Request], httpx.Response]


def completion(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }


def sse(*chunks: str) -> bytes:
    frames = [
        f'data: {{"choices":[{{"delta":{{"content":"{c}"}},"finish_reason":null}}]}}\n\n'
        for c in chunks
    ]
    frames.append('data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n')
    frames.append("data: [DONE]\n\n")
    return "".join(frames).encode()


class Upstream:
    """The OpenAI upstream: answers with ``handler`` and keeps the message lists it was sent."""

    def __init__(self) -> None:
        self.handler: Handler = lambda r: httpx.Response(200, json=completion("hello"))
        self.sent: list[list[dict[str, Any]]] = []

    def transport(self, runtime: ProviderRuntime) -> httpx.AsyncBaseTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            self.sent.append(json.loads(request.content)["messages"])
            return self.handler(request)

        return httpx.MockTransport(handle)


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    env = {"OPENAI_API_KEY": "k1", "OPENAI_ENDPOINT": "http://openai.test/v1"}
    return settings_factory(
        env=env, runtime={"router": {"providerTimeout": "300ms", "providerRetries": 0}}
    )


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    async with open_store("sqlite+aiosqlite://") as opened:
        yield opened


@pytest.fixture
async def service(
    settings: Settings, upstream: Upstream, store: SqlStore
) -> AsyncIterator[AgentService]:
    registry = ProviderRegistry(upstream.transport)
    registry.apply(settings.providers)
    metrics = GatewayMetrics(CollectorRegistry(), label_bounds(settings))
    router = Router(
        registry,
        HealthBook(settings.providers, metrics),
        metrics,
        settings.providers,
        attempt_timeout_s=settings.runtime.router.provider_timeout,
        request_timeout_s=settings.runtime.request_timeout,
    )
    catalog = ModelCatalog(settings.providers, settings.models, settings.routes)
    yield AgentService(store, catalog, router, default_token_window=1000)
    await registry.aclose()


async def agent_and_session(service: AgentService) -> tuple[str, str]:
    spec = AgentSpec(
        name=f"agent-{random.random()}",
        model="openai:gpt-4o-mini",
        document={"instructions": "be brief"},
    )
    agent = await service.create_agent(spec)
    session = await service.create_session(agent.id, "u1", {})
    return agent.id, session.id


def user(content: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=content)]


def forbid(plan: Plan) -> None:
    raise ForbiddenError("this key may not use the model")


async def test_a_turn_stores_question_and_reply_and_sends_the_history(
    service: AgentService, upstream: Upstream
) -> None:
    agent_id, session_id = await agent_and_session(service)
    await service.post_message(agent_id, session_id, user("first"))

    reply = await service.post_message(agent_id, session_id, user("second"))

    assert reply.message.content == "hello"
    assert reply.message.usage is not None and reply.message.usage["completionTokens"] == 5
    stored = await service.list_messages(agent_id, session_id, None)
    assert [(m.role, m.content) for m in stored] == [
        ("user", "first"),
        ("assistant", "hello"),
        ("user", "second"),
        ("assistant", "hello"),
    ]
    assert stored[-1] == reply.message
    assert [(m["role"], m["content"]) for m in upstream.sent[-1]] == [
        ("system", "be brief"),
        ("user", "first"),
        ("assistant", "hello"),
        ("user", "second"),
    ]
    assert (await service.get_session(agent_id, session_id)).state == "completed"


async def test_a_forbidden_plan_stores_nothing(service: AgentService, upstream: Upstream) -> None:
    agent_id, session_id = await agent_and_session(service)

    with pytest.raises(ForbiddenError):
        await service.post_message(agent_id, session_id, user("not allowed"), authorize=forbid)
    with pytest.raises(ForbiddenError):
        await service.open_stream(agent_id, session_id, user("not allowed"), authorize=forbid)

    assert await service.list_messages(agent_id, session_id, None) == []
    assert (await service.get_session(agent_id, session_id)).state == "idle"
    assert upstream.sent == []


async def test_missing_agent_and_foreign_session_are_404s_before_authorization(
    service: AgentService,
) -> None:
    agent_id, session_id = await agent_and_session(service)
    other_agent, foreign_session = await agent_and_session(service)

    with pytest.raises(AgentNotFoundError) as missing_agent:
        await service.post_message("no-such-agent", session_id, user("x"), authorize=forbid)
    assert missing_agent.value.message == "agent no-such-agent not found"
    assert missing_agent.value.details == {"agentId": "no-such-agent"}

    with pytest.raises(SessionNotFoundError) as foreign:
        await service.post_message(agent_id, foreign_session, user("x"), authorize=forbid)
    assert foreign.value.message == f"session {foreign_session} not found"
    assert foreign.value.details == {"sessionId": foreign_session}

    assert await service.list_messages(other_agent, foreign_session, None) == []


async def test_an_upstream_failure_keeps_the_message_and_the_session_usable(
    service: AgentService, upstream: Upstream
) -> None:
    agent_id, session_id = await agent_and_session(service)
    upstream.handler = lambda r: httpx.Response(503, json={"error": {"message": "down"}})

    with pytest.raises(NoProviderAvailableError):
        await service.post_message(agent_id, session_id, user("acknowledged"))

    assert [m.content for m in await service.list_messages(agent_id, session_id, None)] == [
        "acknowledged"
    ]
    assert (await service.get_session(agent_id, session_id)).state == "errored"

    upstream.handler = lambda r: httpx.Response(200, json=completion("back"))
    reply = await service.post_message(agent_id, session_id, user("retry"))
    assert reply.message.content == "back"
    assert [m["content"] for m in upstream.sent[-1]][-2:] == ["acknowledged", "retry"]
    assert (await service.get_session(agent_id, session_id)).state == "completed"


async def test_a_finished_stream_stores_the_whole_reply(
    service: AgentService, upstream: Upstream
) -> None:
    agent_id, session_id = await agent_and_session(service)
    upstream.handler = lambda r: httpx.Response(
        200, content=sse("Hel", "lo"), headers={"content-type": "text/event-stream"}
    )

    streaming = await service.open_stream(agent_id, session_id, user("stream it"))
    assert (await service.get_session(agent_id, session_id)).state == "streaming"
    deltas = [event.delta async for event in streaming.events()]

    assert "".join(deltas) == "Hello"
    stored = await service.list_messages(agent_id, session_id, None)
    assert [(m.role, m.content) for m in stored] == [("user", "stream it"), ("assistant", "Hello")]
    assert stored[-1].id == streaming.message_id
    assert (await service.get_session(agent_id, session_id)).state == "completed"


async def test_an_abandoned_stream_marks_the_session_errored(
    service: AgentService, upstream: Upstream
) -> None:
    agent_id, session_id = await agent_and_session(service)
    upstream.handler = lambda r: httpx.Response(
        200, content=sse("a", "b", "c"), headers={"content-type": "text/event-stream"}
    )

    streaming = await service.open_stream(agent_id, session_id, user("go"))
    events = streaming.events()
    await anext(events)
    await events.aclose()  # the client went away

    stored = await service.list_messages(agent_id, session_id, None)
    assert [m.content for m in stored] == ["go"]
    assert (await service.get_session(agent_id, session_id)).state == "errored"


WINDOWS = [-1, 0, 1, 2, 7, 40, 499, 500, 501, 5000]


def random_history(seed: int) -> list[ChatMessage]:
    rng = random.Random(seed)
    return [
        ChatMessage(role="user", content="x" * rng.choice([0, 1, 3, 4, 9, 40, 400]))
        for _ in range(600)
    ]


@pytest.mark.parametrize("window", WINDOWS)
def test_the_bounded_history_read_trims_exactly_like_the_full_one(window: int) -> None:
    messages = random_history(window)
    limit = _history_limit(window)

    assert 1 <= limit <= 500
    assert trim_to_window(messages[-limit:], window) == trim_to_window(messages[-500:], window)


@pytest.mark.parametrize("window", WINDOWS)
def test_the_window_taker_keeps_exactly_what_trimming_keeps(window: int) -> None:
    messages = random_history(window)
    take = window_taker(window)
    if take is None:  # unbounded: the read is limited by count only
        assert window <= 0
        return
    taken: list[ChatMessage] = []
    for message in reversed(messages):  # the store reads newest first
        if not take(message.content):
            break
        taken.append(message)
    taken.reverse()

    assert taken == trim_to_window(messages, window)
