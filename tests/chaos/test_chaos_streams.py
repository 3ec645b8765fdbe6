"""Chaos: streams cut or stalled before and after the first content byte; no leaked connections."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.chaos.conftest import RigFactory
from tests.chaos.support import FALLBACK, PRIMARY, Rig, StreamResult

# A small pool with a short pool timeout: one leaked connection would push traffic to the fallback.
STREAM_PROVIDERS = {
    "openai": {"maxConnections": 2, "timeouts": {"pool": "500ms", "read": "300ms"}},
}
# Failures must not open the breaker here: the point is what each stream looks like.
NO_TRIP = {"breaker": {"failMax": 1000}, "minCalls": 1000}
IDLE_TIMEOUT_S = 0.3


def _assert_clean_fallback_stream(result: StreamResult) -> None:
    assert result.status == 207
    assert result.headers["x-gateway-model"] == FALLBACK
    assert result.headers["x-gateway-fallback"] == "true"
    assert result.types[-1] == "end"
    assert result.types.count("end") == 1
    assert set(result.types[:-1]) == {"token"}
    assert result.text.startswith("Hello from gemini/gemini-1.5-flash")
    assert "openai" not in result.text.replace("Hello from gemini", "")


def _assert_explicit_error_after_content(result: StreamResult) -> None:
    assert result.status == 207
    assert result.headers["x-gateway-model"] == PRIMARY
    assert result.types[-1] == "error"
    assert result.frames[-1]["done"] is True
    assert "end" not in result.types
    assert result.types.count("token") >= 1
    assert result.text.startswith("Hello from openai/gpt-4o-mini")


def _assert_nothing_leaked(gw: Rig, url: str) -> None:
    """In-flight counts back to 0, and the primary's two-connection pool still serves everyone."""
    gw.wait_idle("openai", "gemini")
    metrics = gw.metrics()
    assert metrics.value("gateway_inflight_requests") == 0
    gw.sims.reset()

    def one(i: int) -> str:
        own = gw.client()
        if i % 2:
            result = gw.stream(url, client=own)
            assert result.types[-1] == "end"
            return str(result.headers["x-gateway-model"])
        response = gw.ask(url, client=own)
        assert response.status_code == 200
        return str(response.json()["routing"]["servedModel"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        served = list(pool.map(one, range(16)))
    assert set(served) == {PRIMARY}
    assert gw.sims["openai"].request_count == 16


def _history_roles(gw: Rig, url: str) -> list[str]:
    return [m["role"] for m in gw.http.get(url).json()["messages"]]


def test_stream_cut_before_content_is_one_clean_stream_from_the_fallback(rig: RigFactory) -> None:
    gw = rig(providers=STREAM_PROVIDERS, health=NO_TRIP)
    url = gw.session()
    gw.sims["openai"].set_faults(cut_after_chunks=0)
    for _ in range(4):
        _assert_clean_fallback_stream(gw.stream(url))
    assert gw.sims["openai"].request_count == 4
    assert _history_roles(gw, url) == ["user", "assistant"] * 4
    _assert_nothing_leaked(gw, url)


def test_stream_cut_after_five_chunks_ends_with_an_error_event_never_a_silent_success(
    rig: RigFactory,
) -> None:
    gw = rig(providers=STREAM_PROVIDERS, health=NO_TRIP)
    url = gw.session()
    gw.sims["openai"].set_faults(cut_after_chunks=5)
    for _ in range(4):
        result = gw.stream(url)
        _assert_explicit_error_after_content(result)
        assert result.frames[-1]["error"]["code"] == "upstream_stream_error"
    assert gw.sims["gemini"].request_count == 0
    assert _history_roles(gw, url) == ["user"] * 4  # no truncated reply stored as an answer
    metrics = gw.metrics()
    assert (
        metrics.value("gateway_upstream_requests_total", provider="openai", outcome="stream_error")
        == 4
    )
    _assert_nothing_leaked(gw, url)


@pytest.mark.parametrize("chunks", [0, 5])
def test_stalled_stream_is_aborted_at_the_idle_timeout(rig: RigFactory, chunks: int) -> None:
    gw = rig(providers=STREAM_PROVIDERS, health=NO_TRIP)
    url = gw.session()
    gw.sims["openai"].set_faults(stall_after_chunks=chunks)
    for _ in range(2):
        result = gw.stream(url)
        if chunks == 0:
            _assert_clean_fallback_stream(result)
        else:
            _assert_explicit_error_after_content(result)
            assert result.frames[-1]["error"]["code"] == "upstream_stream_error"
        # Aborted by the 300 ms read (idle) timeout, not by the 30 s first-token or 55 s call timeout.
        assert IDLE_TIMEOUT_S <= result.elapsed_s < IDLE_TIMEOUT_S + 1.5
    _assert_nothing_leaked(gw, url)
