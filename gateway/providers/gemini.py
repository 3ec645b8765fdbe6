"""Gemini ``generateContent`` wire format (the Generative Language API).

System messages become ``systemInstruction``, assistant turns role ``model``, tool calls
``functionCall`` parts and tool answers ``functionResponse`` parts. The OpenAI passthrough
parameters Gemini can express are translated; any other one is rejected before a call is made.
The key travels in the ``x-goog-api-key`` header, never in the URL.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import quote

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

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
}
# OpenAI parameter -> generationConfig field, copied as is.
_GENERATION_PASSTHROUGH = {
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "n": "candidateCount",
}
_IGNORED_PASSTHROUGH = frozenset({"user", "stream", "stream_options"})
_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_MAX_ERROR_TEXT = 500
_encoder = msgspec.json.Encoder()


class _GarbledError(Exception):
    """Raised inside the response translation; always converted to UpstreamInvalidResponseError."""


def _unsupported(key: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(f"parameter '{key}' is not supported by gemini", field=key)


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


def _tool_response(content: str) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return content


def _contents(messages: tuple[ChatMessage, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names_by_call_id: dict[str, str] = {}
    for i, message in enumerate(messages):
        if message.role == "system":
            system.append(message.content)
        elif message.role == "user":
            contents.append({"role": "user", "parts": [{"text": message.content}]})
        elif message.role == "assistant":
            parts: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
            for j, call in enumerate(message.tool_calls):
                names_by_call_id[call.id] = call.name
                field = f"messages[{i}].tool_calls[{j}].arguments"
                args = _parse_arguments(call.arguments, field)
                parts.append({"functionCall": {"name": call.name, "args": args}})
            contents.append({"role": "model", "parts": parts or [{"text": ""}]})
        else:
            # OpenAI clients rarely name tool answers: fall back to the call they answer.
            name = message.name or names_by_call_id.get(message.tool_call_id or "")
            if not name:
                raise UnsupportedParameterError(
                    "gemini needs the function name of every tool message",
                    field=f"messages[{i}].name",
                )
            response = {"content": _tool_response(message.content)}
            part = {"functionResponse": {"name": name, "response": response}}
            contents.append({"role": "user", "parts": [part]})
    return system, contents


def _tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    wire: dict[str, Any] = {"name": tool.name}
    if tool.description:
        wire["description"] = tool.description
    if tool.parameters:
        wire["parameters"] = dict(tool.parameters)
    return wire


def _tool_config(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        mode = _TOOL_CHOICE_MODES.get(choice)
        if mode is None:
            raise UnsupportedParameterError(
                f"tool_choice '{choice}' is not supported by gemini", field="tool_choice"
            )
        return {"functionCallingConfig": {"mode": mode}}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str) or not name:
        raise UnsupportedParameterError(
            "tool_choice must name a function", field="tool_choice.function.name"
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _apply_passthrough(passthrough: Mapping[str, Any], config: dict[str, Any]) -> None:
    for key, value in passthrough.items():
        if value is None or key in _IGNORED_PASSTHROUGH:
            continue
        if key in _GENERATION_PASSTHROUGH:
            config[_GENERATION_PASSTHROUGH[key]] = value
        elif key == "response_format":
            kind = value.get("type") if isinstance(value, Mapping) else None
            if kind == "json_object":
                config["responseMimeType"] = "application/json"
            elif kind != "text":
                raise UnsupportedParameterError(
                    f"response_format type '{kind}' is not supported by gemini",
                    field="response_format",
                )
        else:
            raise _unsupported(key)


def request_to_wire(request: ChatRequest) -> dict[str, Any]:
    """The generateContent body; raises InvalidRequestError for what Gemini cannot express."""
    config: dict[str, Any] = {}
    _apply_passthrough(request.passthrough, config)
    system, contents = _contents(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if config:
        body["generationConfig"] = config
    tool_config = _tool_config(request.tool_choice) if request.tool_choice is not None else None
    if request.tools:
        body["tools"] = [{"functionDeclarations": [_tool_to_wire(t) for t in request.tools]}]
        if tool_config is not None:
            body["toolConfig"] = tool_config
    return body


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    # Thinking tokens are billed as output, as OpenAI counts reasoning tokens as completion.
    return Usage(
        prompt_tokens=int(raw.get("promptTokenCount") or 0),
        completion_tokens=int(raw.get("candidatesTokenCount") or 0)
        + int(raw.get("thoughtsTokenCount") or 0),
    )


def _parts(candidate: object) -> list[Mapping[str, Any]]:
    if not isinstance(candidate, Mapping):
        raise _GarbledError("candidate")
    content = candidate.get("content")
    if content is None:
        return []
    if not isinstance(content, Mapping):
        raise _GarbledError("content")
    parts = content.get("parts") or []
    if not isinstance(parts, list) or not all(isinstance(p, Mapping) for p in parts):
        raise _GarbledError("parts")
    return parts


def _text_and_calls(parts: list[Mapping[str, Any]], first: int) -> tuple[str, list[ToolCall]]:
    """Visible text and function calls of some parts; call ids count on from ``first``."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in parts:
        if part.get("thought"):
            continue
        text = part.get("text")
        if isinstance(text, str):
            texts.append(text)
        call = part.get("functionCall")
        if call is None:
            continue
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise _GarbledError("functionCall")
        args = call.get("args") or {}
        call_id = call.get("id") or f"call_{first + len(calls)}"
        calls.append(ToolCall(id=str(call_id), name=call["name"], arguments=json.dumps(args)))
    return "".join(texts), calls


