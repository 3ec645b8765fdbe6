"""The OpenAI-compatible adapter: body and headers sent, answers and streams read, errors mapped."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

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
from gateway.providers.openai_compat import OpenAICompatProvider, event_from_chunk

BASE_URL = "https://api.openai.test/v1"
URL = f"{BASE_URL}/chat/completions"
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@pytest.fixture
def provider(client: httpx.AsyncClient, api_key: str) -> OpenAICompatProvider:
    options = AdapterOptions(name="openai", base_url=BASE_URL, api_key=api_key, client=client)
    return OpenAICompatProvider(options)


def simple_request(**overrides: object) -> ChatRequest:
    fields: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": (ChatMessage("user", "Hi"),),
        **overrides,
    }
    return ChatRequest(**fields)  # type: ignore[arg-type]


def completion(**overrides: object) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        **overrides,
    }


def sent_json(httpx_mock: HTTPXMock) -> dict[str, object]:
    [request] = httpx_mock.get_requests()
    body: dict[str, object] = json.loads(request.content)
    return body


async def collect(provider: OpenAICompatProvider, request: ChatRequest) -> list[StreamEvent]:
    return [event async for batch in provider.stream(request) for event in batch]


async def test_request_carries_messages_parameters_tools_and_passthrough(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, method="POST", json=completion())
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}')
    request = ChatRequest(
        model="gpt-4o-mini",
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Weather in Paris?"),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", '{"temp": 21}', tool_call_id="call_1", name="get_weather"),
        ),
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=("END",),
        tools=(WEATHER,),
        tool_choice="auto",
        passthrough={"seed": 7, "logprobs": True, "stream": True},
    )

    await provider.complete(request)

    assert sent_json(httpx_mock) == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "content": '{"temp": 21}',
                "tool_call_id": "call_1",
                "name": "get_weather",
            },
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parameters": dict(WEATHER.parameters),
                },
            }
        ],
        "tool_choice": "auto",
        "seed": 7,
        "logprobs": True,
    }


async def test_key_is_a_bearer_header_and_never_in_the_url(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock, api_key: str
) -> None:
    httpx_mock.add_response(url=URL, json=completion())

    await provider.complete(simple_request())

    [request] = httpx_mock.get_requests()
    assert request.headers["authorization"] == f"Bearer {api_key}"
    assert request.headers["content-type"] == "application/json"
    assert api_key not in str(request.url)


async def test_stream_request_sets_stream_and_asks_for_usage(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, stream=IteratorStream([b"data: [DONE]\n\n"]))

    await collect(provider, simple_request(passthrough={"stream_options": {"x": 1}}))

    body = sent_json(httpx_mock)
    assert body["stream"] is True
    assert body["stream_options"] == {"x": 1, "include_usage": True}


async def test_complete_translates_content_model_finish_and_usage(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=completion())

    result = await provider.complete(simple_request())

    assert result.content == "Hello!"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.finish_reason == "stop"
    assert result.tool_calls == ()
    assert result.usage == Usage(prompt_tokens=11, completion_tokens=3)


async def test_complete_translates_tool_calls(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
    httpx_mock.add_response(url=URL, json=completion(choices=[choice]))

    result = await provider.complete(simple_request(tools=(WEATHER,)))

    assert result.content == ""
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == (ToolCall("call_abc", "get_weather", '{"city":"Paris"}'),)


@pytest.mark.parametrize(
    ("wire_reason", "finish_reason"),
    [("length", "length"), ("content_filter", "content_filter"), ("function_call", "tool_calls")],
)
async def test_finish_reasons_are_translated(
    provider: OpenAICompatProvider,
    httpx_mock: HTTPXMock,
    wire_reason: str,
    finish_reason: str,
) -> None:
    choice = {"index": 0, "message": {"content": "x"}, "finish_reason": wire_reason}
    httpx_mock.add_response(url=URL, json=completion(choices=[choice]))

    result = await provider.complete(simple_request())

    assert result.finish_reason == finish_reason


async def test_missing_model_falls_back_to_the_requested_one(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json=completion(model=None))

    result = await provider.complete(simple_request())

    assert result.model == "gpt-4o-mini"


def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
    frame = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(frame)}\n\n".encode()


async def test_stream_yields_text_tool_call_deltas_finish_and_usage(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    first_call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    usage_frame = {
        "id": "chatcmpl-1",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
    body = b"".join(
        [
            b": keep-alive comment\n\n",
            chunk({"role": "assistant", "content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({"tool_calls": [first_call]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({}, "tool_calls"),
            f"data: {json.dumps(usage_frame)}\n\n".encode(),
            b"data: [DONE]\n\n",
        ]
    )
    # Chunk boundaries fall inside lines: the adapter must reassemble them.
    pieces = [body[i : i + 37] for i in range(0, len(body), 37)]
    httpx_mock.add_response(url=URL, stream=IteratorStream(pieces))

    events = await collect(provider, simple_request())

    assert events == [
        StreamEvent(delta="Hel"),
        StreamEvent(delta="lo"),
        StreamEvent(tool_calls=(ToolCallDelta(0, id="call_1", name="get_weather"),)),
        StreamEvent(tool_calls=(ToolCallDelta(0, arguments='{"city":'),)),
        StreamEvent(tool_calls=(ToolCallDelta(0, arguments='"Paris"}'),)),
        StreamEvent(finish_reason="tool_calls"),
        StreamEvent(usage=Usage(prompt_tokens=9, completion_tokens=4)),
    ]


async def test_stream_batches_are_the_chunks_of_one_read(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    reads = [
        chunk({"content": "a"}),
        chunk({"content": "b"}) + chunk({"content": "c"}),
        chunk({}, "stop") + b"data: [DONE]\n\n" + chunk({"content": "after the end"}),
    ]
    httpx_mock.add_response(url=URL, stream=IteratorStream(reads))

    batches = [batch async for batch in provider.stream(simple_request())]

    assert batches == [
        (StreamEvent(delta="a"),),
        (StreamEvent(delta="b"), StreamEvent(delta="c")),
        (StreamEvent(finish_reason="stop"),),
    ]


async def test_a_bad_chunk_ends_the_stream_after_the_chunks_read_with_it(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    reads = [chunk({"content": "a"}) + b"data: {not json\n\n" + chunk({"content": "b"})]
    httpx_mock.add_response(url=URL, stream=IteratorStream(reads))
    received: list[StreamEvent] = []

    with pytest.raises(UpstreamInvalidResponseError):
        async for batch in provider.stream(simple_request()):
            received.extend(batch)

    assert received == [StreamEvent(delta="a")]


async def test_a_last_chunk_without_its_blank_line_is_still_relayed(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    reads = [chunk({"content": "a"}), chunk({}, "stop").rstrip(b"\n")]
    httpx_mock.add_response(url=URL, stream=IteratorStream(reads))

    batches = [batch async for batch in provider.stream(simple_request())]

    assert batches == [(StreamEvent(delta="a"),), (StreamEvent(finish_reason="stop"),)]


async def test_a_bad_last_chunk_without_its_blank_line_ends_the_stream_with_an_error(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        url=URL, stream=IteratorStream([chunk({"content": "a"}), b"data: {not json"])
    )
    received: list[StreamEvent] = []

    with pytest.raises(UpstreamInvalidResponseError):
        async for batch in provider.stream(simple_request()):
            received.extend(batch)

    assert received == [StreamEvent(delta="a")]


async def test_a_transport_failure_mid_body_is_a_cut_stream(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    def reads() -> Iterator[bytes]:
        yield chunk({"content": "a"})
        raise httpx.ReadError("connection reset")

    httpx_mock.add_response(url=URL, stream=IteratorStream(reads()))
    received: list[StreamEvent] = []

    with pytest.raises(UpstreamStreamError):
        async for batch in provider.stream(simple_request()):
            received.extend(batch)

    assert received == [StreamEvent(delta="a")]


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
    provider: OpenAICompatProvider,
    httpx_mock: HTTPXMock,
    status: int,
    headers: dict[str, str],
    error_type: type[UpstreamError],
) -> None:
    body = {"error": {"message": "nope", "type": "error"}}
    httpx_mock.add_response(url=URL, status_code=status, headers=headers, json=body)

    with pytest.raises(error_type) as caught:
        await provider.complete(simple_request())

    assert caught.value.upstream_status == status
    assert caught.value.provider == "openai"
    assert caught.value.failover is True


async def test_rate_limit_carries_retry_after(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, status_code=429, headers={"retry-after": "7"}, json={})

    with pytest.raises(UpstreamRateLimitedError) as caught:
        await provider.complete(simple_request())

    assert caught.value.retry_after == 7


async def test_context_length_error_goes_back_to_the_client_without_failover(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    message = "This model's maximum context length is 128000 tokens."
    body = {"error": {"message": message, "code": "context_length_exceeded"}}
    httpx_mock.add_response(url=URL, status_code=400, json=body)

    with pytest.raises(UpstreamClientError) as caught:
        await provider.complete(simple_request())

    assert caught.value.upstream_status == 400
    assert caught.value.failover is False
    assert "maximum context length" in str(caught.value)


async def test_stream_error_status_is_raised_before_any_event(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, status_code=503, json={"error": {"message": "busy"}})

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
    provider: OpenAICompatProvider,
    httpx_mock: HTTPXMock,
    exception: Exception,
    error_type: type[UpstreamError],
) -> None:
    httpx_mock.add_exception(exception, url=URL)

    with pytest.raises(error_type):
        await provider.complete(simple_request())


async def test_garbage_json_is_an_invalid_response(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, content=b"<html>502 Bad Gateway</html>")

    with pytest.raises(UpstreamInvalidResponseError):
        await provider.complete(simple_request())


async def test_json_without_choices_is_an_invalid_response(
    provider: OpenAICompatProvider, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=URL, json={"object": "list", "data": []})

    with pytest.raises(UpstreamInvalidResponseError):
        await provider.complete(simple_request())


async def test_stream_cut_mid_body_is_a_stream_error_after_the_events_so_far(
    provider: OpenAICompatProvider,
    httpx_mock: HTTPXMock,
    cut_stream: Callable[[list[bytes]], IteratorStream],
) -> None:
    httpx_mock.add_response(url=URL, stream=cut_stream([chunk({"content": "Hel"})]))
    received: list[StreamEvent] = []

    async def consume() -> None:
        async for batch in provider.stream(simple_request()):
            received.extend(batch)

    with pytest.raises(UpstreamStreamError):
        await consume()

    assert received == [StreamEvent(delta="Hel")]


async def test_error_body_echoing_the_key_is_redacted(
    provider: OpenAICompatProvider,
    httpx_mock: HTTPXMock,
    api_key: str,
    assert_no_key_leak: Callable[[str], None],
) -> None:
    message = f"Incorrect API key provided: {api_key}. Also {api_key[3:15]} and {api_key[-9:]}"
    body = {"error": {"message": message, "code": "invalid_api_key"}}
    httpx_mock.add_response(url=URL, status_code=401, json=body)

    with pytest.raises(UpstreamAuthError) as caught:
        await provider.complete(simple_request())

    assert_no_key_leak(str(caught.value))
    assert_no_key_leak(repr(caught.value.details))
    assert "Incorrect API key provided" in str(caught.value)


def test_client_openai_params_are_sent_untouched_on_mixed_plans() -> None:
    from gateway.providers.openai_compat import request_to_wire

    params = {
        "max_completion_tokens": 50,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {}, "strict": True}}
        ],
        "temperature": 0.3,
    }
    request = ChatRequest(
        model="gpt-4o",
        messages=(ChatMessage(role="user", content="hi"),),
        temperature=0.3,
        max_tokens=50,
        passthrough={"seed": 7},
        openai_params=params,
    )
    body = request_to_wire(request, stream=False)
    assert body["max_completion_tokens"] == 50
    assert "max_tokens" not in body
    assert body["tools"][0]["function"]["strict"] is True
    assert body["seed"] == 7
    assert body["model"] == "gpt-4o"


# -- stream chunks, decoded straight into the fields the gateway reads ------------------------------


def test_chunk_envelope_fields_are_skipped_and_the_delta_read() -> None:
    raw = (
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant",'
        b'"content":"hi","refusal":null},"logprobs":null,"finish_reason":null}]}'
    )
    assert event_from_chunk("openai", raw) == StreamEvent(delta="hi")


def test_chunk_with_finish_usage_and_tool_call_deltas() -> None:
    raw = json.dumps(
        {
            "choices": [
                {
                    "delta": {
                        "content": None,
                        "tool_calls": [
                            {"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{"}},
                            "not a call",
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }
    ).encode()
    event = event_from_chunk("openai", raw)
    assert event == StreamEvent(
        delta="",
        tool_calls=(ToolCallDelta(index=0, id="t1", name="f", arguments="{"),),
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=3, completion_tokens=4),
    )


def test_chunk_with_only_usage_or_nothing() -> None:
    usage_only = b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}'
    assert event_from_chunk("openai", usage_only) == StreamEvent(usage=Usage(1, 2))
    assert event_from_chunk("openai", b'{"choices":null,"usage":"n/a"}') is None
    assert event_from_chunk("openai", b'{"choices":[{"delta":null}]}') == StreamEvent()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html>", "not valid JSON"),
        (b'"just text"', "bad stream chunk"),
        (b'{"choices":[null]}', "bad stream chunk"),
        (b'{"choices":[{"delta":{"content":["a"]}}]}', "bad stream chunk"),
        (b'{"choices":[{"finish_reason":7}]}', "bad stream chunk"),
        (b'{"choices":[],"usage":{"prompt_tokens":"many"}}', "bad stream chunk"),
    ],
)
def test_malformed_chunks_are_invalid_responses(raw: bytes, message: str) -> None:
    with pytest.raises(UpstreamInvalidResponseError, match=message):
        event_from_chunk("openai", raw)
