"""Fault injection over real HTTP: error statuses, latency, hangs, cut and stalled
streams, each observed the way an httpx client (the gateway) observes them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import httpx
import pytest

from gateway.sim import SimCluster, SimSpec

OPENAI_AUTH = {"authorization": "Bearer sim-key"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four"}]}
STREAM = {**CHAT, "stream": True}


def _post(sims: SimCluster, http: httpx.Client, body: dict[str, Any] = CHAT) -> httpx.Response:
    return http.post(sims.endpoint("openai") + "/chat/completions", headers=OPENAI_AUTH, json=body)


def _read_until_error(
    client: httpx.Client, url: str, headers: dict[str, str], body: object, error: type[Exception]
) -> list[str]:
    frames: list[str] = []
    with pytest.raises(error), client.stream("POST", url, headers=headers, json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                frames.append(line)
    return frames


def test_status_queue_is_consumed_in_order_with_retry_after(
    sims: SimCluster, http: httpx.Client
) -> None:
    sims["openai"].set_faults(statuses=[503, 503, 429], retry_after=7)

    responses = [_post(sims, http) for _ in range(4)]

    assert [r.status_code for r in responses] == [503, 503, 429, 200]
    assert [r.headers.get("retry-after") for r in responses] == ["7", "7", "7", None]
    assert responses[2].json()["error"]["code"] == "rate_limit_exceeded"
    assert responses[0].json()["error"]["type"] == "server_error"
    assert [r.status for r in sims["openai"].requests] == [503, 503, 429, 200]


def test_injected_error_uses_the_error_message_and_skips_auth(
    sims: SimCluster, http: httpx.Client
) -> None:
    sims["openai"].set_faults(statuses=[500], error_message="boom sk-secret-123")
    response = http.post(sims.endpoint("openai") + "/chat/completions", json=CHAT)

    assert response.status_code == 500
    assert response.json()["error"]["message"] == "boom sk-secret-123"
    assert "retry-after" not in response.headers


class ShapeCase(NamedTuple):
    name: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    check: Callable[[Any], bool]


SHAPE_CASES = [
    ShapeCase(
        "gemini",
        "/models/gemini-2.0-flash:generateContent",
        {"x-goog-api-key": "sim-key"},
        {"contents": [{"parts": [{"text": "hi"}]}]},
        lambda e: e["error"]["status"] == "UNAVAILABLE" and e["error"]["code"] == 503,
    ),
    ShapeCase(
        "anthropic",
        "/v1/messages",
        {"x-api-key": "sim-key", "anthropic-version": "2023-06-01"},
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        lambda e: e["type"] == "error" and e["error"]["type"] == "overloaded_error",
    ),
]


@pytest.mark.parametrize("case", SHAPE_CASES, ids=[c.name for c in SHAPE_CASES])
def test_injected_status_uses_each_providers_error_shape(
    sims: SimCluster, http: httpx.Client, case: ShapeCase
) -> None:
    sims[case.name].set_faults(statuses=[503], retry_after=2)
    url = sims.endpoint(case.name) + case.path
    response = http.post(url, headers=case.headers, json=case.body)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert case.check(response.json())
    assert http.post(url, headers=case.headers, json=case.body).status_code == 200


def test_status_always_fails_every_request_until_cleared(
    sims: SimCluster, http: httpx.Client
) -> None:
    sims["openai"].set_faults(status_always=503)
    assert [_post(sims, http).status_code for _ in range(3)] == [503, 503, 503]

    sims["openai"].set_faults(status_always=None)
    assert _post(sims, http).status_code == 200


def test_queued_statuses_come_before_status_always(sims: SimCluster, http: httpx.Client) -> None:
    sims["openai"].set_faults(statuses=[429], status_always=500)
    assert [_post(sims, http).status_code for _ in range(2)] == [429, 500]


def test_latency_delays_the_answer(sims: SimCluster, http: httpx.Client) -> None:
    sims["openai"].set_faults(latency_ms=250)
    started = time.monotonic()
    response = _post(sims, http)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.25


def test_hang_never_answers_so_the_client_times_out(sims: SimCluster) -> None:
    sims["openai"].set_faults(hang=True)
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=0.3)) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.post(sims.endpoint("openai") + "/chat/completions", headers=OPENAI_AUTH, json=CHAT)

    assert sims["openai"].requests[-1].status is None  # recorded, never answered


@pytest.mark.parametrize("frames", [0, 5])
def test_cut_after_chunks_drops_the_connection_after_exactly_n_frames(
    sims: SimCluster, http: httpx.Client, caplog: pytest.LogCaptureFixture, frames: int
) -> None:
    sims["openai"].set_faults(cut_after_chunks=frames)
    url = sims.endpoint("openai") + "/chat/completions"

    with caplog.at_level(logging.WARNING):
        received = _read_until_error(http, url, OPENAI_AUTH, STREAM, httpx.RemoteProtocolError)

    assert len(received) == frames
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    sims["openai"].clear_faults()
    assert _post(sims, http, STREAM).status_code == 200  # the server is still fine


def test_cut_applies_to_anthropic_events_too(sims: SimCluster, http: httpx.Client) -> None:
    sims["anthropic"].set_faults(cut_after_chunks=3)
    headers = {"x-api-key": "sim-key", "anthropic-version": "2023-06-01"}
    body = {
        "model": "m",
        "max_tokens": 9,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    url = sims.endpoint("anthropic") + "/v1/messages"

    received = _read_until_error(http, url, headers, body, httpx.RemoteProtocolError)

    assert [f.split('"type":"')[1].split('"')[0] for f in received] == [
        "message_start",
        "content_block_start",
        "ping",
    ]


def test_cut_does_not_affect_non_stream_requests(sims: SimCluster, http: httpx.Client) -> None:
    sims["openai"].set_faults(cut_after_chunks=0)
    assert _post(sims, http).status_code == 200


def test_stall_after_chunks_keeps_the_connection_silent(sims: SimCluster) -> None:
    sims["openai"].set_faults(stall_after_chunks=2)
    url = sims.endpoint("openai") + "/chat/completions"
    with httpx.Client(timeout=httpx.Timeout(5.0, read=0.3)) as client:
        received = _read_until_error(client, url, OPENAI_AUTH, STREAM, httpx.ReadTimeout)

    assert len(received) == 2


def test_chunk_delay_slows_the_stream(sims: SimCluster, http: httpx.Client) -> None:
    sims["openai"].set_faults(chunk_delay_ms=20)
    started = time.monotonic()
    with http.stream(
        "POST", sims.endpoint("openai") + "/chat/completions", headers=OPENAI_AUTH, json=STREAM
    ) as response:
        frames = [line for line in response.iter_lines() if line.startswith("data:")]
    elapsed = time.monotonic() - started

    assert frames[-1] == "data: [DONE]"
    assert elapsed >= 0.02 * (len(frames) - 1)


def test_stopping_the_cluster_drops_hung_requests_quickly() -> None:
    cluster = SimCluster([SimSpec("hung", "openai")])
    cluster.start()
    cluster["hung"].set_faults(hang=True)
    url = cluster.endpoint("hung") + "/models"
    with httpx.Client(timeout=5.0) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.get, url, headers=OPENAI_AUTH)
        while cluster["hung"].request_count == 0:
            time.sleep(0.005)
        started = time.monotonic()
        cluster.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.RemoteProtocolError):
            pending.result(timeout=3)
