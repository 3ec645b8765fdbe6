"""`refuse()` really closes the listening socket and `accept()` re-listens on the
same port; the HTTP control API can do a timed refuse."""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.sim import SimCluster, SimSpec

AUTH = {"authorization": "Bearer sim-key"}


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster([SimSpec("flaky", "openai")]) as sims:
        yield sims


def test_refuse_gives_connection_refused_then_accept_serves_on_the_same_port(
    cluster: SimCluster,
) -> None:
    server = cluster["flaky"]
    url = cluster.endpoint("flaky") + "/models"
    port = server.port
    with httpx.Client(timeout=2.0) as client:
        assert client.get(url, headers=AUTH).status_code == 200  # keep-alive connection pooled

        server.refuse()
        assert not server.listening
        with pytest.raises(httpx.ConnectError):
            client.get(url, headers=AUTH)

        server.accept()
        assert server.listening
        assert server.port == port
        assert client.get(url, headers=AUTH).status_code == 200


def test_accept_when_listening_and_refuse_when_refused_are_no_ops(cluster: SimCluster) -> None:
    server = cluster["flaky"]
    server.accept()
    server.refuse()
    server.refuse()
    server.accept()
    with httpx.Client(timeout=2.0) as client:
        assert client.get(cluster.endpoint("flaky") + "/models", headers=AUTH).status_code == 200


def test_refuse_drops_a_hung_request_without_a_500(
    cluster: SimCluster, caplog: pytest.LogCaptureFixture
) -> None:
    server = cluster["flaky"]
    server.set_faults(hang=True)
    url = cluster.endpoint("flaky") + "/models"
    with (
        caplog.at_level(logging.WARNING),
        httpx.Client(timeout=5.0) as client,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(client.get, url, headers=AUTH)
        while server.request_count == 0:
            time.sleep(0.005)
        server.refuse()
        with pytest.raises(httpx.RemoteProtocolError):
            pending.result(timeout=3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_control_api_refuse_is_timed(cluster: SimCluster) -> None:
    server = cluster["flaky"]
    url = cluster.endpoint("flaky") + "/models"
    with httpx.Client(timeout=2.0) as client:
        answer = client.post(server.base_url + "/_sim/refuse", json={"seconds": 0.4})
        assert answer.status_code == 202
        deadline = time.monotonic() + 2
        while server.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(httpx.ConnectError):
            client.get(url, headers=AUTH)
        while not server.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get(url, headers=AUTH).status_code == 200


def test_control_api_refuse_rejects_bad_durations(cluster: SimCluster) -> None:
    with httpx.Client(timeout=2.0) as client:
        for body in ({}, {"seconds": 0}, {"seconds": "1"}, {"seconds": True}):
            response = client.post(cluster["flaky"].base_url + "/_sim/refuse", json=body)
            assert response.status_code == 400
    assert cluster["flaky"].listening
