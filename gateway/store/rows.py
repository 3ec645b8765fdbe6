"""Rows to records and records to rows, plus the argument checks shared by the store's operations.

Records read back are built from the driver's freshly decoded JSON, so they share nothing with what is
stored or with another caller's records; values written are deep-copied to plain dicts/lists first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row

from gateway.store.records import SESSION_STATES, AgentRecord, MessageRecord, SessionRecord


def plain(value: Any) -> Any:
    """Deep copy of JSON-ish data as plain dicts/lists (Mappings, tuples and proxies included)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [plain(v) for v in value]
    return value


def check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")


def check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def check_state(state: str) -> None:
    if state not in SESSION_STATES:
        expected = ", ".join(sorted(SESSION_STATES))
        raise ValueError(f"unknown session state {state!r}; expected one of {expected}")


def agent_record(row: Row[Any]) -> AgentRecord:
    m = row._mapping
    return AgentRecord(
        id=m["id"],
        name=m["name"],
        data=m["data"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def session_record(row: Row[Any]) -> SessionRecord:
    m = row._mapping
    return SessionRecord(
        id=m["id"],
        agent_id=m["agent_id"],
        state=m["state"],
        user_id=m["user_id"],
        metadata=m["metadata"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def message_record(row: Sequence[Any]) -> MessageRecord:
    """A row of ``select(messages)`` (all columns, in table order: the hot path unpacks it)."""
    seq, id_, session_id, role, content, tool_calls, usage, routing, created_at = row
    return MessageRecord(
        id=id_,
        session_id=session_id,
        role=role,
        content=content,
        created_at=created_at,
        tool_calls=tool_calls,
        usage=usage,
        routing=routing,
        seq=int(seq),
    )


def message_values(message: MessageRecord) -> dict[str, Any]:
    """The INSERT parameters of a message (``seq`` is left to the database)."""
    return {
        "id": message.id,
        "session_id": message.session_id,
        "role": message.role,
        "content": message.content,
        "tool_calls": plain(message.tool_calls),
        "usage": plain(message.usage),
        "routing": plain(message.routing),
        "created_at": message.created_at,
    }
