"""Chaos fixtures: shared simulators, and ``rig(**yaml_sections)`` -> a real gateway over them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster, SimSpec
from tests.chaos.support import FakeClock, Rig, ServerThread

SIM_SPECS = (
    SimSpec("openai", "openai"),
    SimSpec("gemini", "gemini"),
    SimSpec("groq", "openai"),
)

RigFactory = Callable[..., Rig]


@pytest.fixture(scope="session")
def chaos_cluster() -> Iterator[SimCluster]:
    with SimCluster(list(SIM_SPECS)) as cluster:
        yield cluster


def _heal(cluster: SimCluster) -> None:
    cluster.reset()
    for server in cluster:
        if not server.listening:
            server.accept()


@pytest.fixture
def sims(chaos_cluster: SimCluster) -> Iterator[SimCluster]:
    """The shared simulators, healthy and with empty request logs around each test."""
    _heal(chaos_cluster)
    yield chaos_cluster
    _heal(chaos_cluster)


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., ServerThread]]:
    """``start_gateway(settings, **create_app_kwargs)`` -> a running server, stopped after the test."""
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
def rig(
    settings_factory: Callable[..., Settings],
    sims: SimCluster,
    start_gateway: Callable[..., ServerThread],
) -> Iterator[RigFactory]:
    """``rig(env_changes={VAR: value or None}, **yaml_sections)``: a gateway over the simulators,
    reloadable from ``rig.env`` (``POST /admin/reload``), on a fake health clock."""
    rigs: list[Rig] = []

    def build(*, env_changes: Mapping[str, str | None] | None = None, **sections: Any) -> Rig:
        env = sims.env()
        for name, value in (env_changes or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        clock = FakeClock()

        def load() -> Settings:
            return settings_factory(env=dict(env), **sections)

        server = start_gateway(load(), settings_loader=load, health_clock=clock)
        built = Rig(server, httpx.Client(base_url=server.url, timeout=15), env, clock, sims)
        rigs.append(built)
        return built

    yield build
    for built in rigs:
        built.http.close()
        for client in built.clients:
            client.close()
