"""Building the async engine of the store from a database URL, and creating its schema.

``sqlite+aiosqlite:///path/to.db`` gets its directory created, WAL and ``busy_timeout``;
``sqlite+aiosqlite://`` (or ``:memory:``) is one in-memory database shared through a
``StaticPool``; ``postgresql+asyncpg://...`` gets a pre-pinged pool. Plain ``sqlite://`` and
``postgresql://`` URLs are given their async driver. Every SQLite connection enforces foreign keys.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from gateway.store.schema import metadata

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
_ASYNC_DRIVERS: Final = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def parse_url(url: str) -> URL:
    """The URL with an async driver (``sqlite://`` becomes ``sqlite+aiosqlite://`` etc.)."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed if driver is None else parsed.set(drivername=driver)


def _is_already_exists(exc: DBAPIError) -> bool:
    # SQLite: "table agents already exists"; PostgreSQL: DuplicateTable ("already exists") or a
    # unique violation on pg_type when two CREATE TABLEs race.
    return isinstance(exc, IntegrityError) or "already exists" in str(exc).lower()


def _sqlite_is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def create_engine_for(url: URL) -> tuple[AsyncEngine, bool]:
    """The engine for ``url`` and whether its single shared connection must be serialised."""
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True), False
    in_memory = _sqlite_is_memory(url)
    if in_memory:
        engine = create_async_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        database = url.database or ""
        if not database.startswith("file:"):  # plain path, not an SQLite URI
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL never corrupts and survives a killed process (kill -9): only an
                # OS crash or power loss can drop the last commits. FULL fsyncs every commit.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    return engine, in_memory


async def create_schema(engine: AsyncEngine) -> None:
    """``create_all``, retried once if another process created the tables at the same time.

    On SQLite the driver runs DDL outside any transaction, so two processes could interleave
    table by table; ``BEGIN IMMEDIATE`` takes the write lock first and makes the others wait
    (``busy_timeout``), then find the tables. PostgreSQL DDL is transactional: the loser of the
    race fails once ("already exists" / unique violation on ``pg_type``) and the retry finds them.
    """
    for attempt in (1, 2):
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                await conn.run_sync(metadata.create_all)
            return
        except DBAPIError as exc:
            if attempt == 2 or not _is_already_exists(exc):
                raise
            log.info("schema creation raced with another process; retrying: %s", exc)
