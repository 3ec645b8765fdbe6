"""The ``store`` fixture: every store test runs on in-memory SQLite, file SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.store import SqlStore, open_store


def _sqlite_memory(tmp_path: Path) -> str:
    return "sqlite+aiosqlite://"


def _sqlite_file(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'gateway.db'}"


# Backend name -> URL factory; "postgresql" takes a fresh database of the session's real server.
BACKENDS: dict[str, Callable[[Path], str]] = {
    "sqlite-memory": _sqlite_memory,
    "sqlite-file": _sqlite_file,
}


@pytest.fixture(params=[*sorted(BACKENDS), "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    async with open_store(store_url) as opened:
        yield opened


@pytest.fixture(params=["sqlite-file", "postgresql"])
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database two stores can open at once (an in-memory SQLite is private to its store)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return BACKENDS[request.param](tmp_path)
