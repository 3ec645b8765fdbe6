"""Immutable rows the store reads and writes: agents, their sessions and the sessions' messages.

These are the only shapes that cross the ``gateway.store`` boundary. JSON-ish fields are plain
dicts/lists; every record the store returns is built from freshly decoded JSON, so mutating one
never changes what is stored or what another caller sees. Datetimes are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

SESSION_STATES: Final[frozenset[str]] = frozenset(
    {"idle", "streaming", "completed", "errored", "cancelled"}
)
"""Every value ``SessionRecord.state`` may take."""


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One agent; ``data`` is the agent document as the API returns it (camelCase), without
    ``id``/``createdAt``/``updatedAt``, which live in their own fields."""

    id: str
    name: str
    data: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One conversation with an agent; ``state`` is one of :data:`SESSION_STATES`."""

    id: str
    agent_id: str
    state: str
    user_id: str | None
    metadata: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of a session. ``seq`` is assigned by the database on insert and orders the
    messages of a session; the value passed in to ``append_message`` is ignored."""

    id: str
    session_id: str
    role: str
    content: str
    created_at: datetime
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    usage: Mapping[str, Any] | None = None
    routing: Mapping[str, Any] | None = None
    seq: int = 0


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """What a model call needs of a stored message: the history a turn reads. Its usage, routing
    and timestamps are left in the database (decoding them was most of a turn's store time)."""

    id: str
    seq: int
    role: str
    content: str
    tool_calls: Sequence[Mapping[str, Any]] | None = None
