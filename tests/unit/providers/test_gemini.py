"""The Gemini adapter: generateContent body and headers, answers and SSE streams, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock, IteratorStream

from gateway.domain.types import (
    ChatMessage,
    ChatRequest,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from gateway.errors import (
    InvalidRequestError,
    UnsupportedParameterError,
    UpstreamAuthError,
    UpstreamClientError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamInvalidResponseError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from gateway.providers.base import AdapterOptions
from gateway.providers.gemini import GeminiProvider

BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
URL = f"{BASE_URL}/models/gemini-2.0-flash:generateContent"
STREAM_URL = f"{BASE_URL}/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
def provider(client: httpx.AsyncClient, api_key: str) -> GeminiProvider:
    options = AdapterOptions(name="gemini", base_url=BASE_URL, api_key=api_key, client=client)
    return GeminiProvider(options)


def simple_request(**overrides: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": "gemini-2.0-flash",
        "messages": (ChatMessage("user", "Hi"),),
        **overrides,
    }
    return ChatRequest(**fields)  # type: ignore[arg-type]


def answer(parts: list[Any], finish: str | None = "STOP", **extra: object) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5},
        "modelVersion": "gemini-2.0-flash-001",
        **extra,
    }


def sent_json(httpx_mock: HTTPXMock) -> dict[str, object]:
    [request] = httpx_mock.get_requests()
    body: dict[str, object] = json.loads(request.content)
    return body


def frame(data: object) -> bytes:
    return f"data: {json.dumps(data)}\r\n\r\n".encode()


async def collect(provider: GeminiProvider, request: ChatRequest) -> list[StreamEvent]:
    return [event async for batch in provider.stream(request) for event in batch]


async def test_system_messages_become_system_instruction(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=answer([{"text": "ok"}]))
    messages = (
        ChatMessage("system", "Be brief."),
        ChatMessage("system", "Answer in French."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Bonjour"),
        ChatMessage("user", "Again"),
    )

    await provider.complete(simple_request(messages=messages))

    body = sent_json(httpx_mock)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nAnswer in French."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Bonjour"}]},
        {"role": "user", "parts": [{"text": "Again"}]},
    ]
    assert "generationConfig" not in body
    assert "tools" not in body


async def test_sampling_parameters_and_passthrough_go_to_generation_config(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=answer([{"text": "{}"}]))
    passthrough = {
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "response_format": {"type": "json_object"},
        "n": 1,
        "user": "user-1",
        "stream": False,
        "stream_options": {"include_usage": True},
    }
    request = simple_request(
        temperature=0.3, top_p=0.8, max_tokens=64, stop=("END", "STOP"), passthrough=passthrough
    )

    await provider.complete(request)

    assert sent_json(httpx_mock)["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "maxOutputTokens": 64,
        "stopSequences": ["END", "STOP"],
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
        "responseMimeType": "application/json",
        "candidateCount": 1,
    }


async def test_tool_calls_and_results_become_function_parts(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=answer([{"text": "21 degrees"}]))
    call = ToolCall(id="call_0", name="get_weather", arguments='{"city": "Paris"}')
    messages = (
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "Let me check.", tool_calls=(call,)),
        ChatMessage("tool", '{"temp": 21}', tool_call_id="call_0", name="get_weather"),
        ChatMessage("tool", "sunny", tool_call_id="call_0"),
    )

    await provider.complete(simple_request(messages=messages, tools=(WEATHER,)))

    body = sent_json(httpx_mock)
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"content": {"temp": 21}},
                    }
                }
            ],
        },
        # Without a name the tool message answers the call its tool_call_id points to.
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}
            ],
        },
    ]
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": dict(WEATHER.parameters),
                }
            ]
        }
    ]


async def test_tool_message_without_a_resolvable_name_is_rejected(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    messages = (ChatMessage("user", "Hi"), ChatMessage("tool", "42", tool_call_id="call_9"))

    with pytest.raises(UnsupportedParameterError) as caught:
        await provider.complete(simple_request(messages=messages))

    assert caught.value.field == "messages[1].name"
    assert httpx_mock.get_requests() == []


async def test_tool_call_arguments_that_are_not_json_are_rejected(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    call = ToolCall(id="call_0", name="get_weather", arguments="{not json")
    messages = (ChatMessage("user", "Hi"), ChatMessage("assistant", "", tool_calls=(call,)))

    with pytest.raises(InvalidRequestError) as caught:
        await provider.complete(simple_request(messages=messages))

    assert caught.value.field == "messages[1].tool_calls[0].arguments"
    assert httpx_mock.get_requests() == []


@pytest.mark.parametrize(
    ("tool_choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
async def test_tool_choice_becomes_function_calling_config(
    provider: GeminiProvider,
    httpx_mock: HTTPXMock,
    tool_choice: object,
    config: dict[str, object],
) -> None:
    httpx_mock.add_response(url=URL, json=answer([{"text": "ok"}]))

    await provider.complete(simple_request(tools=(WEATHER,), tool_choice=tool_choice))

    assert sent_json(httpx_mock)["toolConfig"] == {"functionCallingConfig": config}


async def test_key_is_sent_in_a_header_and_never_in_the_url(
    provider: GeminiProvider, httpx_mock: HTTPXMock, api_key: str
) -> None:
    httpx_mock.add_response(url=URL, method="POST", json=answer([{"text": "ok"}]))

    await provider.complete(simple_request())

    [request] = httpx_mock.get_requests()
    assert request.headers["x-goog-api-key"] == api_key
    assert "authorization" not in request.headers
    assert api_key not in str(request.url)
    assert "key" not in request.url.params


async def test_stream_calls_stream_generate_content_with_alt_sse(
    provider: GeminiProvider, httpx_mock: HTTPXMock, api_key: str
) -> None:
    httpx_mock.add_response(url=STREAM_URL, stream=IteratorStream([frame(answer([]))]))

    await collect(provider, simple_request())

    [request] = httpx_mock.get_requests()
    assert request.url.params["alt"] == "sse"
    assert api_key not in str(request.url)
    assert request.headers["x-goog-api-key"] == api_key


@pytest.mark.parametrize("key", ["logit_bias", "logprobs", "parallel_tool_calls"])
async def test_unsupported_passthrough_is_rejected_before_any_call(
    provider: GeminiProvider, httpx_mock: HTTPXMock, key: str
) -> None:
    request = simple_request(passthrough={key: True})

    with pytest.raises(UnsupportedParameterError) as caught:
        await provider.complete(request)
    with pytest.raises(UnsupportedParameterError):
        await collect(provider, request)

    assert caught.value.field == key
    assert key in str(caught.value)
    assert "gemini" in str(caught.value)
    assert httpx_mock.get_requests() == []


async def test_complete_translates_text_model_finish_and_usage(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    parts = [{"text": "thinking...", "thought": True}, {"text": "Hello "}, {"text": "there"}]
    httpx_mock.add_response(url=URL, json=answer(parts))

    result = await provider.complete(simple_request())

    assert result.content == "Hello there"
    assert result.model == "gemini-2.0-flash-001"
    assert result.finish_reason == "stop"
    assert result.tool_calls == ()
    assert result.usage == Usage(prompt_tokens=12, completion_tokens=5)


async def test_function_call_parts_become_tool_calls(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    parts = [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
    ]
    httpx_mock.add_response(url=URL, json=answer(parts, modelVersion=None))

    result = await provider.complete(simple_request(tools=(WEATHER,)))

    assert result.finish_reason == "tool_calls"
    assert result.model == "gemini-2.0-flash"
    assert [(c.id, c.name) for c in result.tool_calls] == [
        ("call_0", "get_weather"),
        ("call_1", "get_weather"),
    ]
    assert [json.loads(c.arguments) for c in result.tool_calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]


@pytest.mark.parametrize(
    ("wire_reason", "finish_reason"),
    [
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
    ],
)
async def test_finish_reasons_are_translated(
    provider: GeminiProvider, httpx_mock: HTTPXMock, wire_reason: str, finish_reason: str
) -> None:
    httpx_mock.add_response(url=URL, json=answer([{"text": "x"}], finish=wire_reason))

    result = await provider.complete(simple_request())

    assert result.finish_reason == finish_reason


async def test_blocked_prompt_is_an_empty_content_filtered_answer(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    body = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8},
        "modelVersion": "gemini-2.0-flash-001",
    }
    httpx_mock.add_response(url=URL, json=body)

    result = await provider.complete(simple_request())

    assert result.content == ""
    assert result.finish_reason == "content_filter"
    assert result.usage == Usage(prompt_tokens=8)


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"candidates": []}',
        b'{"candidates": [{"content": {"parts": "text"}}]}',
        b'{"candidates": [{"content": {"parts": [{"functionCall": "x"}]}}]}',
        b"[1, 2]",
    ],
)
async def test_garbled_answers_are_invalid_responses(
    provider: GeminiProvider, httpx_mock: HTTPXMock, body: bytes
) -> None:
    httpx_mock.add_response(url=URL, content=body)

    with pytest.raises(UpstreamInvalidResponseError):
        await provider.complete(simple_request())


async def test_stream_yields_text_tool_call_deltas_finish_and_usage(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    usage_so_far = {"promptTokenCount": 9, "totalTokenCount": 9}
    body = b"".join(
        [
            frame(answer([{"text": "Hel"}], finish=None, usageMetadata=usage_so_far)),
            frame(answer([{"text": "lo"}], finish=None, usageMetadata=usage_so_far)),
            frame(
                answer(
                    [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
                    usageMetadata={"promptTokenCount": 9, "candidatesTokenCount": 12},
                )
            ),
        ]
    )
    pieces = [body[i : i + 50] for i in range(0, len(body), 50)]
    httpx_mock.add_response(url=STREAM_URL, stream=IteratorStream(pieces))

    events = await collect(provider, simple_request(tools=(WEATHER,)))

    arguments = json.dumps({"city": "Paris"})
    assert events == [
        StreamEvent(delta="Hel"),
        StreamEvent(delta="lo"),
        StreamEvent(
            tool_calls=(ToolCallDelta(0, id="call_0", name="get_weather", arguments=arguments),),
            finish_reason="tool_calls",
            usage=Usage(prompt_tokens=9, completion_tokens=12),
        ),
    ]


async def test_stream_reports_usage_again_when_a_frame_after_the_finish_changes_it(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    final_usage = {"promptTokenCount": 9, "candidatesTokenCount": 3}
    frames = [
        frame(answer([{"text": "Hi"}], usageMetadata={"promptTokenCount": 9})),
        frame({"usageMetadata": final_usage}),
        frame({"usageMetadata": final_usage}),
    ]
    httpx_mock.add_response(url=STREAM_URL, stream=IteratorStream(frames))

    events = await collect(provider, simple_request())

    assert events == [
        StreamEvent(delta="Hi", finish_reason="stop", usage=Usage(prompt_tokens=9)),
        StreamEvent(usage=Usage(prompt_tokens=9, completion_tokens=3)),
    ]


async def test_stream_of_a_blocked_prompt_finishes_with_content_filter(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    blocked = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}
    httpx_mock.add_response(url=STREAM_URL, stream=IteratorStream([frame(blocked)]))

    events = await collect(provider, simple_request())

    assert events == [StreamEvent(finish_reason="content_filter")]


async def test_stream_error_frame_is_a_stream_error(
    provider: GeminiProvider,
    httpx_mock: HTTPXMock,
    api_key: str,
    assert_no_key_leak: Callable[[str], None],
) -> None:
    error = {"error": {"code": 500, "message": f"internal for {api_key}", "status": "INTERNAL"}}
    stream = IteratorStream([frame(answer([{"text": "Hi"}], finish=None)), frame(error)])
    httpx_mock.add_response(url=STREAM_URL, stream=stream)

    with pytest.raises(UpstreamStreamError) as caught:
        await collect(provider, simple_request())

    assert_no_key_leak(str(caught.value))


async def test_stream_ending_without_a_finish_reason_is_a_stream_error(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    stream = IteratorStream([frame(answer([{"text": "Hi"}], finish=None))])
    httpx_mock.add_response(url=STREAM_URL, stream=stream)

    with pytest.raises(UpstreamStreamError):
        await collect(provider, simple_request())


async def test_stream_cut_mid_body_is_a_stream_error(
    provider: GeminiProvider,
    httpx_mock: HTTPXMock,
    cut_stream: Callable[[list[bytes]], IteratorStream],
) -> None:
    first = frame(answer([{"text": "Hel"}], finish=None))
    httpx_mock.add_response(url=STREAM_URL, stream=cut_stream([first]))
    received: list[StreamEvent] = []

    async def consume() -> None:
        async for batch in provider.stream(simple_request()):
            received.extend(batch)

    with pytest.raises(UpstreamStreamError):
        await consume()

    assert received == [StreamEvent(delta="Hel")]


def google_error(code: int, message: str, status: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "status": status}}


@pytest.mark.parametrize(
    ("status", "headers", "error_type"),
    [
        (429, {"retry-after": "7"}, UpstreamRateLimitedError),
        (401, {}, UpstreamAuthError),
        (403, {}, UpstreamAuthError),
        (503, {}, UpstreamServerError),
        (529, {}, UpstreamServerError),
    ],
)
async def test_error_statuses_map_to_upstream_errors(
    provider: GeminiProvider,
    httpx_mock: HTTPXMock,
    status: int,
    headers: dict[str, str],
    error_type: type[UpstreamError],
) -> None:
    body = google_error(status, "The model is overloaded.", "UNAVAILABLE")
    httpx_mock.add_response(url=URL, status_code=status, headers=headers, json=body)

    with pytest.raises(error_type) as caught:
        await provider.complete(simple_request())

    assert caught.value.upstream_status == status
    assert caught.value.failover is True


async def test_rate_limit_carries_retry_after(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    body = google_error(429, "Resource has been exhausted", "RESOURCE_EXHAUSTED")
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after": "7"}, json=body)

    with pytest.raises(UpstreamRateLimitedError) as caught:
        await provider.complete(simple_request())

    assert caught.value.retry_after == 7


async def test_context_length_error_goes_back_to_the_client_without_failover(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    message = "The input token count (1200000) exceeds the maximum number of tokens allowed."
    body = google_error(400, message, "INVALID_ARGUMENT")
    httpx_mock.add_response(url=URL, status_code=400, json=body)

    with pytest.raises(UpstreamClientError) as caught:
        await provider.complete(simple_request())

    assert caught.value.upstream_status == 400
    assert caught.value.failover is False
    assert "exceeds the maximum number of tokens" in str(caught.value)


async def test_stream_error_status_is_raised_before_any_event(
    provider: GeminiProvider, httpx_mock: HTTPXMock
) -> None:
    body = google_error(503, "The model is overloaded.", "UNAVAILABLE")
    httpx_mock.add_response(url=STREAM_URL, status_code=503, json=body)

    with pytest.raises(UpstreamServerError):
        await collect(provider, simple_request())


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        (httpx.ConnectError("connection refused"), UpstreamConnectError),
        (httpx.ReadTimeout("read timed out"), UpstreamTimeoutError),
    ],
)
async def test_transport_failures_map_to_upstream_errors(
    provider: GeminiProvider,
    httpx_mock: HTTPXMock,
    exception: Exception,
    error_type: type[UpstreamError],
) -> None:
    httpx_mock.add_exception(exception, url=URL)

    with pytest.raises(error_type):
        await provider.complete(simple_request())


async def test_error_body_echoing_the_key_is_redacted(
    provider: GeminiProvider,
    httpx_mock: HTTPXMock,
    api_key: str,
    assert_no_key_leak: Callable[[str], None],
) -> None:
    message = f"API key not valid: {api_key} (prefix {api_key[:10]}, tail {api_key[-8:]})"
    httpx_mock.add_response(
        url=URL, status_code=400, json=google_error(400, message, "INVALID_ARGUMENT")
    )

    with pytest.raises(UpstreamClientError) as caught:
        await provider.complete(simple_request())

    assert_no_key_leak(str(caught.value))
    assert "API key not valid" in str(caught.value)
