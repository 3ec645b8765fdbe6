"""The TCP fault proxy in front of a simulator: each fault as an httpx client (the gateway) sees it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.sim import SimCluster
from gateway.sim.faultproxy import FaultProxy, ProxyFaults, request_complete

AUTH = {"authorization": "Bearer sim-key"}


@pytest.fixture
def proxy(sims: SimCluster) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", sims["openai"].port)) as running:
        yield running


def _models_url(proxy: FaultProxy, sims: SimCluster) -> str:
    return proxy.rewrite(sims.endpoint("openai")) + "/models"


def _client(**timeouts: float) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeouts.pop("default", 2.0), **timeouts))


def test_without_faults_the_proxy_is_transparent(proxy: FaultProxy, sims: SimCluster) -> None:
    with _client() as http:
        via_proxy = http.get(_models_url(proxy, sims), headers=AUTH)
        direct = http.get(sims.endpoint("openai") + "/models", headers=AUTH)
    assert via_proxy.status_code == 200
    assert via_proxy.json() == direct.json()
    assert proxy.accepted == 1
    assert proxy.rewrite("http://127.0.0.1:1/v1beta?x=1") == f"{proxy.url}/v1beta?x=1"


def test_connection_latency_delays_only_a_new_connection(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    proxy.set_faults(latency_ms=250)
    with _client() as http:
        started = time.monotonic()
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
        first = time.monotonic() - started
        started = time.monotonic()
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
        pooled = time.monotonic() - started
    assert first >= 0.25
    assert pooled < 0.2


def test_chunk_latency_delays_every_answer_even_on_a_pooled_connection(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    proxy.set_faults(chunk_latency_ms=200)
    with _client() as http:
        for _ in range(2):
            started = time.monotonic()
            assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
            assert time.monotonic() - started >= 0.2
    assert proxy.accepted == 1


def test_reset_after_request_is_a_connection_reset_and_nothing_is_forwarded(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    proxy.set_faults(reset_after_request=True)
    with _client() as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadError):
            http.post(
                proxy.rewrite(sims.endpoint("openai")) + "/chat/completions",
                headers=AUTH,
                json={
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "x" * 9000}],
                },
            )
        assert time.monotonic() - started < 0.5
    assert proxy.resets == 1
    assert sims["openai"].request_count == 0


def test_faults_apply_to_pooled_connections_at_their_next_request(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    with _client() as http:
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
        proxy.set_faults(reset_after_request=True)
        with pytest.raises(httpx.ReadError):
            http.get(_models_url(proxy, sims), headers=AUTH)
        proxy.clear_faults()
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
    assert proxy.faults == ProxyFaults()


def test_blackhole_accepts_and_never_answers(proxy: FaultProxy, sims: SimCluster) -> None:
    proxy.set_faults(blackhole=True)
    with _client(default=5.0, read=0.3) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            http.get(_models_url(proxy, sims), headers=AUTH)
        elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5
    assert proxy.accepted == 1
    assert sims["openai"].request_count == 0


def test_refuse_closes_the_port_and_drops_pooled_connections_then_accept_serves_again(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    port = proxy.port
    with _client() as http:
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
        proxy.refuse()
        assert proxy.state == "refusing"
        assert proxy.open_connections == 0
        with pytest.raises(httpx.ConnectError):
            http.get(_models_url(proxy, sims), headers=AUTH)
        proxy.accept()
        assert proxy.port == port
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200


def test_full_backlog_makes_connect_time_out_after_the_connect_timeout(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    proxy.fill_backlog()
    assert proxy.state == "backlog_full"
    with _client(default=5.0, connect=0.3) as http:
        started = time.monotonic()
        with pytest.raises(httpx.ConnectTimeout):
            http.get(_models_url(proxy, sims), headers=AUTH)
        elapsed = time.monotonic() - started
        assert 0.3 <= elapsed < 1.5
        proxy.accept()
        assert http.get(_models_url(proxy, sims), headers=AUTH).status_code == 200
    assert sims["openai"].request_count == 1


def test_slow_close_holds_the_client_side_open_after_the_upstream_closed(
    proxy: FaultProxy, sims: SimCluster
) -> None:
    proxy.set_faults(slow_close_ms=400)
    request = (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sim-key\r\n"
        b"Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
        sock.sendall(request)
        first = sock.recv(65536)
        answered = time.monotonic()
        while sock.recv(65536):
            pass
        closed = time.monotonic() - answered
    assert first.startswith(b"HTTP/1.1 200")
    assert closed >= 0.35


def test_upstream_down_behind_the_proxy_is_a_reset_not_a_hang(sims: SimCluster) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead_port = free.getsockname()[1]
    with (
        FaultProxy(("127.0.0.1", dead_port)) as proxy,
        _client() as http,
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        http.get(proxy.url + "/v1/models")


async def test_runs_on_the_callers_loop_with_async_controls(sims: SimCluster) -> None:
    proxy = FaultProxy(("127.0.0.1", sims["openai"].port))
    await proxy.start_async()
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            url = _models_url(proxy, sims)
            assert (await http.get(url, headers=AUTH)).status_code == 200
            await proxy.refuse_async()
            with pytest.raises(httpx.ConnectError):
                await http.get(url, headers=AUTH)
            with pytest.raises(RuntimeError, match="_async"):
                proxy.accept()  # the blocking wrapper would deadlock its own loop
            await proxy.accept_async()
            assert (await http.get(url, headers=AUTH)).status_code == 200
    finally:
        await proxy.stop_async()
    assert proxy.state == "stopped"


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", False),
        (b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nabcde", True),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
    ],
)
def test_request_complete_waits_for_headers_and_the_whole_body(data: bytes, complete: bool) -> None:
    assert request_complete(data) is complete


def test_fault_values_are_validated(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        proxy.set_faults(latency_ms=-1)
    assert proxy.set_faults(slow_close_ms=5) == ProxyFaults(slow_close_ms=5)
