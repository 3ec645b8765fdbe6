"""Anthropic Messages API wire format (``POST /v1/messages``).

System messages become the top-level ``system`` string, tool calls ``tool_use`` blocks and tool
answers ``tool_result`` blocks in a user turn; consecutive turns of one role are merged because the
API requires user and assistant to alternate. Passthrough parameters Anthropic cannot express are
rejected before a call is made.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
import msgspec

from gateway.domain.types import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    EventBatch,
    FinishReason,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from gateway.errors import (
    InvalidRequestError,
    UnsupportedParameterError,
    UpstreamInvalidResponseError,
    UpstreamStreamError,
)
from gateway.providers.base import AdapterOptions
from gateway.providers.http import (
    SseEvent,
    UpstreamClient,
    decode_json,
    raise_for_upstream_status,
    sse_batches,
    translate_read,
    upstream_errors,
)
from gateway.redaction import redact

API_VERSION = "2023-06-01"
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_IGNORED_PASSTHROUGH = frozenset({"stream", "stream_options"})
# OpenAI parameters sent at their default value change nothing, so they are accepted.
_NEUTRAL_PASSTHROUGH: dict[str, object] = {
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
}
_MAX_ERROR_TEXT = 500
_encoder = msgspec.json.Encoder()


class _GarbledError(Exception):
    """Raised inside the response translation; always converted to UpstreamInvalidResponseError."""


_INVALID = (_GarbledError, KeyError, IndexError, TypeError, ValueError, AttributeError)


def _parse_arguments(text: str, field: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidRequestError("tool call arguments are not valid JSON", field=field) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("tool call arguments must be a JSON object", field=field)
    return value


def _blocks(index: int, message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        if not message.tool_call_id:
            raise UnsupportedParameterError(
                "anthropic needs the tool_call_id of every tool message",
                field=f"messages[{index}].tool_call_id",
            )
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    # Anthropic rejects empty text blocks.
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": message.content}] if message.content else []
    )
    for j, call in enumerate(message.tool_calls):
        field = f"messages[{index}].tool_calls[{j}].arguments"
        args = _parse_arguments(call.arguments, field)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    return blocks


def _messages(messages: tuple[ChatMessage, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            system.append(message.content)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(i, message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # tool_result blocks must open the user turn that answers the tool calls.
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
        if not turn["content"]:
            turn["content"] = ""
    return system, turns


def _tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    schema = dict(tool.parameters) or {"type": "object", "properties": {}}
    wire: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description:
        wire["description"] = tool.description
    return wire


def _tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        kinds = {"auto": "auto", "none": "none", "required": "any"}
        if choice not in kinds:
            raise UnsupportedParameterError(
                f"tool_choice '{choice}' is not supported by anthropic", field="tool_choice"
            )
        return {"type": kinds[choice]}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str) or not name:
        raise UnsupportedParameterError(
            "tool_choice must name a function", field="tool_choice.function.name"
        )
    return {"type": "tool", "name": name}


def _apply_passthrough(passthrough: Mapping[str, Any], body: dict[str, Any]) -> None:
    for key, value in passthrough.items():
        if value is None or key in _IGNORED_PASSTHROUGH:
            continue
        if key == "user":
            body["metadata"] = {"user_id": str(value)}
        elif key in _NEUTRAL_PASSTHROUGH and value == _NEUTRAL_PASSTHROUGH[key]:
            continue
        else:
            raise UnsupportedParameterError(
                f"parameter '{key}' is not supported by anthropic", field=key
            )


def request_to_wire(
    request: ChatRequest, *, stream: bool, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """The Messages API body; raises InvalidRequestError for what Anthropic cannot express."""
    body: dict[str, Any] = {"model": request.model}
    _apply_passthrough(request.passthrough, body)
    system, turns = _messages(request.messages)
    body["messages"] = turns
    if system:
        body["system"] = "\n\n".join(system)
    body["max_tokens"] = request.max_tokens or default_max_tokens
    if request.temperature is not None:
        # OpenAI allows 0..2, Anthropic 0..1.
        body["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    choice = _tool_choice(request.tool_choice) if request.tool_choice is not None else None
    if request.tools:
        body["tools"] = [_tool_to_wire(t) for t in request.tools]
        if choice is not None:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def _input_tokens(usage: Mapping[str, Any]) -> int:
    # Cached prompt tokens are counted apart from input_tokens; all of them are prompt.
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(int(usage.get(key) or 0) for key in keys)


def _finish(raw: object) -> FinishReason | None:
    if not raw:
        return None
    return _FINISH.get(raw, "stop") if isinstance(raw, str) else "stop"


def result_from_wire(provider: str, data: object, requested_model: str) -> ChatResult:
    try:
        if not isinstance(data, Mapping) or not isinstance(data["content"], list):
            raise _GarbledError("answer")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in data["content"]:
            if block["type"] == "text":
                if not isinstance(block["text"], str):
                    raise _GarbledError("text")
                texts.append(block["text"])
            elif block["type"] == "tool_use":
                arguments = json.dumps(block.get("input") or {})
                calls.append(ToolCall(str(block["id"]), str(block["name"]), arguments))
        usage = data.get("usage") or {}
        return ChatResult(
            content="".join(texts),
            model=str(data.get("model") or requested_model),
            finish_reason=_finish(data.get("stop_reason")) or "stop",
            tool_calls=tuple(calls),
            usage=Usage(_input_tokens(usage), int(usage.get("output_tokens") or 0)),
        )
    except _INVALID as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: answer is not a Messages API response", provider=provider
        ) from exc


class StreamTranslator:
    """Turns the typed events of one Messages stream into StreamEvents.

    Tool calls are numbered in the order their blocks start; usage is reported with the finish
    reason on ``message_delta``. ``done`` becomes true on ``message_stop``.
    """

    def __init__(self, provider: str, api_key: str | None) -> None:
        self._provider = provider
        self._api_key = api_key
        self._input_tokens = 0
        self._tool_index_by_block: dict[int, int] = {}
        self.done = False

    def feed(self, event: str | None, data: object) -> StreamEvent | None:
        try:
            if not isinstance(data, Mapping):
                raise _GarbledError("event")
            return self._feed(event or str(data.get("type")), data)
        except _INVALID as exc:
            raise UpstreamInvalidResponseError(
                f"{self._provider}: bad stream event", provider=self._provider
            ) from exc

    def _stream_error(self, error: object) -> UpstreamStreamError:
        kind = error.get("type") if isinstance(error, Mapping) else None
        message = error.get("message") if isinstance(error, Mapping) else error
        text = redact(f"{kind or 'error'}: {message}"[:_MAX_ERROR_TEXT], [self._api_key])
        return UpstreamStreamError(
            f"{self._provider}: error in stream: {text}", provider=self._provider
        )

    def _feed(self, event: str, data: Mapping[str, Any]) -> StreamEvent | None:
        if event == "error":
            raise self._stream_error(data.get("error"))
        if event == "message_start":
            self._input_tokens = _input_tokens(data["message"].get("usage") or {})
        elif event == "content_block_start":
            return self._block_start(int(data["index"]), data["content_block"])
        elif event == "content_block_delta":
            return self._block_delta(int(data["index"]), data["delta"])
        elif event == "message_delta":
            usage = data.get("usage") or {}
            return StreamEvent(
                finish_reason=_finish(data["delta"].get("stop_reason")),
                usage=Usage(
                    max(self._input_tokens, _input_tokens(usage)),
                    int(usage.get("output_tokens") or 0),
                ),
            )
        elif event == "message_stop":
            self.done = True
        # ping, content_block_stop and event types added later carry nothing to report.
        return None

    def _block_start(self, index: int, block: Mapping[str, Any]) -> StreamEvent | None:
        if block["type"] == "tool_use":
            tool_index = len(self._tool_index_by_block)
            self._tool_index_by_block[index] = tool_index
            delta = ToolCallDelta(index=tool_index, id=block.get("id"), name=block.get("name"))
            return StreamEvent(tool_calls=(delta,))
        if block["type"] == "text" and block.get("text"):
            return StreamEvent(delta=str(block["text"]))
        return None

    def _block_delta(self, index: int, delta: Mapping[str, Any]) -> StreamEvent | None:
        if delta["type"] == "text_delta" and delta.get("text"):
            return StreamEvent(delta=str(delta["text"]))
        if delta["type"] == "input_json_delta" and delta.get("partial_json"):
            tool_index = self._tool_index_by_block[index]
            piece = ToolCallDelta(index=tool_index, arguments=str(delta["partial_json"]))
            return StreamEvent(tool_calls=(piece,))
        # thinking_delta, signature_delta: not part of the answer.
        return None


class AnthropicProvider:
    """Adapter for Claude models through the Anthropic Messages API."""

    def __init__(self, options: AdapterOptions, *, default_max_tokens: int = 4096) -> None:
        self._name = options.name
        self._http = UpstreamClient(options.client)
        self._api_key = options.api_key
        self._default_max_tokens = default_max_tokens
        self._url = httpx.URL(options.base_url.rstrip("/") + "/v1/messages")
        fields = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if options.api_key:
            fields["x-api-key"] = options.api_key
        self._headers = UpstreamClient.headers(self._url, fields)
        self._stream_headers = UpstreamClient.headers(
            self._url, {**fields, "accept": "text/event-stream"}
        )

    @property
    def name(self) -> str:
        return self._name

    def _build(self, request: ChatRequest, *, stream: bool) -> httpx.Request:
        wire = request_to_wire(request, stream=stream, default_max_tokens=self._default_max_tokens)
        headers = self._stream_headers if stream else self._headers
        return self._http.request(self._url, _encoder.encode(wire), headers)

    async def complete(self, request: ChatRequest) -> ChatResult:
        built = self._build(request, stream=False)
        with upstream_errors(self._name):
            response = await self._http.send(built)
        await raise_for_upstream_status(self._name, response, self._api_key)
        return result_from_wire(
            self._name, decode_json(self._name, response.content), request.model
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[EventBatch, None]:
        built = self._build(request, stream=True)
        with upstream_errors(self._name):
            response = await self._http.send(built, stream=True)
        try:
            await raise_for_upstream_status(self._name, response, self._api_key)
            translator = StreamTranslator(self._name, self._api_key)

            def feed(sse: SseEvent) -> StreamEvent | None:
                return translator.feed(sse.event, decode_json(self._name, sse.data))

            async for sses in sse_batches(self._name, response):
                batch, error = translate_read(sses, feed, lambda: translator.done)
                if batch:
                    yield batch
                if error is not None:
                    raise error
                if translator.done:
                    return
            raise UpstreamStreamError(
                f"{self._name}: stream ended before message_stop", provider=self._name
            )
        finally:
            await response.aclose()
