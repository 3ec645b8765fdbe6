"""The database under the store: one place that runs a store operation as one unit of work.

Every operation of the store is a plain synchronous function of a SQLAlchemy Core ``Connection``;
:class:`Database` runs it either in one transaction (``write``) or on one connection (``read``):

- SQLite (``sqlite:///path/to.db``; ``sqlite+aiosqlite://`` URLs are accepted and mean the same)
  runs on the standard library driver on **one dedicated thread with one connection**. SQLite has a
  single writer anyway; in-process writers never meet in SQLite's busy handler (which sleeps up to
  100 ms between retries), and a whole operation costs one thread hop instead of several per
  statement (aiosqlite hops for cursor, execute, fetch, commit and the pool's reset). The event loop
  never blocks on SQLite: waits for another process's lock (``busy_timeout``) happen on that thread.
  The file's directory is created; WAL and ``synchronous=NORMAL`` are set. ``sqlite://`` (or
  ``:memory:``) is one in-memory database. Every SQLite connection enforces foreign keys.
- PostgreSQL (``postgresql+asyncpg://...``; ``postgresql://`` gets the asyncpg driver) runs the
  function through ``AsyncConnection.run_sync`` on a pre-pinged pool, statements awaited natively.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool, StaticPool

from gateway.store.schema import metadata

log = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
_DRIVERS: Final = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def parse_url(url: str) -> URL:
    """The URL with the driver the store uses (``sqlite+pysqlite``, ``postgresql+asyncpg``)."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed if driver is None else parsed.set(drivername=driver)


class Database(Protocol):
    """Runs ``fn(connection)``: ``write`` in one transaction (committed when ``fn`` returns,
    rolled back if it raises), ``read`` on a connection without writes."""

    @property
    def dialect_name(self) -> str: ...

    async def read(self, fn: Callable[[Connection], T]) -> T: ...

    async def write(self, fn: Callable[[Connection], T]) -> T: ...

    async def close(self) -> None: ...


def _create_all(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # The driver runs DDL outside any transaction, so two processes could interleave table by
        # table; BEGIN IMMEDIATE takes the write lock first and makes the others wait.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    metadata.create_all(conn)


def _is_already_exists(exc: DBAPIError) -> bool:
    # SQLite: "table agents already exists"; PostgreSQL: DuplicateTable ("already exists") or a
    # unique violation on pg_type when two CREATE TABLEs race.
    return isinstance(exc, IntegrityError) or "already exists" in str(exc).lower()


class SqliteDatabase:
    """SQLite on one worker thread and one connection (see the module docstring).

    The worker keeps its SQLAlchemy ``Connection`` open between operations (no pool checkout,
    checkin and reset per operation); after a database error it is closed and the next operation
    takes a fresh one from the pool.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-sqlite")
        self._conn: Connection | None = None  # used only on the worker thread

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._read, fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._write, fn)

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
        return self._conn

    def _drop_connection(self, exc: DBAPIError | None = None) -> None:
        if isinstance(exc, IntegrityError):  # a constraint said no: the connection is fine
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _read(self, fn: Callable[[Connection], T]) -> T:
        conn = self._connection()
        try:
            return fn(conn)
        except DBAPIError as exc:
            self._drop_connection(exc)
            raise
        finally:
            if self._conn is conn:
                conn.rollback()  # ends the read (no SQL: the driver has no transaction open)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        conn = self._connection()
        try:
            with conn.begin():
                return fn(conn)
        except DBAPIError as exc:
            self._drop_connection(exc)
            raise

    def _dispose(self) -> None:
        self._drop_connection()
        self._engine.dispose()

    async def close(self) -> None:
        """Waits for the operations already queued, then closes the connection and the thread."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._dispose)
        finally:
            self._thread.shutdown(wait=False)


class AsyncDatabase:
    """An async engine (PostgreSQL over asyncpg); ``fn`` runs through ``run_sync``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    async def read(self, fn: Callable[[Connection], T]) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn)

    async def close(self) -> None:
        await self._engine.dispose()


def _switch_to_wal(cursor: Any, attempts: int = 50, pause_s: float = 0.02) -> None:
    """``PRAGMA journal_mode = WAL``, retried: the switch needs the file to itself, and SQLite
    answers "database is locked" at once, without its busy handler, when another connection (a
    second worker opening the same new file) holds it at that moment."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(pause_s)


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        database = url.database or ""
        if not database.startswith("file:"):  # plain path, not an SQLite URI
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One connection, used by the one worker thread (created there, hence no thread check).
        engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},
        )

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                _switch_to_wal(cursor)
                # In WAL mode NORMAL never corrupts and survives a killed process (kill -9): only an
                # OS crash or power loss can drop the last commits. FULL fsyncs every commit.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    return engine


def create_database(url: URL) -> Database:
    """The database for ``url`` (its schema is not created yet: see :func:`create_schema`)."""
    if url.get_backend_name() == "sqlite":
        return SqliteDatabase(_sqlite_engine(url))
    return AsyncDatabase(create_async_engine(url, pool_pre_ping=True))


async def create_schema(database: Database) -> None:
    """``create_all``, retried once if another process created the tables at the same time.

    On SQLite ``BEGIN IMMEDIATE`` makes concurrent creators wait (``busy_timeout``), then find the
    tables. PostgreSQL DDL is transactional: the loser of the race fails once ("already exists" /
    unique violation on ``pg_type``) and the retry finds them.
    """
    for attempt in (1, 2):
        try:
            await database.write(_create_all)
            return
        except DBAPIError as exc:
            if attempt == 2 or not _is_already_exists(exc):
                raise
            log.info("schema creation raced with another process; retrying: %s", exc)
