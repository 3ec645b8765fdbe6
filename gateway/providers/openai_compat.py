"""OpenAI chat-completions wire format: openai, groq, openrouter, glm4, siliconflow, cerebras,
modelscope, ollama and any other OpenAI-compatible endpoint.

Parameters the gateway does not interpret (``ChatRequest.passthrough``) are forwarded unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Mapping
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
    Usage,
)
from gateway.errors import UpstreamInvalidResponseError
from gateway.providers.base import AdapterOptions
from gateway.providers.http import (
    SseEvent,
    SseParser,
    UpstreamClient,
    body_reads,
    decode_json,
    raise_for_upstream_status,
    stream_read_error,
    upstream_errors,
)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_encoder = msgspec.json.Encoder()


def _message_to_wire(message: ChatMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        wire["name"] = message.name
    return wire


def request_to_wire(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    if request.openai_params:
        # The client spoke OpenAI: send its parameters untouched (strict tools, max_completion_tokens).
        body = {**request.openai_params, **request.passthrough}
        body["model"] = request.model
        body["messages"] = [_message_to_wire(m) for m in request.messages]
        return _stream_options(body, stream=stream)
    body = dict(request.passthrough)
    body["model"] = request.model
    body["messages"] = [_message_to_wire(m) for m in request.messages]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": dict(t.parameters),
                },
            }
            for t in request.tools
        ]
    if request.tool_choice is not None:
        body["tool_choice"] = request.tool_choice
    return _stream_options(body, stream=stream)


def _stream_options(body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    if stream:
        body["stream"] = True
        # Ask for usage on the last chunk so tokens are counted for streams too.
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
    )


def _tool_calls(raw: object) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        return ()
    calls = []
    for item in raw:
        fn = item.get("function") or {} if isinstance(item, Mapping) else {}
        calls.append(
            ToolCall(
                id=str(item.get("id") or ""),
                name=str(fn.get("name") or ""),
                arguments=str(fn.get("arguments") or ""),
            )
        )
    return tuple(calls)


def _tool_call_deltas(raw: object) -> tuple[ToolCallDelta, ...]:
    if not isinstance(raw, list):
        return ()
    deltas = []
    for position, item in enumerate(raw):
        if not isinstance(item, Mapping):
            continue
        fn = item.get("function") or {}
        deltas.append(
            ToolCallDelta(
                index=int(item.get("index", position)),
                id=item.get("id"),
                name=fn.get("name"),
                arguments=str(fn.get("arguments") or ""),
            )
        )
    return tuple(deltas)


def result_from_wire(provider: str, data: object, requested_model: str) -> ChatResult:
    try:
        if not isinstance(data, Mapping):
            raise TypeError("not an object")
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not text")
        return ChatResult(
            content=content,
            model=str(data.get("model") or requested_model),
            finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),
            tool_calls=_tool_calls(message.get("tool_calls")),
            usage=_usage(data.get("usage")) or Usage(),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: answer is not a chat completion", provider=provider
        ) from exc


class _WireDelta(msgspec.Struct):
    content: str | None = None
    tool_calls: Any = None  # checked item by item, loosely, by _tool_call_deltas


class _WireChoice(msgspec.Struct):
    delta: _WireDelta | None = None
    finish_reason: str | None = None


class _WireChunk(msgspec.Struct):
    """What the gateway reads of a ``chat.completion.chunk``; everything else (id, model, created,
    logprobs...) is skipped by the decoder, not built as dicts: 0.6 us a chunk instead of 3.4."""

    choices: list[_WireChoice] | None = None
    usage: Any = None


_chunk_decoder = msgspec.json.Decoder(_WireChunk)


def event_from_chunk(provider: str, data: bytes) -> StreamEvent | None:
    """The event of one streamed chunk (``data:`` payload); ``None`` when it carries nothing."""
    try:
        chunk = _chunk_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: bad stream chunk", provider=provider
        ) from exc
    except msgspec.DecodeError as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: answer is not valid JSON", provider=provider
        ) from exc
    choices = chunk.choices
    if chunk.usage is None and choices:
        choice = choices[0]
        delta = choice.delta
        if delta is not None and delta.tool_calls is None and choice.finish_reason is None:
            return StreamEvent(delta=delta.content or "")  # nearly every chunk: text only
    try:
        return _general_event(chunk)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamInvalidResponseError(
            f"{provider}: bad stream chunk", provider=provider
        ) from exc


def _general_event(chunk: _WireChunk) -> StreamEvent | None:
    """A chunk with usage, tool calls or a finish (or no choice at all)."""
    usage = None if chunk.usage is None else _usage(chunk.usage)
    if not chunk.choices:
        return StreamEvent(usage=usage) if usage else None
    choice = chunk.choices[0]
    delta = choice.delta
    finish = choice.finish_reason
    tool_calls: tuple[ToolCallDelta, ...] = ()
    text = ""
    if delta is not None:
        text = delta.content or ""
        if delta.tool_calls is not None:
            tool_calls = _tool_call_deltas(delta.tool_calls)
    return StreamEvent(
        delta=text,
        tool_calls=tool_calls,
        finish_reason=_FINISH.get(finish, "stop") if finish else None,
        usage=usage,
    )


class OpenAICompatProvider:
    """Adapter for the OpenAI chat-completions API and its many compatible providers."""

    def __init__(self, options: AdapterOptions) -> None:
        self._name = options.name
        self._http = UpstreamClient(options.client)
        self._api_key = options.api_key
        self._url = httpx.URL(options.base_url.rstrip("/") + "/chat/completions")
        fields = {"content-type": "application/json", "accept": "application/json"}
        if options.api_key:
            fields["authorization"] = f"Bearer {options.api_key}"
        self._headers = UpstreamClient.headers(self._url, fields)

    @property
    def name(self) -> str:
        return self._name

    def _build(self, request: ChatRequest, *, stream: bool) -> httpx.Request:
        body = _encoder.encode(request_to_wire(request, stream=stream))
        return self._http.request(self._url, body, self._headers)

    async def complete(self, request: ChatRequest) -> ChatResult:
        with upstream_errors(self._name):
            response = await self._http.send(self._build(request, stream=False))
        await raise_for_upstream_status(self._name, response, self._api_key)
        return result_from_wire(
            self._name, decode_json(self._name, response.content), request.model
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[EventBatch, None]:
        with upstream_errors(self._name):
            response = await self._http.send(self._build(request, stream=True), stream=True)
        try:
            await raise_for_upstream_status(self._name, response, self._api_key)
            parser = SseParser()
            try:
                # The transport's reads are parsed and translated in this one loop: this is the
                # hottest path of the gateway, and ``sse_batches`` would add a generator layer
                # per chunk.
                async for chunk in body_reads(response):
                    data = parser.single(chunk)
                    if data is not None and data[:1] == b"{":  # one chunk a read
                        event = event_from_chunk(self._name, data)
                        if event is not None:
                            yield (event,)
                    elif sses := (parser.feed(chunk) if data is None else [SseEvent(None, data)]):
                        batch, done, error = self._events(sses)
                        if batch:  # what came before a bad chunk is still relayed
                            yield batch
                        if error is not None:
                            raise error
                        if done:
                            return
            except httpx.HTTPError as exc:  # only the reads raise these (see sse_batches)
                raise stream_read_error(self._name, exc) from exc
            for batch in self._last(parser):
                yield batch
        finally:
            await response.aclose()

    def _last(self, parser: SseParser) -> Iterator[EventBatch]:
        """The events of a stream that ended without its blank line (then a bad chunk's error)."""
        batch, _, error = self._events(parser.close())
        if batch:
            yield batch
        if error is not None:
            raise error

    def _events(
        self, sses: list[SseEvent]
    ) -> tuple[EventBatch, bool, UpstreamInvalidResponseError | None]:
        """The events of a read with several chunks; whether ``[DONE]`` ended it; a bad chunk."""
        batch: list[StreamEvent] = []
        for sse in sses:
            data = sse.data
            if data[:1] != b"{" and data.strip() == b"[DONE]":  # a chunk is a JSON object
                return tuple(batch), True, None
            try:
                event = event_from_chunk(self._name, data)
            except UpstreamInvalidResponseError as exc:
                return tuple(batch), False, exc
            if event is not None:
                batch.append(event)
        return tuple(batch), False, None