def _finish(candidate: Mapping[str, Any], has_calls: bool) -> FinishReason | None:
    raw = candidate.get("finishReason")
    if not raw:
        return None
    if has_calls:
        return "tool_calls"
    return _FINISH.get(raw, "stop") if isinstance(raw, str) else "stop"


def _blocked(data: Mapping[str, Any]) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, Mapping) and bool(feedback.get("blockReason"))


def result_from_wire(provider: str, data: object, requested_model: str) -> ChatResult:
    try:
        if not isinstance(data, Mapping):
            raise _GarbledError("answer")
        model = str(data.get("modelVersion") or requested_model)
        usage = _usage(data.get("usageMetadata")) or Usage()
        candidates = data.get("candidates")
        if not candidates and _blocked(data):
            return ChatResult("", model, finish_reason="content_filter", usage=usage)
        if not isinstance(candidates, list) or not candidates:
            raise _GarbledError("candidates")
        text, calls = _text_and_calls(_parts(candidates[0]), 0)
        return ChatResult(
            content=text,
            model=model,
            finish_reason=_finish(candidates[0], bool(calls)) or "stop",
            tool_calls=tuple(calls),
            usage=usage,
        )
    except (_GarbledError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: answer is not a generateContent response", provider=provider
        ) from exc


class StreamTranslator:
    """Turns the GenerateContentResponse frames of one stream into StreamEvents.

    Tool-call indexes count across the whole stream. Gemini repeats ``usageMetadata`` on many
    frames; usage is reported with the finish reason, and again only if a later frame changes it.
    """

    def __init__(self, provider: str, api_key: str | None) -> None:
        self._provider = provider
        self._api_key = api_key
        self._tool_calls = 0
        self._usage: Usage | None = None
        self._reported: Usage | None = None
        self.finished = False

    def _stream_error(self, error: object) -> UpstreamStreamError:
        message = error.get("message") if isinstance(error, Mapping) else error
        text = redact(str(message)[:_MAX_ERROR_TEXT], [self._api_key])
        return UpstreamStreamError(
            f"{self._provider}: error in stream: {text}", provider=self._provider
        )

    def feed(self, data: object) -> StreamEvent | None:
        try:
            return self._feed(data)
        except (_GarbledError, KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamInvalidResponseError(
                f"{self._provider}: bad stream frame", provider=self._provider
            ) from exc

    def _feed(self, data: object) -> StreamEvent | None:
        if not isinstance(data, Mapping):
            raise _GarbledError("frame")
        if "error" in data:
            raise self._stream_error(data["error"])
        self._usage = _usage(data.get("usageMetadata")) or self._usage
        candidates = data.get("candidates")
        finish: FinishReason | None = None
        text, first = "", self._tool_calls
        calls: list[ToolCall] = []
        if candidates:
            if not isinstance(candidates, list):
                raise _GarbledError("candidates")
            text, calls = _text_and_calls(_parts(candidates[0]), first)
            self._tool_calls += len(calls)
            finish = _finish(candidates[0], self._tool_calls > 0)
        elif _blocked(data):
            finish = "content_filter"
        deltas = tuple(
            ToolCallDelta(index=first + k, id=c.id, name=c.name, arguments=c.arguments)
            for k, c in enumerate(calls)
        )
        usage = None
        if finish is not None or (self.finished and self._usage != self._reported):
            self.finished = True
            usage, self._reported = self._usage, self._usage
        if not (text or deltas or finish or usage):
            return None
        return StreamEvent(delta=text, tool_calls=deltas, finish_reason=finish, usage=usage)


class GeminiProvider:
    """Adapter for Gemini models through the Generative Language API."""

    def __init__(self, options: AdapterOptions) -> None:
        self._name = options.name
        self._http = UpstreamClient(options.client)
        self._api_key = options.api_key
        self._base = options.base_url.rstrip("/")
        fields = {"content-type": "application/json", "accept": "application/json"}
        if options.api_key:
            fields["x-goog-api-key"] = options.api_key
        # Every model's URL is on the base URL's host, so one Host header serves them all.
        base_url = httpx.URL(self._base)
        self._headers = UpstreamClient.headers(base_url, fields)
        self._stream_headers = UpstreamClient.headers(
            base_url, {**fields, "accept": "text/event-stream"}
        )

    @property
    def name(self) -> str:
        return self._name

    def _build(self, request: ChatRequest, *, stream: bool) -> httpx.Request:
        body = _encoder.encode(request_to_wire(request))
        model = quote(request.model.removeprefix("models/"), safe="")
        method = "streamGenerateContent" if stream else "generateContent"
        url = httpx.URL(f"{self._base}/models/{model}:{method}")
        headers = self._headers
        if stream:
            url = url.copy_add_param("alt", "sse")
            headers = self._stream_headers
        return self._http.request(url, body, headers)

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
                return translator.feed(decode_json(self._name, sse.data))

            async for sses in sse_batches(self._name, response):
                batch, error = translate_read(sses, feed)
                if batch:
                    yield batch
                if error is not None:
                    raise error
            if not translator.finished:
                raise UpstreamStreamError(
                    f"{self._name}: stream ended without a finish reason", provider=self._name
                )
        finally:
            await response.aclose()
