"""The hot path of the store: one conversation turn as two short units of work.

A turn is: read the agent (checking that the session is one of its sessions), then in **one**
transaction store the incoming messages, mark the session ``streaming`` and read the recent history;
after the model call, in **one** transaction store the reply and set the final state.

The statements are built once with bound parameters, so SQLAlchemy's compiled cache hits on the
statement object itself (no per-call statement construction or cache-key generation). As in every
write of the store, the transaction starts with the UPDATE of the session row: SQLite takes its write
lock up front, PostgreSQL locks the row before a message's ``seq`` is drawn (``seq`` then follows
commit order within a session).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Connection, Select, bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import ConflictError, SessionNotFoundError
from gateway.store.records import AgentRecord, HistoryMessage, MessageRecord
from gateway.store.rows import agent_record, message_record, message_values
from gateway.store.schema import agents, messages, sessions

GET_AGENT: Final = select(agents).where(agents.c.id == bindparam("agent_id"))
AGENT_WITH_SESSION: Final = select(
    agents,
    exists()
    .where(sessions.c.id == bindparam("session_id"), sessions.c.agent_id == agents.c.id)
    .label("has_session"),
).where(agents.c.id == bindparam("agent_id"))

SET_OWN_SESSION_STATE: Final = (
    update(sessions)
    .where(
        sessions.c.id == bindparam("w_session_id"), sessions.c.agent_id == bindparam("w_agent_id")
    )
    .values(state=bindparam("w_state"), updated_at=bindparam("w_now"))
)
SET_SESSION_STATE: Final = (
    update(sessions)
    .where(sessions.c.id == bindparam("w_session_id"))
    .values(state=bindparam("w_state"), updated_at=bindparam("w_now"))
)
TOUCH_SESSION: Final = (
    update(sessions)
    .where(sessions.c.id == bindparam("w_session_id"))
    .values(updated_at=bindparam("w_now"))
)
INSERT_MESSAGE: Final = insert(messages)


def _newest_first(query: Select[Any]) -> Select[Any]:
    """``query`` over the messages of one session, newest first, at most ``limit`` of them."""
    return (
        query.where(messages.c.session_id == bindparam("session_id"))
        .order_by(messages.c.seq.desc())
        .limit(bindparam("limit"))
    )


RECENT_MESSAGES: Final = _newest_first(select(messages))
# A turn's history: only what a model call needs (no JSON usage/routing, no timestamps to convert).
RECENT_HISTORY: Final = _newest_first(
    select(
        messages.c.id, messages.c.seq, messages.c.role, messages.c.content, messages.c.tool_calls
    )
)


def session_not_found(session_id: str) -> SessionNotFoundError:
    return SessionNotFoundError(
        f"session '{session_id}' not found", details={"session_id": session_id}
    )


def insert_message(conn: Connection, message: MessageRecord) -> MessageRecord:
    """INSERT (the caller has locked the session row) and return the message with its ``seq``."""
    values = message_values(message)
    try:
        result = conn.execute(INSERT_MESSAGE, values)
    except IntegrityError as exc:
        raise ConflictError(
            f"a message with id '{message.id}' already exists", details={"field": "id"}
        ) from exc
    seq = result.inserted_primary_key
    if seq is None:  # pragma: no cover - every supported dialect reports it
        raise RuntimeError("the database did not report the new message's seq")
    return MessageRecord(
        id=values["id"],
        session_id=values["session_id"],
        role=values["role"],
        content=values["content"],
        created_at=values["created_at"],
        tool_calls=values["tool_calls"],
        usage=values["usage"],
        routing=values["routing"],
        seq=int(seq[0]),
    )


def recent_messages(conn: Connection, session_id: str, limit: int) -> list[MessageRecord]:
    """The last ``limit`` messages of the session, ascending by ``seq``."""
    rows = conn.execute(RECENT_MESSAGES, {"session_id": session_id, "limit": limit}).all()
    records = [message_record(row) for row in rows]
    records.reverse()
    return records


def recent_history(
    conn: Connection, session_id: str, limit: int, take: Callable[[str], bool] | None = None
) -> list[HistoryMessage]:
    """The history of the last ``limit`` messages, ascending by ``seq``; with ``take``, only the
    newest ones up to the first it refuses. Rows are fetched one at a time, newest first, so the
    older ones are never read once the window is full."""
    result = conn.execute(RECENT_HISTORY, {"session_id": session_id, "limit": limit})
    records: list[HistoryMessage] = []
    try:
        for id_, seq, role, content, tool_calls in result:
            if take is not None and not take(content):
                break
            records.append(HistoryMessage(id_, int(seq), role, content, tool_calls))
    finally:
        result.close()
    records.reverse()
    return records


def get_agent(conn: Connection, agent_id: str) -> AgentRecord | None:
    row = conn.execute(GET_AGENT, {"agent_id": agent_id}).first()
    return None if row is None else agent_record(row)


def agent_with_session(
    conn: Connection, agent_id: str, session_id: str
) -> tuple[AgentRecord | None, bool]:
    row = conn.execute(AGENT_WITH_SESSION, {"agent_id": agent_id, "session_id": session_id}).first()
    if row is None:
        return None, False
    return agent_record(row), bool(row.has_session)


def begin_turn(
    conn: Connection,
    agent_id: str,
    session_id: str,
    incoming: Sequence[MessageRecord],
    history_limit: int,
    *,
    take: Callable[[str], bool] | None = None,
) -> list[HistoryMessage] | None:
    """In the caller's transaction; ``None`` (nothing written) if the session is not the agent's."""
    claim = {
        "w_session_id": session_id,
        "w_agent_id": agent_id,
        "w_state": "streaming",
        "w_now": datetime.now(UTC),
    }
    if conn.execute(SET_OWN_SESSION_STATE, claim).rowcount == 0:
        return None
    for message in incoming:
        if message.session_id != session_id:
            raise ValueError(f"message {message.id} is for another session")
        insert_message(conn, message)
    return recent_history(conn, session_id, history_limit, take)


def finish_turn(
    conn: Connection, session_id: str, reply: MessageRecord | None, state: str
) -> MessageRecord | None:
    """In the caller's transaction; see ``Store.finish_turn``."""
    if reply is not None and reply.session_id != session_id:
        raise ValueError(f"message {reply.id} is for another session")
    params = {"w_session_id": session_id, "w_state": state, "w_now": datetime.now(UTC)}
    if conn.execute(SET_SESSION_STATE, params).rowcount == 0:
        if reply is None:
            return None  # like set_session_state: the session is gone, nothing to mark
        raise session_not_found(session_id)
    return None if reply is None else insert_message(conn, reply)
