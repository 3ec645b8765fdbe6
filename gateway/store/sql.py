"""``SqlStore``: the :class:`~gateway.store.base.Store` on SQLAlchemy Core with an async engine.

SQLite (``sqlite+aiosqlite:///./data/gateway.db``, or ``sqlite+aiosqlite://`` in memory for tests)
and PostgreSQL (``postgresql+asyncpg://...``) are selected by URL. No rows are cached in-process:
several replicas may share one PostgreSQL, and message order comes from the database (``seq``).

Every write transaction starts with a write (UPDATE/INSERT/DELETE), so SQLite takes its write lock
up front and waits on ``busy_timeout`` instead of failing on a stale read snapshot, and PostgreSQL
locks the session row before a message's ``seq`` is drawn, which keeps ``seq`` in commit order
within a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.errors import AgentNotFoundError, ConflictError, SessionNotFoundError
from gateway.store.engine import create_engine_for, create_schema, parse_url
from gateway.store.records import (
    SESSION_STATES,
    AgentRecord,
    MessageRecord,
    SessionRecord,
)
from gateway.store.schema import agents, messages, sessions

__all__ = ["SqlStore", "open_store"]

log = logging.getLogger(__name__)

PING_TIMEOUT_S: Final = 2.0


def _plain(value: Any) -> Any:
    """Deep copy of JSON-ish data as plain dicts/lists (Mappings, tuples and proxies included)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [_plain(v) for v in value]
    return value


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")


def _check_state(state: str) -> None:
    if state not in SESSION_STATES:
        expected = ", ".join(sorted(SESSION_STATES))
        raise ValueError(f"unknown session state {state!r}; expected one of {expected}")


def _name_conflict(name: str) -> ConflictError:
    return ConflictError(f"an agent named '{name}' already exists", details={"field": "name"})


