"""Shared fixtures: a settings factory, so every test builds its own app from explicit settings."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import parse_settings
from gateway.config.settings import Settings
from tests.support.postgres import PostgresServer, PostgresUnavailable

SettingsFactory = Callable[..., Settings]


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def settings_factory(tmp_path: Path) -> SettingsFactory:
    """``settings_factory(env={...}, **yaml_sections)`` -> Settings with a per-test SQLite file."""

    def build(env: Mapping[str, str] | None = None, **sections: Any) -> Settings:
        raw = _merge(
            {
                "logging": {"level": "info", "format": "json"},
                "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
                "models": {"gemini:flash-1.5": "gemini:gemini-1.5-flash"},
            },
            sections,
        )
        return parse_settings(raw, dict(env or {}), source="test.yaml")

    return build


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (each test takes a fresh database from it)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        if os.environ.get("GATEWAY_ALLOW_MISSING_POSTGRES") == "1":
            pytest.skip(str(exc))
        raise
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()
