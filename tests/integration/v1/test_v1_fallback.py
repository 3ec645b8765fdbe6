"""Failover behind /v1: the client gets a normal answer; only the X-Gateway-* headers tell."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gateway.sim.cluster import SimCluster
from tests.integration.v1.helpers import metric_value, sse_payloads, user

GEMINI_TEXT = "Hello from gemini/gemini-1.5-flash: you said 'hi'"


def test_route_fails_over_on_a_503_storm(sdk: openai.OpenAI, sims: SimCluster) -> None:
    sims["openai"].set_faults(status_always=503)
    raw = sdk.chat.completions.with_raw_response.create(model="chat", messages=[user("hi")])
    completion = raw.parse()
    assert completion.choices[0].message.content == GEMINI_TEXT
    assert completion.model == "gemini:gemini-1.5-flash"
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-provider"] == "gemini"
    assert raw.headers["x-gateway-model"] == "gemini:gemini-1.5-flash"
    assert raw.headers["x-gateway-attempts"] == "2"
    assert sims["openai"].request_count == 1


def test_route_stream_fails_over_before_the_first_chunk(
    sdk: openai.OpenAI, sims: SimCluster
) -> None:
    sims["openai"].set_faults(status_always=503)
    raw = sdk.chat.completions.with_raw_response.create(
        model="chat", messages=[user("hi")], stream=True
    )
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-model"] == "gemini:gemini-1.5-flash"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == GEMINI_TEXT
    assert {c.model for c in chunks} == {"gemini:gemini-1.5-flash"}


def test_body_fallbacks_when_the_primary_refuses_connections(
    sdk: openai.OpenAI, sims: SimCluster
) -> None:
    sims["openai"].refuse()
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai:gpt-4o-mini",
        messages=[user("hi")],
        temperature=0.5,
        extra_body={"fallbacks": ["groq:llama3-70b"]},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from groq/llama3-70b-8192: you said 'hi'"
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-model"] == "groq:llama3-70b-8192"
    body = sims["groq"].requests[-1].body
    assert isinstance(body, dict)
    assert "fallbacks" not in body
    assert body["temperature"] == 0.5


def test_header_fallbacks_for_a_stream_cut_before_any_content(
    sdk: openai.OpenAI, sims: SimCluster
) -> None:
    sims["openai"].set_faults(cut_after_chunks=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="openai:gpt-4o-mini",
        messages=[user("hi")],
        stream=True,
        extra_headers={"X-Gateway-Fallbacks": "anthropic:haiku , groq:llama3-70b"},
    )
    assert raw.headers["x-gateway-model"] == "anthropic:claude-3-5-haiku-latest"
    assert raw.headers["x-gateway-attempts"] == "2"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from anthropic/claude-3-5-haiku-latest: you said 'hi'"
    assert sims["groq"].request_count == 0


@pytest.mark.parametrize("stream", [False, True])
def test_no_provider_left_is_503_with_retry_after(
    sdk: openai.OpenAI, sims: SimCluster, stream: bool
) -> None:
    sims["openai"].set_faults(status_always=503)
    sims["gemini"].set_faults(status_always=500)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="chat", messages=[user("hi")], stream=stream)
    error = caught.value
    assert error.status_code == 503
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.code == "no_provider_available"
    assert error.type == "api_error"
    assert sims["openai"].request_count == 1
    assert sims["gemini"].request_count == 1


def test_stream_cut_after_content_ends_with_an_error_chunk_and_no_done(
    raw: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(cut_after_chunks=4)
    body = {"model": "chat", "messages": [user("a b c d e f g")], "stream": True}
    with raw.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["x-gateway-model"] == "openai:gpt-4o-mini"
        payloads = sse_payloads(response)
    assert "[DONE]" not in payloads
    frames = [json.loads(p) for p in payloads]
    content = "".join(
        f["choices"][0]["delta"].get("content") or "" for f in frames[:-1] if f.get("choices")
    )
    assert content.startswith("Hello from openai/")
    error = frames[-1]["error"]
    assert error["code"] == "upstream_stream_error"
    assert error["type"] == "api_error"
    assert error["message"]
    assert all(f.get("choices", [{}])[0].get("finish_reason") is None for f in frames[:-1])
    assert sims["gemini"].request_count == 0  # no failover once content was sent


def test_stream_cut_after_content_raises_in_the_sdk(sdk: openai.OpenAI, sims: SimCluster) -> None:
    sims["openai"].set_faults(cut_after_chunks=4)
    received: list[str] = []
    stream = sdk.chat.completions.create(
        model="openai:gpt-4o-mini", messages=[user("a b c d e f g")], stream=True
    )
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received).startswith("Hello from")
    assert "stream" in caught.value.message


def test_client_leaving_mid_stream_releases_the_upstream(
    raw: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(chunk_delay_ms=200)
    body = {"model": "openai:gpt-4o-mini", "messages": [user("a b c d e f g")], "stream": True}
    with raw.stream("POST", "/v1/chat/completions", json=body) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    deadline = time.monotonic() + 5
    while metric_value(raw, "gateway_inflight_requests", provider="openai") != 0:
        assert time.monotonic() < deadline, "the upstream stream was not released"
        time.sleep(0.05)
    assert metric_value(raw, "gateway_upstream_requests_total", provider="openai") == 0
    sims["openai"].clear_faults()
    again = raw.post("/v1/chat/completions", json={**body, "stream": False})
    assert again.status_code == 200
