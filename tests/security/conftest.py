"""Security fixtures: simulators that accept only recognisable canary keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.sim.cluster import SimCluster
from tests.security.support import CANARY_SPECS


@pytest.fixture(scope="session")
def canary_cluster() -> Iterator[SimCluster]:
    with SimCluster(list(CANARY_SPECS)) as cluster:
        yield cluster


def _heal(cluster: SimCluster) -> None:
    cluster.reset()
    for server in cluster:
        if not server.listening:
            server.accept()


@pytest.fixture
def canary_sims(canary_cluster: SimCluster) -> Iterator[SimCluster]:
    """The canary simulators, with faults and request logs cleared around each test."""
    _heal(canary_cluster)
    yield canary_cluster
    _heal(canary_cluster)
