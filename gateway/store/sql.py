"""``SqlStore``: the :class:`~gateway.store.base.Store` on SQLAlchemy Core.

SQLite (``sqlite+aiosqlite:///./data/gateway.db``, or ``sqlite+aiosqlite://`` in memory for tests)
and PostgreSQL (``postgresql+asyncpg://...``) are selected by URL; ``gateway.store.engine`` says how
each runs. Every operation is one synchronous function of a connection, run as one unit of work. No
rows are cached in-process: several replicas may share one PostgreSQL, and message order comes from
the database (``seq``).

Every write transaction starts with a write (UPDATE/INSERT/DELETE), so SQLite takes its write lock
up front and waits on ``busy_timeout`` instead of failing on a stale read snapshot, and PostgreSQL
locks the session row before a message's ``seq`` is drawn, which keeps ``seq`` in commit order
within a session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Final, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import AgentNotFoundError, ConflictError
from gateway.store import turns
from gateway.store.engine import Database, create_database, create_schema, parse_url
from gateway.store.records import AgentRecord, HistoryMessage, MessageRecord, SessionRecord
from gateway.store.rows import (
    agent_record,
    check_limit,
    check_page,
    check_state,
    message_record,
    plain,
    session_record,
)
from gateway.store.schema import agents, messages, sessions

__all__ = ["SqlStore", "open_store"]

log = logging.getLogger(__name__)

T = TypeVar("T")

PING_TIMEOUT_S: Final = 2.0


def _name_conflict(name: str) -> ConflictError:
    return ConflictError(f"an agent named '{name}' already exists", details={"field": "name"})


def _create_agent_conflict(conn: Connection, agent: AgentRecord) -> ConflictError:
    name_taken = conn.scalar(select(func.count()).where(agents.c.name_key == agent.name.casefold()))
    id_taken = conn.scalar(select(func.count()).where(agents.c.id == agent.id))
    if name_taken or not id_taken:
        return _name_conflict(agent.name)
    return ConflictError(f"an agent with id '{agent.id}' already exists", details={"field": "id"})


class SqlStore:
    """The store on SQLAlchemy Core. Build it with :meth:`open`, release it with :meth:`close`."""

    def __init__(self, database: Database) -> None:
        """Wrap a database whose schema exists; prefer :meth:`open`."""
        self._db = database
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        """Create the database for ``url`` (and an SQLite file's directory) and the schema."""
        database = create_database(parse_url(url))
        try:
            await create_schema(database)
        except BaseException:
            await database.close()
            raise
        return cls(database)

    async def close(self) -> None:
        """Close every pooled connection; idempotent. The store is unusable afterwards."""
        if not self._closed:
            self._closed = True
            await self._db.close()

    @property
    def dialect_name(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect_name

    # -- units of work --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        """One transaction: committed on success, rolled back on any exception."""
        self._check_open()
        return await self._db.write(fn)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        self._check_open()
        return await self._db.read(fn)

    # -- agents ---------------------------------------------------------------------------------

    async def create_agent(self, agent: AgentRecord) -> None:
        values = {
            "id": agent.id,
            "name": agent.name,
            "name_key": agent.name.casefold(),
            "data": plain(agent.data),
            "created_at": agent.created_at,
            "updated_at": agent.updated_at,
        }
        try:
            await self._write(lambda conn: conn.execute(insert(agents), values))
        except IntegrityError as exc:
            raise await self._read(lambda conn: _create_agent_conflict(conn, agent)) from exc

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        return await self._read(lambda conn: turns.get_agent(conn, agent_id))

    async def list_agents(self, *, limit: int = 100, offset: int = 0) -> list[AgentRecord]:
        check_page(limit, offset)
        query = (
            select(agents).order_by(agents.c.created_at, agents.c.id).limit(limit).offset(offset)
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [agent_record(row) for row in rows]

    async def update_agent(self, agent: AgentRecord) -> bool:
        statement = (
            update(agents)
            .where(agents.c.id == agent.id)
            .values(
                name=agent.name,
                name_key=agent.name.casefold(),
                data=plain(agent.data),
                updated_at=agent.updated_at,
            )
        )
        try:
            count = await self._write(lambda conn: conn.execute(statement).rowcount)
        except IntegrityError as exc:
            raise _name_conflict(agent.name) from exc
        return count > 0

    async def delete_agent(self, agent_id: str) -> bool:
        owned_sessions = select(sessions.c.id).where(sessions.c.agent_id == agent_id)

        def delete_all(conn: Connection) -> int:
            conn.execute(delete(messages).where(messages.c.session_id.in_(owned_sessions)))
            conn.execute(delete(sessions).where(sessions.c.agent_id == agent_id))
            return conn.execute(delete(agents).where(agents.c.id == agent_id)).rowcount

        return await self._write(delete_all) > 0

    # -- sessions -------------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        check_state(session.state)
        values = {
            "id": session.id,
            "agent_id": session.agent_id,
            "state": session.state,
            "user_id": session.user_id,
            "metadata": plain(session.metadata),
            "created_at": session.created_at,
            "updated_at": session.updated_at,
        }
        try:
            await self._write(lambda conn: conn.execute(insert(sessions), values))
        except IntegrityError as exc:
            if await self.get_agent(session.agent_id) is None:
                raise AgentNotFoundError(
                    f"agent '{session.agent_id}' not found", details={"agent_id": session.agent_id}
                ) from exc
            raise ConflictError(
                f"a session with id '{session.id}' already exists", details={"field": "id"}
            ) from exc

    async def get_session(self, agent_id: str, session_id: str) -> SessionRecord | None:
        query = select(sessions).where(sessions.c.id == session_id, sessions.c.agent_id == agent_id)
        row = await self._read(lambda conn: conn.execute(query).first())
        return None if row is None else session_record(row)

    async def list_sessions(
        self, agent_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[SessionRecord]:
        check_page(limit, offset)
        query = (
            select(sessions)
            .where(sessions.c.agent_id == agent_id)
            .order_by(sessions.c.created_at, sessions.c.id)
            .limit(limit)
            .offset(offset)
        )
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [session_record(row) for row in rows]

    async def delete_session(self, agent_id: str, session_id: str) -> bool:
        owned = sessions.c.id == session_id, sessions.c.agent_id == agent_id

        def delete_one(conn: Connection) -> int:
            conn.execute(
                delete(messages).where(
                    messages.c.session_id.in_(select(sessions.c.id).where(*owned))
                )
            )
            return conn.execute(delete(sessions).where(*owned)).rowcount

        return await self._write(delete_one) > 0

    async def set_session_state(self, session_id: str, state: str) -> None:
        check_state(state)
        await self._write(lambda conn: turns.finish_turn(conn, session_id, None, state))

    # -- messages -------------------------------------------------------------------------------

    async def append_message(self, message: MessageRecord) -> MessageRecord:
        def append(conn: Connection) -> MessageRecord:
            # The write lock on the session row comes first (see the module docstring).
            touch = {"w_session_id": message.session_id, "w_now": datetime.now(UTC)}
            if conn.execute(turns.TOUCH_SESSION, touch).rowcount == 0:
                raise turns.session_not_found(message.session_id)
            return turns.insert_message(conn, message)

        return await self._write(append)

    async def list_messages(
        self, session_id: str, *, limit: int | None = None
    ) -> list[MessageRecord]:
        if limit is not None:
            check_limit(limit)
            return await self._read(lambda conn: turns.recent_messages(conn, session_id, limit))
        query = select(messages).where(messages.c.session_id == session_id).order_by(messages.c.seq)
        rows = await self._read(lambda conn: conn.execute(query).all())
        return [message_record(row) for row in rows]

    # -- turns ----------------------------------------------------------------------------------

    async def get_agent_for_session(
        self, agent_id: str, session_id: str
    ) -> tuple[AgentRecord | None, bool]:
        return await self._read(lambda conn: turns.agent_with_session(conn, agent_id, session_id))

    async def begin_turn(
        self,
        agent_id: str,
        session_id: str,
        incoming: Sequence[MessageRecord],
        *,
        history_limit: int,
        take: Callable[[str], bool] | None = None,
    ) -> list[HistoryMessage] | None:
        check_limit(history_limit)
        return await self._write(
            lambda conn: turns.begin_turn(
                conn, agent_id, session_id, incoming, history_limit, take=take
            )
        )

    async def finish_turn(
        self, session_id: str, reply: MessageRecord | None, state: str
    ) -> MessageRecord | None:
        check_state(state)
        return await self._write(lambda conn: turns.finish_turn(conn, session_id, reply, state))

    # -- health ---------------------------------------------------------------------------------

    async def ping(self) -> bool:
        if self._closed:
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await self._read(lambda conn: conn.exec_driver_sql("SELECT 1").scalar())
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
