"""Pure functions of the /v1 API: body parsing, request building, chunks and completions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.api.openai_answers import DONE_FRAME, ChunkBuilder, completion_json, error_frame
from gateway.api.openai_wire import header_fallbacks, parse_chat_body
from gateway.domain.types import (
    ChatMessage,
    ChatResult,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from gateway.errors import InvalidRequestError, UnsupportedParameterError


def _body(**fields: Any) -> bytes:
    body = {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return json.dumps(body).encode()


def _frame(raw: bytes) -> dict[str, Any]:
    assert raw.startswith(b"data: ")
    assert raw.endswith(b"\n\n")
    decoded: dict[str, Any] = json.loads(raw[len(b"data: ") :])
    return decoded


def _split(raw: bytes) -> list[bytes]:
    """The frames of one write."""
    return [part + b"\n\n" for part in raw.split(b"\n\n")[:-1]]


def test_parse_keeps_unknown_parameters_and_strips_the_gateways_own() -> None:
    call = parse_chat_body(
        _body(
            stream=True,
            stream_options={"include_usage": True},
            fallbacks=["groq:llama3-70b"],
            n=1,
            seed=1,
            logit_bias={"1": 2},
            temperature=0.5,
        )
    )
    assert call.model == "openai:gpt-4o-mini"
    assert call.stream is True
    assert call.include_usage is True
    assert call.fallbacks == ("groq:llama3-70b",)
    assert call.messages == (ChatMessage(role="user", content="hi"),)
    assert call.params == {
        "stream_options": {"include_usage": True},
        "seed": 1,
        "logit_bias": {"1": 2},
        "temperature": 0.5,
    }


def test_openai_wire_request_passes_parameters_verbatim() -> None:
    tools = [{"type": "function", "function": {"name": "f", "strict": True}}]
    call = parse_chat_body(_body(max_completion_tokens=9, stop="x", tools=tools, top_p=0.1))
    request = call.to_request(translate=False)
    assert request.max_tokens is None
    assert request.tools == ()
    assert request.stop == ()
    assert request.passthrough == {
        "max_completion_tokens": 9,
        "stop": "x",
        "tools": tools,
        "top_p": 0.1,
    }


def test_translated_request_uses_the_typed_fields() -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
        }
    ]
    call = parse_chat_body(
        _body(
            max_tokens=5,
            max_completion_tokens=9,
            stop="x",
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "f"}},
            temperature=0.2,
            top_p=0.1,
            user="u",
        )
    )
    request = call.to_request(translate=True)
    assert request.max_tokens == 9  # max_completion_tokens wins
    assert request.stop == ("x",)
    assert request.temperature == 0.2
    assert request.top_p == 0.1
    assert request.tools == (ToolSpec("f", "d", {"type": "object"}),)
    assert request.tool_choice == {"type": "function", "function": {"name": "f"}}
    assert request.passthrough == {"user": "u"}


def test_translation_rejects_non_function_tools() -> None:
    call = parse_chat_body(_body(tools=[{"type": "custom", "custom": {"name": "x"}}]))
    assert call.to_request(translate=False).passthrough["tools"][0]["type"] == "custom"
    with pytest.raises(UnsupportedParameterError) as caught:
        call.to_request(translate=True)
    assert caught.value.field == "tools[0].type"


def test_messages_of_every_role() -> None:
    call = parse_chat_body(
        _body(
            messages=[
                {"role": "developer", "content": "rules"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "name": "ann",
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ]
        )
    )
    assert call.messages == (
        ChatMessage(role="system", content="rules"),
        ChatMessage(role="user", content="a\nb", name="ann"),
        ChatMessage(role="assistant", content="", tool_calls=(ToolCall("c1", "f", "{}"),)),
        ChatMessage(role="tool", content="42", tool_call_id="c1"),
    )


@pytest.mark.parametrize(
    ("raw", "field", "error"),
    [
        (b"nope", "$", InvalidRequestError),
        (b'"text"', "$", InvalidRequestError),
        (_body(model=""), "model", InvalidRequestError),
        (_body(messages={}), "messages", InvalidRequestError),
        (
            _body(messages=[{"role": "function", "content": "x"}]),
            "messages[0].role",
            InvalidRequestError,
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
            "messages[0].content",
            UnsupportedParameterError,
        ),
        (
            _body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
            "messages[0].content",
            InvalidRequestError,
        ),
        (
            _body(
                messages=[
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}],
                    }
                ]
            ),
            "messages[0].tool_calls[0].function.arguments",
            InvalidRequestError,
        ),
        (
            _body(messages=[{"role": "user", "content": "x", "name": 1}]),
            "messages[0].name",
            InvalidRequestError,
        ),
        (_body(temperature=True), "temperature", InvalidRequestError),
        (_body(max_completion_tokens=1.5), "max_completion_tokens", InvalidRequestError),
        (_body(n=True), "n", UnsupportedParameterError),
        (_body(stream_options=[]), "stream_options", InvalidRequestError),
        (
            _body(stream_options={"include_usage": "yes"}),
            "stream_options.include_usage",
            InvalidRequestError,
        ),
        (_body(tool_choice=1), "tool_choice", InvalidRequestError),
        (
            _body(tools=[{"type": "function", "function": {"name": ""}}]),
            "tools[0].function.name",
            InvalidRequestError,
        ),
        (_body(fallbacks=["a"] * 9), "fallbacks", InvalidRequestError),
        (_body(fallbacks=[""]), "fallbacks", InvalidRequestError),
    ],
)
def test_invalid_bodies_name_the_field(
    raw: bytes, field: str, error: type[InvalidRequestError]
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_body(raw)
    assert type(caught.value) is error
    assert caught.value.field == field


def test_header_fallbacks() -> None:
    assert header_fallbacks(None) == ()
    assert header_fallbacks(" a:b ,, c ") == ("a:b", "c")
    with pytest.raises(InvalidRequestError):
        header_fallbacks(",".join("x" * 9))


def test_completion_json() -> None:
    text = completion_json(
        ChatResult("hello", "upstream-id", "length", usage=Usage(3, 4)), "openai:gpt-4o-mini"
    )
    assert text["object"] == "chat.completion"
    assert text["id"].startswith("chatcmpl-")
    assert text["model"] == "openai:gpt-4o-mini"
    assert text["choices"][0]["message"] == {
        "role": "assistant",
        "content": "hello",
        "refusal": None,
    }
    assert text["choices"][0]["finish_reason"] == "length"
    assert text["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    call = completion_json(
        ChatResult("", "m", "tool_calls", tool_calls=(ToolCall("c", "f", "{}"),)), "x:y"
    )
    message = call["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_chunks_of_a_stream() -> None:
    builder = ChunkBuilder("gemini:gemini-1.5-flash", include_usage=True)
    role = _frame(builder.role())
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert role["usage"] is None
    frames = [_frame(f) for f in _split(builder.frames((StreamEvent(delta="Hi"),)))]
    assert [f["choices"][0]["delta"] for f in frames] == [{"content": "Hi"}]
    tool = StreamEvent(
        tool_calls=(ToolCallDelta(0, "c1", "f", '{"a"'), ToolCallDelta(0, arguments=": 1}")),
        finish_reason="tool_calls",
        usage=Usage(2, 5),
    )
    (content,) = (_frame(f) for f in _split(builder.frames((tool,))))
    assert content["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "c1",
                "type": "function",
                "function": {"arguments": '{"a"', "name": "f"},
            },
            {"index": 0, "function": {"arguments": ": 1}"}},
        ]
    }
    # A repeated finish (Gemini repeats usage) gives no second finish chunk.
    assert builder.frames((StreamEvent(finish_reason="stop", usage=Usage(2, 6)),)) == b""
    finish, usage, done = _split(builder.end())
    # The finish was held for the end: it goes out with it, in one write.
    assert _frame(finish)["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert _frame(usage)["choices"] == []
    assert _frame(usage)["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}
    assert done == DONE_FRAME
    ids = {_frame(f)["id"] for f in (builder.role(), usage, finish)}
    assert ids == {builder.id}


def test_the_frames_of_a_batch_are_one_write_in_order() -> None:
    builder = ChunkBuilder("openai:gpt-4o-mini")
    batch = (StreamEvent(delta="a"), StreamEvent(), StreamEvent(delta="b"))
    frames = [_frame(f) for f in _split(builder.frames(batch))]
    assert [f["choices"][0]["delta"] for f in frames] == [{"content": "a"}, {"content": "b"}]


def test_a_failed_stream_still_gets_its_held_finish() -> None:
    builder = ChunkBuilder("openai:gpt-4o-mini")
    assert builder.failed() == b""
    assert builder.frames((StreamEvent(delta="x", finish_reason="length"),)) != b""
    (finish,) = _split(builder.failed())
    assert _frame(finish)["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("text", ["Hi", 'say "x"\n', "caf\u00e9 \u2603 \U0001f600", "</script>\\"])
def test_a_text_chunk_is_what_the_general_frame_encodes(text: str, include_usage: bool) -> None:
    builder = ChunkBuilder("openai:gpt-4o-mini", include_usage=include_usage)
    frame = builder.frames((StreamEvent(delta=text),))
    assert frame == builder._frame({"content": text}, None)
    assert _frame(frame)["choices"] == [
        {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
    ]


def test_text_with_tool_calls_is_one_chunk_with_both() -> None:
    builder = ChunkBuilder("openai:gpt-4o-mini")
    event = StreamEvent(delta="Let me look.", tool_calls=(ToolCallDelta(0, "c1", "f", "{}"),))
    (frame,) = _split(builder.frames((event,)))
    delta = _frame(frame)["choices"][0]["delta"]
    assert delta["content"] == "Let me look."
    assert [c["id"] for c in delta["tool_calls"]] == ["c1"]


def test_end_without_include_usage_is_only_done() -> None:
    builder = ChunkBuilder("x:y")
    assert "usage" not in _frame(builder.role())
    assert builder.end() == DONE_FRAME


def test_error_frame() -> None:
    assert _frame(error_frame(502, "upstream_stream_error", "cut")) == {
        "error": {
            "message": "cut",
            "type": "api_error",
            "code": "upstream_stream_error",
            "param": None,
        }
    }
    assert (
        _frame(error_frame(429, "rate_limited", "slow down"))["error"]["type"] == "rate_limit_error"
    )
