"""Tool calls through /v1: asked for, answered, and sent back, over OpenAI-wire and Gemini."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from gateway.sim.cluster import SimCluster
from tests.integration.v1.helpers import WEATHER_TOOL, user

QUESTION = "What's the weather in Paris?"
# (model, simulator, upstream model id)
TOOL_WIRES = [
    ("openai:gpt-4o-mini", "openai", "gpt-4o-mini"),
    ("gemini:flash-1.5", "gemini", "gemini-1.5-flash"),
]


@pytest.mark.parametrize(("model", "sim", "upstream"), TOOL_WIRES)
def test_tool_call_round_trip(
    sdk: openai.OpenAI, sims: SimCluster, model: str, sim: str, upstream: str
) -> None:
    first = sdk.chat.completions.create(
        model=model, messages=[user(QUESTION)], tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]

    history: list[Any] = [
        user(QUESTION),
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"celsius": 21}'},
    ]
    second = sdk.chat.completions.create(model=model, messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert (
        second.choices[0].message.content == f"Hello from {sim}/{upstream}: you said '{QUESTION}'"
    )
    assert second.choices[0].message.tool_calls is None
    return_trip = sims[sim].requests[-1].body
    assert isinstance(return_trip, dict)
    if sim == "openai":
        sent = return_trip["messages"]
        assert sent[1]["tool_calls"] == [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.function.arguments},  # type: ignore[union-attr]
            }
        ]
        assert sent[2] == {"role": "tool", "content": '{"celsius": 21}', "tool_call_id": call.id}
        assert return_trip["tools"] == [WEATHER_TOOL]
    else:
        contents = return_trip["contents"]
        assert contents[1] == {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
        }
        assert contents[2] == {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"content": {"celsius": 21}},
                    }
                }
            ],
        }
        assert return_trip["tools"] == [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather of a city",
                        "parameters": WEATHER_TOOL["function"]["parameters"],
                    }
                ]
            }
        ]


@pytest.mark.parametrize(("model", "sim", "upstream"), TOOL_WIRES)
def test_streamed_tool_call(sdk: openai.OpenAI, model: str, sim: str, upstream: str) -> None:
    del sim, upstream
    chunks = list(
        sdk.chat.completions.create(
            model=model, messages=[user(QUESTION)], tools=[WEATHER_TOOL], stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        piece
        for chunk in chunks
        if chunk.choices
        for piece in chunk.choices[0].delta.tool_calls or []
    ]
    assert pieces
    assert {p.index for p in pieces} == {0}
    assert pieces[0].id
    assert pieces[0].type == "function"
    assert pieces[0].function is not None and pieces[0].function.name == "get_weather"
    assert all(p.id is None for p in pieces[1:])
    arguments = "".join(p.function.arguments or "" for p in pieces if p.function)
    assert json.loads(arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_history_is_translated_for_anthropic(sdk: openai.OpenAI, sims: SimCluster) -> None:
    history: list[Any] = [
        user(QUESTION),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C"},
    ]
    answer = sdk.chat.completions.create(
        model="anthropic:haiku", messages=history, tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert answer.choices[0].message.content
    body = sims["anthropic"].requests[-1].body
    assert isinstance(body, dict)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C"}],
        },
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
            "description": "Current weather of a city",
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
