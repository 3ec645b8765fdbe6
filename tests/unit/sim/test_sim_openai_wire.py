"""The OpenAI-wire simulator answers like the Chat Completions API."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.sim import SimCluster

AUTH = {"authorization": "Bearer sim-key"}
EXPECTED = "Hello from openai/gpt-4o-mini: you said 'hi there'"


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi there"}], **extra}


def _sse_json(http: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with http.stream("POST", url, headers=AUTH, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_plain_completion_is_a_chat_completion_object(sims: SimCluster, http: httpx.Client) -> None:
    body = _chat(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi there"},
        ]
    )
    response = http.post(sims.endpoint("openai") + "/chat/completions", headers=AUTH, json=body)

    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-4o-mini"
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": EXPECTED}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 7, "total_tokens": 11}


def test_stream_sends_role_then_word_deltas_then_stop_then_usage(
    sims: SimCluster, http: httpx.Client
) -> None:
    body = _chat(stream=True, stream_options={"include_usage": True})
    chunks = _sse_json(http, sims.endpoint("openai") + "/chat/completions", body)

    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert contents == [
        "Hello ",
        "from ",
        "openai/gpt-4o-mini: ",
        "you ",
        "said ",
        "'hi ",
        "there'",
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 7, "total_tokens": 9}


def test_stream_without_include_usage_has_no_usage_chunk(
    sims: SimCluster, http: httpx.Client
) -> None:
    chunks = _sse_json(http, sims.endpoint("openai") + "/chat/completions", _chat(stream=True))

    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == EXPECTED


def test_weather_question_with_tools_answers_with_a_tool_call(
    sims: SimCluster, http: httpx.Client
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = _chat(messages=[{"role": "user", "content": "What's the weather like?"}], tools=tools)
    response = http.post(sims.endpoint("openai") + "/chat/completions", headers=AUTH, json=body)

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_streamed_tool_call_deltas_rebuild_the_arguments(
    sims: SimCluster, http: httpx.Client
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    body = _chat(
        messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools, stream=True
    )
    chunks = _sse_json(http, sims.endpoint("openai") + "/chat/completions", body)

    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or []]
    assert {d["index"] for d in deltas} == {0}
    assert deltas[0]["function"]["name"] == "get_weather"
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"city": "Paris"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tools_without_weather_question_answer_text(sims: SimCluster, http: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    response = http.post(
        sims.endpoint("openai") + "/chat/completions", headers=AUTH, json=_chat(tools=tools)
    )
    assert response.json()["choices"][0]["message"]["content"] == EXPECTED


def test_max_tokens_truncates_with_finish_reason_length(
    sims: SimCluster, http: httpx.Client
) -> None:
    response = http.post(
        sims.endpoint("openai") + "/chat/completions", headers=AUTH, json=_chat(max_tokens=3)
    )
    data = response.json()
    assert data["choices"][0]["message"]["content"] == "Hello from openai/gpt-4o-mini: "
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3


def test_reply_override_replaces_the_echo(sims: SimCluster, http: httpx.Client) -> None:
    sims["openai"].reply = "fixed answer"
    response = http.post(sims.endpoint("openai") + "/chat/completions", headers=AUTH, json=_chat())
    assert response.json()["choices"][0]["message"]["content"] == "fixed answer"


def test_long_user_text_is_truncated_to_200_chars(sims: SimCluster, http: httpx.Client) -> None:
    body = _chat(messages=[{"role": "user", "content": "x" * 500}])
    response = http.post(sims.endpoint("openai") + "/chat/completions", headers=AUTH, json=body)
    content = response.json()["choices"][0]["message"]["content"]
    assert content == f"Hello from openai/gpt-4o-mini: you said '{'x' * 200}'"


def test_models_endpoint_lists_served_models(sims: SimCluster, http: httpx.Client) -> None:
    response = http.get(sims.endpoint("groq") + "/models", headers=AUTH)
    assert response.json() == {
        "object": "list",
        "data": [{"id": "llama-3.3-70b", "object": "model", "created": 0, "owned_by": "sim"}],
    }


def test_custom_prefix_and_unknown_model_gets_404_model_not_found(
    sims: SimCluster, http: httpx.Client
) -> None:
    assert sims.endpoint("groq").endswith("/openai/v1")
    response = http.post(sims.endpoint("groq") + "/chat/completions", headers=AUTH, json=_chat())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_wrong_key_gets_401_in_openai_error_shape(sims: SimCluster, http: httpx.Client) -> None:
    url = sims.endpoint("openai") + "/chat/completions"
    wrong = http.post(url, headers={"authorization": "Bearer nope"}, json=_chat())
    missing = http.post(url, json=_chat())

    for response in (wrong, missing):
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "code"}
        assert error["type"] == "invalid_request_error"
    assert wrong.json()["error"]["code"] == "invalid_api_key"


def test_server_without_api_key_accepts_anonymous_requests(
    sims: SimCluster, http: httpx.Client
) -> None:
    response = http.post(sims.endpoint("open") + "/chat/completions", json=_chat())
    assert response.status_code == 200
    assert "OPEN_API_KEY" not in sims.env()


def test_invalid_bodies_get_400(sims: SimCluster, http: httpx.Client) -> None:
    url = sims.endpoint("openai") + "/chat/completions"
    not_json = http.post(url, headers={**AUTH, "content-type": "application/json"}, content=b"{")
    no_messages = http.post(url, headers=AUTH, json={"model": "gpt-4o-mini"})

    for response in (not_json, no_messages):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_path_gets_404_in_openai_error_shape(sims: SimCluster, http: httpx.Client) -> None:
    response = http.post(sims.endpoint("openai") + "/completions", headers=AUTH, json=_chat())
    assert response.status_code == 404
    assert "message" in response.json()["error"]
