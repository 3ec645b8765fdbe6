"""Chaos: connection-level faults between the gateway and the primary, made by the TCP fault proxy."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gateway.sim.cluster import SimCluster
from gateway.sim.faultproxy import FaultProxy
from tests.chaos.conftest import RigFactory
from tests.chaos.support import FALLBACK, PRIMARY, Rig

NO_TRIP = {"breaker": {"failMax": 1000}, "minCalls": 1000}


@pytest.fixture
def proxy(sims: SimCluster) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", sims["openai"].port)) as running:
        yield running


def _behind_proxy(
    rig: RigFactory, proxy: FaultProxy, sims: SimCluster, *, connect: str, stack: str = "httptools"
) -> Rig:
    return rig(
        env_changes={"OPENAI_ENDPOINT": proxy.rewrite(sims.endpoint("openai"))},
        providers={"openai": {"timeouts": {"connect": connect}}},
        runtime={"router": {"httpClient": stack}},
        health=NO_TRIP,
    )


def _reset_after_request(proxy: FaultProxy) -> None:
    proxy.set_faults(reset_after_request=True)


# fault -> (how to inject it, the outcome the routing record must name)
FAULTS: dict[str, tuple[Callable[[FaultProxy], None], str]] = {
    "port_closed": (FaultProxy.refuse, "connect_error"),
    "backlog_full": (FaultProxy.fill_backlog, "connect_error"),
    # The provider accepted the connection and the request, then dropped it: "connection closed".
    "reset_after_request": (_reset_after_request, "server_error"),
}
STACKS = ("httptools", "aiohttp", "httpx")


def _cases() -> list[Any]:
    return [pytest.param(fault, stack) for fault in sorted(FAULTS) for stack in STACKS]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("stack", STACKS)
def test_connection_fault_fails_over_in_well_under_a_second(
    rig: RigFactory, proxy: FaultProxy, sims: SimCluster, fault: str, stack: str
) -> None:
    gw = _behind_proxy(rig, proxy, sims, connect="250ms", stack=stack)
    url = gw.session()
    assert gw.ok(url)["servedModel"] == PRIMARY  # a pooled connection through the proxy
    inject, _ = FAULTS[fault]
    inject(proxy)
    for _ in range(3):
        started = time.monotonic()
        routing = gw.ok(url)
        elapsed = time.monotonic() - started
        assert routing["servedModel"] == FALLBACK
        assert [a["outcome"] != "success" for a in routing["attempts"]] == [True, False]
        assert elapsed < 0.9  # connect timeout 250 ms, then the fallback
    assert sims["openai"].request_count == 1  # nothing got through the fault

    proxy.clear_faults()
    proxy.accept()
    assert gw.ok(url)["servedModel"] == PRIMARY


@pytest.mark.parametrize(("fault", "stack"), _cases())
def test_connection_fault_is_reported_with_its_own_outcome(
    rig: RigFactory, proxy: FaultProxy, sims: SimCluster, fault: str, stack: str
) -> None:
    gw = _behind_proxy(rig, proxy, sims, connect="250ms", stack=stack)
    url = gw.session()
    assert gw.ok(url)["servedModel"] == PRIMARY
    inject, outcome = FAULTS[fault]
    inject(proxy)
    assert gw.ok(url)["attempts"][0]["outcome"] == outcome
    metrics = gw.metrics()
    assert metrics.value("gateway_upstream_requests_total", provider="openai", outcome=outcome) == 1


@pytest.mark.parametrize("connect_s", [0.2, 0.6])
def test_full_backlog_costs_exactly_the_connect_timeout(
    rig: RigFactory, proxy: FaultProxy, sims: SimCluster, connect_s: float
) -> None:
    gw = _behind_proxy(rig, proxy, sims, connect=f"{int(connect_s * 1000)}ms")
    url = gw.session()
    proxy.fill_backlog()
    routing = gw.ok(url)
    failed = routing["attempts"][0]
    assert failed["outcome"] == "connect_error"
    # Bounded by providers.openai.timeouts.connect, not by the read or the whole-call timeout.
    assert connect_s * 1000 <= failed["latencyMs"] < connect_s * 1000 + 250
    assert routing["servedModel"] == FALLBACK
