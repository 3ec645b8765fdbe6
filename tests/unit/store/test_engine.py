"""The database runner under the store: units of work, errors, and SQLite's own thread."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from gateway.store.engine import create_database, create_schema, parse_url


def test_urls_get_the_driver_the_store_runs_on() -> None:
    assert parse_url("sqlite+aiosqlite:///./data/g.db").drivername == "sqlite+pysqlite"
    assert parse_url("sqlite://").drivername == "sqlite+pysqlite"
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert parse_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"


async def test_a_failed_unit_of_work_is_rolled_back_and_the_next_one_works(
    store_url: str,
) -> None:
    database = create_database(parse_url(store_url))
    try:
        await create_schema(database)

        def insert_then_fail(conn: Connection) -> None:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t (x) VALUES (1)"))
            conn.execute(text("SELECT * FROM no_such_table"))

        await database.write(
            lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        )
        with pytest.raises((OperationalError, ProgrammingError)):
            await database.write(insert_then_fail)
        with pytest.raises((OperationalError, ProgrammingError)):
            await database.read(lambda conn: conn.execute(text("SELECT * FROM no_such_table")))
        assert (
            await database.read(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar())
            == 0
        )

        await database.write(lambda conn: conn.execute(text("INSERT INTO t (x) VALUES (1)")))
        with pytest.raises(IntegrityError):
            await database.write(lambda conn: conn.execute(text("INSERT INTO t (x) VALUES (1)")))
        assert (
            await database.read(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar())
            == 1
        )
    finally:
        await database.close()


async def test_sqlite_runs_every_unit_of_work_on_one_thread_off_the_event_loop() -> None:
    database = create_database(parse_url("sqlite+aiosqlite://"))
    try:
        threads = {await database.read(lambda conn: threading.get_ident()) for _ in range(5)}
        threads.add(await database.write(lambda conn: threading.get_ident()))
    finally:
        await database.close()

    assert len(threads) == 1
    assert threading.get_ident() not in threads
