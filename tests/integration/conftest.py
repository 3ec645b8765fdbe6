"""Integration fixtures: simulated providers and a real gateway server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster, SimSpec
from tests.integration.support import ServerThread

SIM_SPECS = (
    SimSpec("openai", "openai"),
    SimSpec("gemini", "gemini"),
    SimSpec("anthropic", "anthropic"),
    SimSpec("groq", "openai"),
)


@pytest.fixture(scope="session")
def sim_cluster() -> Iterator[SimCluster]:
    with SimCluster(list(SIM_SPECS)) as cluster:
        yield cluster


@pytest.fixture
def sims(sim_cluster: SimCluster) -> Iterator[SimCluster]:
    """The shared simulators, with faults and request logs cleared around each test."""
    sim_cluster.reset()
    for server in sim_cluster:
        if not server.listening:
            server.accept()
    yield sim_cluster
    sim_cluster.reset()
    for server in sim_cluster:
        if not server.listening:
            server.accept()


GatewayFactory = Callable[..., ServerThread]


@pytest.fixture
def sim_env(sims: SimCluster) -> dict[str, str]:
    return sims.env()


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., ServerThread]]:
    """``start_gateway(settings, settings_loader=None)`` -> a running server; stopped after the test."""
    servers: list[ServerThread] = []

    def start(settings: Settings, **kwargs: Any) -> ServerThread:
        server = ServerThread(create_app(settings, **kwargs))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def gateway(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
) -> ServerThread:
    """The gateway over every simulator, all keys present."""
    return start_gateway(settings_factory(env=sim_env))


@pytest.fixture
def client(gateway: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        yield http
