"""The Anthropic adapter: Messages API body and headers, answers and typed SSE streams, errors."""

from __future__ import annotations

import json
from collections.abc import Callable

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
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import AdapterOptions

BASE_URL = "https://api.anthropic.com"
URL = f"{BASE_URL}/v1/messages"
MODEL = "claude-sonnet-4-5"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
def provider(client: httpx.AsyncClient, api_key: str) -> AnthropicProvider:
    options = AdapterOptions(name="anthropic", base_url=BASE_URL, api_key=api_key, client=client)
    return AnthropicProvider(options)


def simple_request(**overrides: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": MODEL,
        "messages": (ChatMessage("user", "Hi"),),
        **overrides,
    }
    return ChatRequest(**fields)  # type: ignore[arg-type]


def message(content: list[object], stop: str = "end_turn", **extra: object) -> dict[str, object]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 6},
        **extra,
    }


def sent_json(httpx_mock: HTTPXMock) -> dict[str, object]:
    [request] = httpx_mock.get_requests()
    body: dict[str, object] = json.loads(request.content)
    return body


def event(kind: str, **data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def message_start(input_tokens: int = 25) -> bytes:
    usage = {"input_tokens": input_tokens, "output_tokens": 1}
    return event("message_start", message=message([], stop="", usage=usage))


async def collect(provider: AnthropicProvider, request: ChatRequest) -> list[StreamEvent]:
    return [event async for batch in provider.stream(request) for event in batch]


async def test_system_messages_become_the_system_string(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=message([{"type": "text", "text": "ok"}]))
    messages = (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("system", "Answer in French."),
    )

    await provider.complete(simple_request(messages=messages))

    body = sent_json(httpx_mock)
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


async def test_max_tokens_defaults_when_the_request_has_none(
    client: httpx.AsyncClient, api_key: str, httpx_mock: HTTPXMock
) -> None:
    options = AdapterOptions(name="anthropic", base_url=BASE_URL, api_key=api_key, client=client)
    provider = AnthropicProvider(options, default_max_tokens=1234)
    httpx_mock.add_response(url=URL, json=message([]))

    await provider.complete(simple_request())

    body = sent_json(httpx_mock)
    assert body["max_tokens"] == 1234
    assert body["model"] == MODEL
    assert "stream" not in body


async def test_sampling_parameters_stop_and_user_are_translated(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=message([]))
    passthrough = {"user": "user-1", "stream": False, "stream_options": {}, "n": 1}
    request = simple_request(
        temperature=0.4, top_p=0.9, max_tokens=99, stop=("END",), passthrough=passthrough
    )

    await provider.complete(request)

    body = sent_json(httpx_mock)
    assert body["temperature"] == 0.4
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 99
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "user-1"}
    assert "n" not in body


async def test_tools_and_tool_turns_become_content_blocks_with_merged_roles(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=message([{"type": "text", "text": "ok"}]))
    calls = (
        ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCall(id="toolu_2", name="get_weather", arguments='{"city": "Rome"}'),
    )
    messages = (
        ChatMessage("user", "Weather?"),
        ChatMessage("user", "In Paris and Rome."),
        ChatMessage("assistant", "Checking.", tool_calls=calls),
        ChatMessage("tool", '{"temp": 21}', tool_call_id="toolu_1"),
        ChatMessage("tool", '{"temp": 25}', tool_call_id="toolu_2"),
        ChatMessage("user", "Thanks"),
    )

    await provider.complete(simple_request(messages=messages, tools=(WEATHER,)))

    body = sent_json(httpx_mock)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "text", "text": "In Paris and Rome."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp": 21}'},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"temp": 25}'},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather",
            "input_schema": dict(WEATHER.parameters),
        }
    ]


