"""The agent service: agents, sessions and messages on top of the store and the router.

The user message is stored before the upstream call and the reply after it, so an acknowledged message
is never lost; a failed call marks the session ``errored`` but leaves it usable for the next message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from gateway.domain.history import to_chat_message, trim_to_window, window_taker
from gateway.domain.models import ModelCatalog, Plan
from gateway.domain.types import ChatMessage, ChatRequest, StreamEvent, Usage
from gateway.errors import AgentNotFoundError, InvalidRequestError, SessionNotFoundError
from gateway.routing.record import RoutingRecord
from gateway.routing.router import Router
from gateway.routing.stream import RoutedStream
from gateway.store.base import Store
from gateway.store.records import AgentRecord, MessageRecord, SessionRecord

# Raises when the caller may not use the plan's models (a client key's scope).
Authorize = Callable[[Plan], None]
T = TypeVar("T")


class CallGuard(Protocol):
    """Runs the model call on the caller's terms (the API abandons it when its client leaves); an
    exception it raises ends the turn as errored, like any failed call."""

    def __call__(self, call: Awaitable[T], /) -> Awaitable[T]: ...


async def _unguarded(call: Awaitable[T]) -> T:
    return await call


# Most messages a turn reads back from the store before trimming them to the token window.
HISTORY_LIMIT = 500


def _history_limit(token_window: int) -> int:
    """Every message costs at least one token and the window keeps at least the newest message, so
    no more than ``token_window`` (at least 1) messages can survive ``trim_to_window``."""
    if token_window <= 0:
        return HISTORY_LIMIT
    return min(HISTORY_LIMIT, token_window)


def _agent_not_found(agent_id: str) -> AgentNotFoundError:
    return AgentNotFoundError(f"agent {agent_id} not found", details={"agentId": agent_id})


def _session_not_found(session_id: str) -> SessionNotFoundError:
    return SessionNotFoundError(
        f"session {session_id} not found", details={"sessionId": session_id}
    )


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """What a client says an agent is, normalized (both Agno-Go payload shapes end up here)."""

    name: str
    model: str
    description: str = ""
    instructions: str | None = None
    fallbacks: tuple[str, ...] = ()
    route: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    token_window: int | None = None
    document: Mapping[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        doc = dict(self.document)
        doc.update(name=self.name, model=self.model, description=self.description)
        return doc

    @classmethod
    def from_record(cls, record: AgentRecord) -> AgentSpec:
        doc = record.data
        config = doc.get("config") or {}
        options = doc.get("modelOptions") or {}
        memory = doc.get("memory") or {}
        fallbacks = list(config.get("fallbackModels") or [])
        if config.get("fallbackModel"):
            fallbacks.insert(0, config["fallbackModel"])
        return cls(
            name=record.name,
            model=str(doc.get("model", "")),
            description=str(doc.get("description") or ""),
            instructions=doc.get("instructions"),
            fallbacks=tuple(fallbacks),
            route=config.get("route"),
            temperature=options.get("temperature"),
            max_tokens=options.get("maxTokens"),
            token_window=memory.get("tokenWindow"),
            document=doc,
        )


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """A route picked for one message (``metadata.taskType``) or request (``X-Gateway-Route``)."""

    name: str
    field: str


@dataclass(frozen=True, slots=True)
class Reply:
    message: MessageRecord
    routing: RoutingRecord
    usage: Usage
    latency_ms: float


class AgentService:
    def __init__(
        self, store: Store, catalog: ModelCatalog, router: Router, default_token_window: int
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._router = router
        self._default_window = default_token_window

    def update(self, catalog: ModelCatalog) -> None:
        """After a reload: model names resolve against the new configuration."""
        self._catalog = catalog

    def plan_for(self, spec: AgentSpec) -> Plan:
        """Validates every model name of the agent; unknown providers are a 400 here, not later."""
        return self._catalog.plan(spec.route or spec.model, spec.fallbacks)

    # -- agents -----------------------------------------------------------------------------

    async def create_agent(
        self, spec: AgentSpec, authorize: Authorize | None = None
    ) -> AgentRecord:
        plan = self.plan_for(spec)
        if authorize is not None:
            authorize(plan)
        stamp = now()
        record = AgentRecord(new_id(), spec.name, spec.to_document(), stamp, stamp)
        await self._store.create_agent(record)
        return record

    async def get_agent(self, agent_id: str) -> AgentRecord:
        record = await self._store.get_agent(agent_id)
        if record is None:
            raise _agent_not_found(agent_id)
        return record

    async def list_agents(self, limit: int, offset: int) -> list[AgentRecord]:
        return await self._store.list_agents(limit=limit, offset=offset)

    async def update_agent(
        self, agent_id: str, spec: AgentSpec, authorize: Authorize | None = None
    ) -> AgentRecord:
        current = await self.get_agent(agent_id)
        plan = self.plan_for(spec)
        if authorize is not None:
            authorize(plan)
        record = replace(current, name=spec.name, data=spec.to_document(), updated_at=now())
        if not await self._store.update_agent(record):
            raise _agent_not_found(agent_id)
        return record

    async def delete_agent(self, agent_id: str) -> None:
        if not await self._store.delete_agent(agent_id):
            raise _agent_not_found(agent_id)

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self, agent_id: str, user_id: str | None, metadata: Mapping[str, Any]
    ) -> SessionRecord:
        agent = AgentSpec.from_record(await self.get_agent(agent_id))
        meta = dict(metadata)
        if agent.token_window and agent.token_window > 0:
            meta["tokenWindow"] = agent.token_window
        stamp = now()
        record = SessionRecord(new_id(), agent_id, "idle", user_id, meta, stamp, stamp)
        await self._store.create_session(record)
        return record

    async def get_session(self, agent_id: str, session_id: str) -> SessionRecord:
        await self.get_agent(agent_id)
        record = await self._store.get_session(agent_id, session_id)
        if record is None:
            raise _session_not_found(session_id)
        return record

    async def list_sessions(self, agent_id: str, limit: int, offset: int) -> list[SessionRecord]:
        await self.get_agent(agent_id)
        return await self._store.list_sessions(agent_id, limit=limit, offset=offset)

    async def delete_session(self, agent_id: str, session_id: str) -> None:
        await self.get_agent(agent_id)
        if not await self._store.delete_session(agent_id, session_id):
            raise _session_not_found(session_id)

    async def list_messages(
        self, agent_id: str, session_id: str, limit: int | None
    ) -> list[MessageRecord]:
        await self.get_session(agent_id, session_id)
        return await self._store.list_messages(session_id, limit=limit)

    # -- messages ---------------------------------------------------------------------------

    def _plan_with_route(self, agent: AgentSpec, route: RouteChoice | None) -> Plan:
        if route is None:
            return self.plan_for(agent)
        if not self._catalog.is_route(route.name):
            raise InvalidRequestError(
                f"unknown route {route.name[:64]!r}",
                field=route.field,
                details={"routes": sorted(self._catalog.routes)},
            )
        return self._catalog.plan(route.name, agent.fallbacks)

    async def _prepare(
        self,
        agent_id: str,
        session_id: str,
        incoming: Sequence[ChatMessage],
        route: RouteChoice | None,
        authorize: Authorize | None,
    ) -> tuple[Plan, ChatRequest]:
        # One read, then (only if the plan is allowed) one write transaction that stores the
        # incoming messages before any upstream call (acknowledged means kept) and reads the history.
        record, owns_session = await self._store.get_agent_for_session(agent_id, session_id)
        if record is None:
            raise _agent_not_found(agent_id)
        if not owns_session:
            raise _session_not_found(session_id)
        agent = AgentSpec.from_record(record)
        plan = self._plan_with_route(agent, route)
        if authorize is not None:
            authorize(plan)
        window = agent.token_window or self._default_window
        stored = await self._store.begin_turn(
            agent_id,
            session_id,
            [MessageRecord(new_id(), session_id, m.role, m.content, now()) for m in incoming],
            history_limit=_history_limit(window),
            take=window_taker(window),
        )
        if stored is None:  # deleted since the read: nothing was written
            raise _session_not_found(session_id)
        history = trim_to_window([to_chat_message(m) for m in stored], window)
        if agent.instructions:
            history.insert(0, ChatMessage(role="system", content=agent.instructions))
        request = ChatRequest(
            model="",
            messages=tuple(history),
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
        )
        return plan, request

    async def _store_reply(
        self,
        session_id: str,
        content: str,
        *,
        tool_calls: list[dict[str, Any]] | None,
        usage: Usage,
        routing: RoutingRecord,
        latency_ms: float,
        message_id: str | None = None,
    ) -> MessageRecord:
        usage_doc = {
            "promptTokens": usage.prompt_tokens,
            "completionTokens": usage.completion_tokens,
            "latencyMs": round(latency_ms, 1),
        }
        reply = MessageRecord(
            message_id or new_id(),
            session_id,
            "assistant",
            content,
            now(),
            tool_calls=tool_calls,
            usage=usage_doc,
            routing=routing.to_json(),
        )
        stored = await self._store.finish_turn(session_id, reply, "completed")
        if stored is None:  # pragma: no cover - finish_turn returns the reply or raises
            raise RuntimeError("the store did not return the stored reply")
        return stored

    async def _mark_errored(self, session_id: str) -> None:
        await self._store.finish_turn(session_id, None, "errored")

    async def post_message(
        self,
        agent_id: str,
        session_id: str,
        incoming: Sequence[ChatMessage],
        route: RouteChoice | None = None,
        authorize: Authorize | None = None,
        *,
        guard: CallGuard = _unguarded,
    ) -> Reply:
        plan, request = await self._prepare(agent_id, session_id, incoming, route, authorize)
        started = time.perf_counter()
        try:
            result, routing = await guard(self._router.complete(plan, request))
        except BaseException:
            await self._mark_errored(session_id)
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        calls = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls
        ] or None
        message = await self._store_reply(
            session_id,
            result.content,
            tool_calls=calls,
            usage=result.usage,
            routing=routing,
            latency_ms=latency_ms,
        )
        return Reply(message, routing, result.usage, latency_ms)

    async def open_stream(
        self,
        agent_id: str,
        session_id: str,
        incoming: Sequence[ChatMessage],
        route: RouteChoice | None = None,
        authorize: Authorize | None = None,
        *,
        guard: CallGuard = _unguarded,
    ) -> StreamingReply:
        plan, request = await self._prepare(agent_id, session_id, incoming, route, authorize)
        started = time.perf_counter()
        try:
            stream = await guard(self._router.open_stream(plan, request))
        except BaseException:
            await self._mark_errored(session_id)
            raise
        return StreamingReply(self, session_id, stream, started)


class StreamingReply:
    """Relays a routed stream and stores the complete reply when it finishes."""

    def __init__(
        self, service: AgentService, session_id: str, stream: RoutedStream, started: float
    ) -> None:
        self.routing = stream.record
        self.message_id = new_id()
        self.usage = Usage()
        self.finish_reason: str | None = None
        self._service = service
        self._session_id = session_id
        self._stream = stream
        self._started = started

    async def events(self) -> AsyncIterator[StreamEvent]:
        parts: list[str] = []
        completed = False
        try:
            async for batch in self._stream:
                for event in batch:
                    parts.append(event.delta)
                    if event.usage is not None:
                        self.usage = event.usage
                    if event.finish_reason is not None:
                        self.finish_reason = event.finish_reason
                    yield event
            completed = True
        finally:
            await self._stream.aclose()  # at once, also when the client left mid-stream
            if completed:
                latency = (time.perf_counter() - self._started) * 1000
                await self._service._store_reply(
                    self._session_id,
                    "".join(parts),
                    tool_calls=None,
                    usage=self.usage,
                    routing=self.routing,
                    latency_ms=latency,
                    message_id=self.message_id,
                )
            else:
                await self._service._mark_errored(self._session_id)
