"""The official ``openai`` SDK against /v1/chat/completions, over every wire format."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.sim.cluster import SimCluster
from tests.integration.v1.helpers import metric_value, sse_payloads, user

# (model as the client names it, simulator, served provider:model, upstream model id)
WIRES = [
    ("openai:gpt-4o-mini", "openai", "openai:gpt-4o-mini", "gpt-4o-mini"),
    ("gemini:flash-1.5", "gemini", "gemini:gemini-1.5-flash", "gemini-1.5-flash"),
    (
        "anthropic:haiku",
        "anthropic",
        "anthropic:claude-3-5-haiku-latest",
        "claude-3-5-haiku-latest",
    ),
    ("groq:llama3-70b", "groq", "groq:llama3-70b-8192", "llama3-70b-8192"),
    ("chat", "openai", "openai:gpt-4o-mini", "gpt-4o-mini"),  # a route name
]


@pytest.mark.parametrize("case", WIRES, ids=[w[0] for w in WIRES])
def test_plain_completion_from_each_wire(
    sdk: openai.OpenAI, sims: SimCluster, case: tuple[str, str, str, str]
) -> None:
    model, sim, served, upstream = case
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": "be brief"}, user("hi there")],
        extra_headers={"X-Request-ID": "req-42"},
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == served
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == f"Hello from {sim}/{upstream}: you said 'hi there'"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 7
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers["x-request-id"] == "req-42"
    assert raw.headers["x-gateway-provider"] == sim
    assert raw.headers["x-gateway-model"] == served
    assert raw.headers["x-gateway-fallback"] == "false"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert sims[sim].request_count == 1


@pytest.mark.parametrize(("model", "sim", "served", "upstream"), WIRES)
def test_streamed_completion_from_each_wire(
    sdk: openai.OpenAI, model: str, sim: str, served: str, upstream: str
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=model, messages=[user("one two three")], stream=True
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-gateway-model"] == served
    assert raw.headers["x-gateway-fallback"] == "false"
    chunks = list(raw.parse())
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {served}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == f"Hello from {sim}/{upstream}: you said 'one two three'"
    # Word by word, as the provider sent it: nothing was buffered into one chunk.
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 7
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


def test_stream_ends_with_done_on_the_wire(raw: httpx.Client) -> None:
    body = {"model": "gemini:flash-1.5", "messages": [user("hi")], "stream": True}
    with raw.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    assert payloads.count("[DONE]") == 1
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in chunks[-1]


@pytest.mark.parametrize(
    ("model", "sim"), [("groq:llama3-70b", "groq"), ("gemini:flash-1.5", "gemini")]
)
def test_include_usage_adds_a_final_usage_chunk(
    sdk: openai.OpenAI, raw: httpx.Client, model: str, sim: str
) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model=model,
            messages=[user("a b c")],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 8  # "Hello from x/y: you said 'a b c'"
    assert last.usage.total_tokens == last.usage.prompt_tokens + 8
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert metric_value(raw, "gateway_tokens_total", provider=sim, kind="completion") == 8


def test_usage_is_counted_for_metrics_without_include_usage(
    sdk: openai.OpenAI, raw: httpx.Client
) -> None:
    chunks = list(
        sdk.chat.completions.create(model="groq:llama3-70b", messages=[user("x")], stream=True)
    )
    assert all(c.choices for c in chunks)
    assert metric_value(raw, "gateway_tokens_total", provider="groq", kind="completion") == 6
    assert metric_value(raw, "gateway_tokens_total", provider="groq", kind="prompt") == 1


def test_openai_parameters_reach_openai_wire_unchanged(
    sdk: openai.OpenAI, sims: SimCluster
) -> None:
    strict_tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
            "strict": True,
        },
    }
    sent = {
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": "END",
        "seed": 7,
        "response_format": {"type": "json_object"},
        "user": "user-1",
        "max_completion_tokens": 50,
        "logit_bias": {"50256": -100},
        "tools": [strict_tool],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "metadata": {"team": "search"},
    }
    completion = sdk.chat.completions.create(
        model="openai:gpt-4o-mini",
        messages=[user("tell me something")],
        extra_body={"fallbacks": ["groq:llama3-70b"], "vendor_knob": {"depth": 2}},
        **sent,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content
    body = sims["openai"].requests[-1].body
    assert isinstance(body, dict)
    for key, value in sent.items():
        assert body[key] == value, key
    assert body["vendor_knob"] == {"depth": 2}
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "user", "content": "tell me something"}]
    assert "fallbacks" not in body
    assert "max_tokens" not in body
    assert "stream" not in body


def test_stream_options_are_kept_and_usage_requested_upstream(
    sdk: openai.OpenAI, sims: SimCluster
) -> None:
    list(
        sdk.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=[user("x")],
            stream=True,
            stream_options={"include_usage": False},
        )
    )
    body = sims["openai"].requests[-1].body
    assert isinstance(body, dict)
    assert body["stream"] is True
    # The gateway always asks for usage upstream (metrics); the client's choice is applied here.
    assert body["stream_options"] == {"include_usage": True}


def test_common_parameters_are_translated_for_gemini(sdk: openai.OpenAI, sims: SimCluster) -> None:
    sdk.chat.completions.create(
        model="gemini:flash-1.5",
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "part one"},
                    {"type": "text", "text": "part two"},
                ],
            },
        ],
        temperature=0.2,
        top_p=0.8,
        max_completion_tokens=40,
        stop=["END"],
        seed=3,
        response_format={"type": "json_object"},
        user="user-1",
    )
    body = sims["gemini"].requests[-1].body
    assert isinstance(body, dict)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "part one\npart two"}]}]
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.8,
        "maxOutputTokens": 40,
        "stopSequences": ["END"],
        "seed": 3,
        "responseMimeType": "application/json",
    }


def test_common_parameters_are_translated_for_anthropic(
    sdk: openai.OpenAI, sims: SimCluster
) -> None:
    sdk.chat.completions.create(
        model="anthropic:haiku",
        messages=[{"role": "developer", "content": "be brief"}, user("hi")],
        temperature=1.5,
        max_tokens=64,
        stop="END",
        user="user-1",
    )
    body = sims["anthropic"].requests[-1].body
    assert isinstance(body, dict)
    assert body["system"] == "be brief"
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 1.0
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-1"}
