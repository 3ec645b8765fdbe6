"""SQLAlchemy Core tables of the store, portable between SQLite and PostgreSQL.

Only portable column types are used. Datetimes go through :class:`UtcDateTime`, which stores UTC
and hands back timezone-aware UTC values even on SQLite (which drops ``tzinfo``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 36
NAME_LENGTH = 200


def to_utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always binds UTC and always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = to_utc(value)
        # SQLite keeps no offset: store the UTC wall clock so stored strings sort by instant.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return to_utc(value)


metadata = MetaData()

agents = Table(
    "agents",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    # name.casefold(): makes agent names unique case-insensitively on every backend.
    Column("name_key", String(NAME_LENGTH), nullable=False, unique=True),
    Column("data", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column(
        "agent_id",
        String(ID_LENGTH),
        ForeignKey("agents.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("state", String(16), nullable=False),
    Column("user_id", String(NAME_LENGTH), nullable=True),
    Column("metadata", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    # INTEGER on SQLite (a rowid alias, AUTOINCREMENT so values are never reused), BIGSERIAL on
    # PostgreSQL. It orders the messages of a session.
    Column(
        "seq",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(ID_LENGTH), nullable=False, unique=True),
    Column(
        "session_id",
        String(ID_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("role", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("tool_calls", JSON(none_as_null=True), nullable=True),
    Column("usage", JSON(none_as_null=True), nullable=True),
    Column("routing", JSON(none_as_null=True), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_messages_session_id_seq", "session_id", "seq"),
    sqlite_autoincrement=True,
)