@pytest.mark.parametrize(
    ("tool_choice", "wire"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
async def test_tool_choice_is_translated(
    provider: AnthropicProvider,
    httpx_mock: HTTPXMock,
    tool_choice: object,
    wire: dict[str, object],
) -> None:
    httpx_mock.add_response(url=URL, json=message([]))

    await provider.complete(simple_request(tools=(WEATHER,), tool_choice=tool_choice))

    assert sent_json(httpx_mock)["tool_choice"] == wire


async def test_key_and_version_headers_are_sent_and_the_key_is_not_in_the_url(
    provider: AnthropicProvider, httpx_mock: HTTPXMock, api_key: str
) -> None:
    httpx_mock.add_response(url=URL, method="POST", json=message([]))

    await provider.complete(simple_request())

    [request] = httpx_mock.get_requests()
    assert request.headers["x-api-key"] == api_key
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert api_key not in str(request.url)


@pytest.mark.parametrize(
    "key",
    [
        "seed",
        "response_format",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "logit_bias",
    ],
)
async def test_unsupported_passthrough_is_rejected_before_any_call(
    provider: AnthropicProvider, httpx_mock: HTTPXMock, key: str
) -> None:
    request = simple_request(passthrough={key: 3})

    with pytest.raises(UnsupportedParameterError) as caught:
        await provider.complete(request)
    with pytest.raises(UnsupportedParameterError):
        await collect(provider, request)

    assert caught.value.field == key
    assert f"'{key}'" in str(caught.value)
    assert httpx_mock.get_requests() == []


async def test_complete_translates_text_tool_calls_finish_usage_and_model(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    content = [
        {"type": "text", "text": "Let me "},
        {"type": "text", "text": "check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    httpx_mock.add_response(url=URL, json=message(content, stop="tool_use"))

    result = await provider.complete(simple_request(tools=(WEATHER,)))

    assert result.content == "Let me check."
    assert result.model == "claude-sonnet-4-5-20250929"
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (ToolCall("toolu_1", "get_weather", json.dumps({"city": "Paris"})),)
    assert result.usage == Usage(prompt_tokens=20, completion_tokens=6)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
async def test_stop_reasons_are_translated(
    provider: AnthropicProvider, httpx_mock: HTTPXMock, stop_reason: str, finish_reason: str
) -> None:
    httpx_mock.add_response(
        url=URL, json=message([{"type": "text", "text": "x"}], stop=stop_reason)
    )

    result = await provider.complete(simple_request())

    assert result.finish_reason == finish_reason


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b'{"type": "message"}', b'{"content": [{"type": "text"}]}', b"[]"],
)
async def test_garbled_answers_are_invalid_responses(
    provider: AnthropicProvider, httpx_mock: HTTPXMock, body: bytes
) -> None:
    httpx_mock.add_response(url=URL, content=body)

    with pytest.raises(UpstreamInvalidResponseError):
        await provider.complete(simple_request())


async def test_stream_yields_text_tool_call_deltas_finish_and_usage(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    tool_block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    body = b"".join(
        [
            message_start(input_tokens=25),
            event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
            event("ping"),
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"}),
            event("content_block_delta", index=0, delta={"type": "text_delta", "text": "lo"}),
            event("content_block_stop", index=0),
            event("content_block_start", index=1, content_block=tool_block),
            event(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": ""},
            ),
            event(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": '{"city":'},
            ),
            event(
                "content_block_delta",
                index=1,
                delta={"type": "input_json_delta", "partial_json": ' "Paris"}'},
            ),
            event("content_block_stop", index=1),
            event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 42}),
            event("message_stop"),
        ]
    )
    pieces = [body[i : i + 64] for i in range(0, len(body), 64)]
    httpx_mock.add_response(url=URL, stream=IteratorStream(pieces))

    events = await collect(provider, simple_request(tools=(WEATHER,)))

    assert events == [
        StreamEvent(delta="Hel"),
        StreamEvent(delta="lo"),
        StreamEvent(tool_calls=(ToolCallDelta(0, id="toolu_1", name="get_weather"),)),
        StreamEvent(tool_calls=(ToolCallDelta(0, arguments='{"city":'),)),
        StreamEvent(tool_calls=(ToolCallDelta(0, arguments=' "Paris"}'),)),
        StreamEvent(
            finish_reason="tool_calls", usage=Usage(prompt_tokens=25, completion_tokens=42)
        ),
    ]
    assert sent_json(httpx_mock)["stream"] is True


async def test_stream_error_event_is_a_stream_error_without_the_key(
    provider: AnthropicProvider,
    httpx_mock: HTTPXMock,
    api_key: str,
    assert_no_key_leak: Callable[[str], None],
) -> None:
    error = {"type": "overloaded_error", "message": f"Overloaded ({api_key})"}
    body = [message_start(), event("error", error=error)]
    httpx_mock.add_response(url=URL, stream=IteratorStream(body))

    with pytest.raises(UpstreamStreamError) as caught:
        await collect(provider, simple_request())

    assert "overloaded_error" in str(caught.value)
    assert_no_key_leak(str(caught.value))


async def test_stream_ending_before_message_stop_is_a_stream_error(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    text = event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hi"})
    httpx_mock.add_response(url=URL, stream=IteratorStream([message_start(), text]))

    with pytest.raises(UpstreamStreamError):
        await collect(provider, simple_request())


async def test_stream_cut_mid_body_is_a_stream_error(
    provider: AnthropicProvider,
    httpx_mock: HTTPXMock,
    cut_stream: Callable[[list[bytes]], IteratorStream],
) -> None:
    text = event("content_block_delta", index=0, delta={"type": "text_delta", "text": "Hel"})
    httpx_mock.add_response(url=URL, stream=cut_stream([message_start(), text]))
    received: list[StreamEvent] = []

    async def consume() -> None:
        async for batch in provider.stream(simple_request()):
            received.extend(batch)

    with pytest.raises(UpstreamStreamError):
        await consume()

    assert received == [StreamEvent(delta="Hel")]


def anthropic_error(kind: str, text: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": kind, "message": text}}


@pytest.mark.parametrize(
    ("status", "headers", "error_type"),
    [
        (429, {"retry-after": "7"}, UpstreamRateLimitedError),
        (401, {}, UpstreamAuthError),
        (503, {}, UpstreamServerError),
        (529, {}, UpstreamServerError),
    ],
)
async def test_error_statuses_map_to_upstream_errors(
    provider: AnthropicProvider,
    httpx_mock: HTTPXMock,
    status: int,
    headers: dict[str, str],
    error_type: type[UpstreamError],
) -> None:
    body = anthropic_error("overloaded_error", "Overloaded")
    httpx_mock.add_response(url=URL, status_code=status, headers=headers, json=body)

    with pytest.raises(error_type) as caught:
        await provider.complete(simple_request())

    assert caught.value.upstream_status == status
    assert caught.value.failover is True


async def test_rate_limit_carries_retry_after(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    body = anthropic_error("rate_limit_error", "Number of request tokens has exceeded your limit")
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after": "7"}, json=body)

    with pytest.raises(UpstreamRateLimitedError) as caught:
        await provider.complete(simple_request())

    assert caught.value.retry_after == 7


async def test_overloaded_529_while_streaming_is_a_server_error(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    body = anthropic_error("overloaded_error", "Overloaded")
    httpx_mock.add_response(url=URL, status_code=529, json=body)

    with pytest.raises(UpstreamServerError) as caught:
        await collect(provider, simple_request())

    assert caught.value.upstream_status == 529


async def test_context_length_error_goes_back_to_the_client_without_failover(
    provider: AnthropicProvider, httpx_mock: HTTPXMock
) -> None:
    text = "prompt is too long: 210000 tokens > 200000 maximum"
    httpx_mock.add_response(
        url=URL, status_code=400, json=anthropic_error("invalid_request_error", text)
    )

    with pytest.raises(UpstreamClientError) as caught:
        await provider.complete(simple_request())

    assert caught.value.upstream_status == 400
    assert caught.value.failover is False
    assert "prompt is too long" in str(caught.value)


@pytest.mark.parametrize(
    ("exception", "error_type"),
    [
        (httpx.ConnectError("connection refused"), UpstreamConnectError),
        (httpx.ReadTimeout("read timed out"), UpstreamTimeoutError),
    ],
)
async def test_transport_failures_map_to_upstream_errors(
    provider: AnthropicProvider,
    httpx_mock: HTTPXMock,
    exception: Exception,
    error_type: type[UpstreamError],
) -> None:
    httpx_mock.add_exception(exception, url=URL)

    with pytest.raises(error_type):
        await provider.complete(simple_request())


async def test_error_body_echoing_the_key_is_redacted(
    provider: AnthropicProvider,
    httpx_mock: HTTPXMock,
    api_key: str,
    assert_no_key_leak: Callable[[str], None],
) -> None:
    text = f"invalid x-api-key: {api_key} / {api_key[5:20]}"
    httpx_mock.add_response(
        url=URL, status_code=401, json=anthropic_error("authentication_error", text)
    )

    with pytest.raises(UpstreamAuthError) as caught:
        await provider.complete(simple_request())

    assert_no_key_leak(str(caught.value))
    assert "invalid x-api-key" in str(caught.value)
