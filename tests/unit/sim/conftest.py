"""Shared fixtures for the simulated-provider tests: one cluster with every wire
(plus a model-restricted and an auth-less server), reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.sim import SimCluster, SimSpec

SPECS = (
    SimSpec("openai", "openai"),
    SimSpec("gemini", "gemini"),
    SimSpec("anthropic", "anthropic"),
    SimSpec("groq", "openai", models=("llama-3.3-70b",), prefix="/openai/v1"),
    SimSpec("open", "openai", api_key=None),
)


@pytest.fixture(scope="session")
def sims() -> Iterator[SimCluster]:
    with SimCluster(SPECS) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _reset_sims(request: pytest.FixtureRequest) -> None:
    if "sims" in request.fixturenames:
        request.getfixturevalue("sims").reset()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """One client for the session: building an httpx.Client (TLS context) costs ~50 ms."""
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client