def _agent(row: Row[Any]) -> AgentRecord:
    m = row._mapping
    return AgentRecord(
        id=m["id"],
        name=m["name"],
        data=_plain(m["data"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _session(row: Row[Any]) -> SessionRecord:
    m = row._mapping
    return SessionRecord(
        id=m["id"],
        agent_id=m["agent_id"],
        state=m["state"],
        user_id=m["user_id"],
        metadata=_plain(m["metadata"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _message(row: Row[Any]) -> MessageRecord:
    m = row._mapping
    return MessageRecord(
        id=m["id"],
        session_id=m["session_id"],
        role=m["role"],
        content=m["content"],
        created_at=m["created_at"],
        tool_calls=_plain(m["tool_calls"]),
        usage=_plain(m["usage"]),
        routing=_plain(m["routing"]),
        seq=int(m["seq"]),
    )


class SqlStore:
    """The store on SQLAlchemy Core. Build it with :meth:`open`, release it with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, *, serialize: bool = False) -> None:
        """Wrap an engine whose schema exists; prefer :meth:`open`. ``serialize`` makes every
        use of the engine exclusive (needed when all checkouts share one connection)."""
        self._engine = engine
        self._lock: asyncio.Lock | None = asyncio.Lock() if serialize else None
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        """Create the engine for ``url`` (and an SQLite file's directory) and the schema."""
        engine, serialize = create_engine_for(parse_url(url))
        try:
            await create_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, serialize=serialize)

    async def close(self) -> None:
        """Close every pooled connection; idempotent. The store is unusable afterwards."""
        if not self._closed:
            self._closed = True
            await self._engine.dispose()

    @property
    def dialect_name(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    # -- connection helpers ---------------------------------------------------------------------

    def _guard(self) -> AbstractAsyncContextManager[object]:
        if self._closed:
            raise RuntimeError("the store is closed")
        return self._lock if self._lock is not None else contextlib.nullcontext()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed on success, rolled back on any exception."""
        async with self._guard(), self._engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._guard(), self._engine.connect() as conn:
            yield conn

    # -- agents ---------------------------------------------------------------------------------

    async def create_agent(self, agent: AgentRecord) -> None:
        values = {
            "id": agent.id,
            "name": agent.name,
            "name_key": agent.name.casefold(),
            "data": _plain(agent.data),
            "created_at": agent.created_at,
            "updated_at": agent.updated_at,
        }
        try:
            async with self._begin() as conn:
                await conn.execute(insert(agents).values(values))
        except IntegrityError as exc:
            raise await self._create_agent_conflict(agent) from exc

    async def _create_agent_conflict(self, agent: AgentRecord) -> ConflictError:
        async with self._read() as conn:
            name_taken = await conn.scalar(
                select(func.count()).where(agents.c.name_key == agent.name.casefold())
            )
        if name_taken or not await self._agent_exists(agent.id):
            return _name_conflict(agent.name)
        return ConflictError(
            f"an agent with id '{agent.id}' already exists", details={"field": "id"}
        )

    async def _agent_exists(self, agent_id: str) -> bool:
        async with self._read() as conn:
            found = await conn.scalar(select(agents.c.id).where(agents.c.id == agent_id))
        return found is not None

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
        return None if row is None else _agent(row)

    async def list_agents(self, *, limit: int = 100, offset: int = 0) -> list[AgentRecord]:
        _check_page(limit, offset)
        query = (
            select(agents).order_by(agents.c.created_at, agents.c.id).limit(limit).offset(offset)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_agent(row) for row in rows]

    async def update_agent(self, agent: AgentRecord) -> bool:
        statement = (
            update(agents)
            .where(agents.c.id == agent.id)
            .values(
                name=agent.name,
                name_key=agent.name.casefold(),
                data=_plain(agent.data),
                updated_at=agent.updated_at,
            )
        )
        try:
            async with self._begin() as conn:
                result = await conn.execute(statement)
        except IntegrityError as exc:
            raise _name_conflict(agent.name) from exc
        return result.rowcount > 0

    async def delete_agent(self, agent_id: str) -> bool:
        owned_sessions = select(sessions.c.id).where(sessions.c.agent_id == agent_id)
        async with self._begin() as conn:
            await conn.execute(delete(messages).where(messages.c.session_id.in_(owned_sessions)))
            await conn.execute(delete(sessions).where(sessions.c.agent_id == agent_id))
            result = await conn.execute(delete(agents).where(agents.c.id == agent_id))
        return result.rowcount > 0

    # -- sessions -------------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        _check_state(session.state)
        values = {
            "id": session.id,
            "agent_id": session.agent_id,
            "state": session.state,
            "user_id": session.user_id,
            "metadata": _plain(session.metadata),
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }
        try:
            async with self._begin() as conn:
                await conn.execute(insert(sessions).values(values))
        except IntegrityError as exc:
            if not await self._agent_exists(session.agent_id):
                raise AgentNotFoundError(
                    f"agent '{session.agent_id}' not found", details={"agent_id": session.agent_id}
                ) from exc
            raise ConflictError(
                f"a session with id '{session.id}' already exists", details={"field": "id"}
            ) from exc

    async def get_session(self, agent_id: str, session_id: str) -> SessionRecord | None:
        query = select(sessions).where(sessions.c.id == session_id, sessions.c.agent_id == agent_id)
        async with self._read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _session(row)

    async def list_sessions(
        self, agent_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[SessionRecord]:
        _check_page(limit, offset)
        query = (
            select(sessions)
            .where(sessions.c.agent_id == agent_id)
            .order_by(sessions.c.created_at, sessions.c.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_session(row) for row in rows]

    async def delete_session(self, agent_id: str, session_id: str) -> bool:
        owned = select(sessions.c.id).where(
            sessions.c.id == session_id, sessions.c.agent_id == agent_id
        )
        async with self._begin() as conn:
            await conn.execute(delete(messages).where(messages.c.session_id.in_(owned)))
            result = await conn.execute(
                delete(sessions).where(sessions.c.id == session_id, sessions.c.agent_id == agent_id)
            )
        return result.rowcount > 0

    async def set_session_state(self, session_id: str, state: str) -> None:
        _check_state(state)
        statement = (
            update(sessions)
            .where(sessions.c.id == session_id)
            .values(state=state, updated_at=datetime.now(UTC))
        )
        async with self._begin() as conn:
            await conn.execute(statement)

    # -- messages -------------------------------------------------------------------------------

    async def append_message(self, message: MessageRecord) -> MessageRecord:
        stored = dataclasses.replace(
            message,
            tool_calls=_plain(message.tool_calls),
            usage=_plain(message.usage),
            routing=_plain(message.routing),
        )
        values = {
            "id": stored.id,
            "session_id": stored.session_id,
            "role": stored.role,
            "content": stored.content,
            "tool_calls": stored.tool_calls,
            "usage": stored.usage,
            "routing": stored.routing,
            "created_at": stored.created_at,
        }
        touch = (
            update(sessions)
            .where(sessions.c.id == message.session_id)
            .values(updated_at=datetime.now(UTC))
        )
        try:
            async with self._begin() as conn:
                # The write lock on the session row comes first (see the module docstring).
                if (await conn.execute(touch)).rowcount == 0:
                    raise SessionNotFoundError(
                        f"session '{message.session_id}' not found",
                        details={"session_id": message.session_id},
                    )
                result = await conn.execute(insert(messages).values(values))
                seq = result.inserted_primary_key
        except IntegrityError as exc:
            raise ConflictError(
                f"a message with id '{message.id}' already exists", details={"field": "id"}
            ) from exc
        if seq is None:  # pragma: no cover - every supported dialect reports it
            raise RuntimeError("the database did not report the new message's seq")
        return dataclasses.replace(stored, seq=int(seq[0]))

    async def list_messages(
        self, session_id: str, *, limit: int | None = None
    ) -> list[MessageRecord]:
        query = select(messages).where(messages.c.session_id == session_id)
        if limit is None:
            query = query.order_by(messages.c.seq)
        else:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            query = query.order_by(messages.c.seq.desc()).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        records = [_message(row) for row in rows]
        if limit is not None:
            records.reverse()
        return records

    # -- health ---------------------------------------------------------------------------------

    async def ping(self) -> bool:
        if self._closed:
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self._read() as conn:
                await conn.scalar(select(1))
        except Exception as exc:  # a readiness probe answers "not ready", whatever failed
            log.warning("database ping failed: %s", exc)
            return False
        return True


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[SqlStore]:
    """``async with open_store(url) as store:`` for app lifespans; closes the store on exit."""
    store = await SqlStore.open(url)
    try:
        yield store
    finally:
        await store.close()
