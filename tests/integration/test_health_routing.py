"""Live health over the simulators: breakers, recovery, SLO demotion, weights, hedging, reloads."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, new_session


class FakeClock:
    """The breakers' and statistics' clock, moved by the test (the app reads it from its thread)."""

    def __init__(self) -> None:
        self.now = 5000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


HEALTH = {
    "breaker": {"failMax": 3, "resetTimeout": "30s"},
    "minCalls": 3,
    "window": "60s",
    "failureRate": 0.9,
}
ROUTES = {
    "fast": {"primary": "openai:gpt-4o-mini", "fallbacks": ["groq:llama3-70b-8192"], "sloMs": 150},
    "ab": {
        "primary": "openai:gpt-4o-mini",
        "fallbacks": ["groq:llama3-70b-8192"],
        "weights": {"openai:gpt-4o-mini": 3, "groq:llama3-70b-8192": 1},
    },
    "hedged": {
        "primary": "openai:gpt-4o-mini",
        "fallbacks": ["groq:llama3-70b-8192"],
        "hedgeAfterMs": 100,
    },
}
AGENT = {
    "name": "health",
    "model": "openai:gpt-4o-mini",
    "config": {"fallbackModel": "gemini:flash-1.5"},
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
    clock: FakeClock,
) -> ServerThread:
    settings = settings_factory(env=sim_env, health=HEALTH, routes=ROUTES)
    return start_gateway(settings, health_clock=clock)


@pytest.fixture
def http(server: ServerThread) -> Any:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _ask(http: httpx.Client, url: str, **headers: str) -> dict[str, Any]:
    response = http.post(url, json={"role": "user", "content": "hi"}, headers=headers)
    assert response.status_code == 200, response.text
    routing: dict[str, Any] = response.json()["routing"]
    return routing


def _provider(http: httpx.Client, name: str) -> dict[str, Any]:
    rows = {p["provider"]: p for p in http.get("/health").json()["providers"]}
    return rows[name]


def test_breaker_opens_stops_traffic_probes_once_and_recovers(
    http: httpx.Client, sims: SimCluster, clock: FakeClock
) -> None:
    url = new_session(http, AGENT)
    sims["openai"].set_faults(status_always=503)
    for _ in range(3):
        assert _ask(http, url)["servedModel"] == "gemini:gemini-1.5-flash"
    assert sims["openai"].request_count == 3
    assert _provider(http, "openai")["breaker"]["state"] == "open"

    for _ in range(5):  # open: straight to the fallback, the primary is not touched
        routing = _ask(http, url)
        assert routing["reason"] == "breaker_open"
        assert routing["attempts"][0]["outcome"] == "skipped"
    assert sims["openai"].request_count == 3

    sims["openai"].clear_faults()
    clock.advance(30.5)
    routing = _ask(http, url)  # the probe
    assert routing["servedModel"] == "openai:gpt-4o-mini"
    assert sims["openai"].request_count == 4
    view = _provider(http, "openai")
    assert view["breaker"]["state"] == "closed"
    assert view["status"] == "available"
    metrics = http.get("/metrics").text
    assert 'gateway_breaker_transitions_total{provider="openai",to_state="open"} 1.0' in metrics
    assert 'gateway_breaker_transitions_total{provider="openai",to_state="closed"} 1.0' in metrics


def test_failed_probe_reopens_and_primary_stays_out(
    http: httpx.Client, sims: SimCluster, clock: FakeClock
) -> None:
    url = new_session(http, AGENT)
    sims["openai"].set_faults(status_always=503)
    for _ in range(3):
        _ask(http, url)
    clock.advance(31)
    assert _ask(http, url)["attempts"][0]["outcome"] == "server_error"  # the probe failed
    assert _provider(http, "openai")["breaker"]["state"] == "open"
    assert _provider(http, "openai")["breaker"]["resetTimeoutSeconds"] == 60.0
    for _ in range(3):
        _ask(http, url)
    assert sims["openai"].request_count == 4


def test_429_keeps_the_provider_out_for_retry_after_then_back(
    http: httpx.Client, sims: SimCluster, clock: FakeClock
) -> None:
    url = new_session(http, AGENT)
    sims["openai"].set_faults(statuses=[429], retry_after=20)
    assert _ask(http, url)["attempts"][0]["outcome"] == "rate_limited"
    assert _provider(http, "openai")["coolingSeconds"] == pytest.approx(20, abs=0.5)
    clock.advance(10)
    assert _ask(http, url)["reason"] == "cooling"
    clock.advance(10.5)
    assert _ask(http, url)["servedModel"] == "openai:gpt-4o-mini"
    assert sims["openai"].request_count == 2
    assert _provider(http, "openai")["breaker"]["state"] == "closed"


def test_primary_over_its_slo_is_demoted_to_a_faster_fallback(
    http: httpx.Client, sims: SimCluster
) -> None:
    url = new_session(http, AGENT)
    sims["openai"].set_faults(latency_ms=300)
    for _ in range(3):
        assert _ask(http, url, **{"X-Gateway-Route": "fast"})["servedModel"] == "openai:gpt-4o-mini"
    demoted = _ask(http, url, **{"X-Gateway-Route": "fast"})
    assert demoted["servedModel"] == "groq:llama3-70b-8192"
    assert demoted["reason"] == "slow"
    assert demoted["fallback"] is True
    assert sims["openai"].request_count == 3


def test_weighted_route_splits_traffic(http: httpx.Client, sims: SimCluster) -> None:
    url = new_session(http, AGENT)
    body = {"role": "user", "content": "ab", "metadata": {"taskType": "ab"}}
    served = [http.post(url, json=body).json()["routing"] for _ in range(200)]
    share = sum(r["servedModel"] == "openai:gpt-4o-mini" for r in served) / len(served)
    assert 0.63 <= share <= 0.87  # 3:1 within about four standard deviations
    assert {r["reason"] for r in served} == {"weighted"}
    assert all(r["fallback"] is False for r in served)


def test_hedging_wins_with_the_faster_candidate_and_cancels_the_other(
    http: httpx.Client, sims: SimCluster
) -> None:
    url = new_session(http, AGENT)
    sims["openai"].set_faults(latency_ms=2000)
    routing = _ask(http, url, **{"X-Gateway-Route": "hedged"})
    assert routing["servedModel"] == "groq:llama3-70b-8192"
    outcomes = {a["provider"]: a["outcome"] for a in routing["attempts"]}
    assert outcomes == {"groq": "success", "openai": "cancelled"}
    assert routing["attempts"][0]["provider"] == "openai"
    assert routing["reason"] == "slow"
    assert routing["fallback"] is True
    assert _provider(http, "openai")["breaker"]["state"] == "closed"
    assert _provider(http, "openai")["inFlight"] == 0


def test_unknown_route_is_a_400_naming_where_it_came_from(http: httpx.Client) -> None:
    url = new_session(http, AGENT)
    response = http.post(url, json={"content": "x", "metadata": {"taskType": "nope"}})
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "metadata.taskType"
    response = http.post(url, json={"content": "x"}, headers={"X-Gateway-Route": "nope"})
    assert response.json()["details"]["field"] == "header X-Gateway-Route"


def test_panic_attempt_when_every_candidate_is_open(http: httpx.Client, sims: SimCluster) -> None:
    url = new_session(http, AGENT)
    sims["openai"].set_faults(status_always=503)
    sims["gemini"].set_faults(status_always=503)
    for _ in range(3):
        assert http.post(url, json={"content": "x"}).status_code == 503
    assert _provider(http, "gemini")["breaker"]["state"] == "open"
    sims["openai"].clear_faults()
    routing = _ask(http, url)
    assert routing["reason"] == "panic"
    assert routing["servedModel"] == "openai:gpt-4o-mini"


def test_key_removal_and_restore_under_load_fails_no_client_request(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
    sims: SimCluster,
) -> None:
    env = dict(sim_env)
    server = start_gateway(
        settings_factory(env=env), settings_loader=lambda: settings_factory(env=dict(env))
    )
    stop = threading.Event()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        url = new_session(http, AGENT)

        def load() -> list[int]:
            statuses = []
            with httpx.Client(base_url=server.url, timeout=10) as own:
                while not stop.is_set():
                    statuses.append(own.post(url, json={"content": "load"}).status_code)
            return statuses

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(load) for _ in range(4)]
            for _ in range(3):
                del env["OPENAI_API_KEY"]
                assert http.post("/admin/reload").json()["providers"]["openai"] == "not-configured"
                env["OPENAI_API_KEY"] = sim_env["OPENAI_API_KEY"]
                assert http.post("/admin/reload").json()["providers"]["openai"] == "available"
            stop.set()
            statuses = [s for f in futures for s in f.result()]
    assert statuses
    assert set(statuses) == {200}
