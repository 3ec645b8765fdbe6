"""Anthropic Messages API wire format: `POST /v1/messages` (JSON or the real SSE
event sequence) and `GET /v1/models`, authenticated by `x-api-key` and
requiring `anthropic-version`."""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Final

from gateway.sim.answer import Answer, Prompt, Turn, compose_answer
from gateway.sim.jsontools import JsonObject, as_int, as_list, as_object, as_str, text_of
from gateway.sim.wire import (
    AnswerContext,
    Incoming,
    JsonReply,
    Rejected,
    Reply,
    Route,
    StreamReply,
    sse_event,
)

PREFIX: Final = "/v1"
_TYPES: Final = MappingProxyType(
    {
        400: ("invalid_request_error", "Invalid request."),
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "Your API key does not have permission to use this resource."),
        404: ("not_found_error", "The requested resource could not be found."),
        413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
        500: ("api_error", "Internal server error"),
        503: ("overloaded_error", "Overloaded"),
        529: ("overloaded_error", "Overloaded"),
    }
)


def anthropic_error(status: int, message: str | None = None) -> JsonReply:
    fallback = ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}.")
    kind, default_message = _TYPES.get(status, fallback)
    error: JsonObject = {
        "type": kind,
        "message": message if message is not None else default_message,
    }
    return JsonReply(status, {"type": "error", "error": error})


def _bad_request(message: str) -> Rejected:
    return Rejected(anthropic_error(400, message))


class AnthropicWire:
    def route(self, method: str, path: str) -> Route | None:
        if path == f"{PREFIX}/messages" and method == "POST":
            return Route("chat")
        if path == f"{PREFIX}/models" and method == "GET":
            return Route("models")
        if path.startswith(f"{PREFIX}/models/") and method == "GET":
            return Route("model", model=path[len(f"{PREFIX}/models/") :])
        return None

    def describe(self, route: Route, request: Incoming) -> tuple[str | None, bool]:
        body = as_object(request.body) or {}
        return (as_str(body.get("model")) or route.model), body.get("stream") is True

    def authorize(self, request: Incoming, api_key: str) -> JsonReply | None:
        given = request.headers.get("x-api-key")
        if not given:
            return anthropic_error(401, "x-api-key header is required")
        return None if given == api_key else anthropic_error(401, "invalid x-api-key")

    def error(self, status: int, message: str | None = None) -> JsonReply:
        return anthropic_error(status, message)

    def handle(self, route: Route, request: Incoming, ctx: AnswerContext) -> Reply:
        if not request.headers.get("anthropic-version"):
            raise _bad_request("anthropic-version: header is required")
        if route.action == "models":
            return JsonReply(200, _model_list(ctx.listed))
        if route.action == "model":
            model = route.model or ""
            if model not in ctx.listed:
                raise Rejected(anthropic_error(404, f"model: {model}"))
            return JsonReply(200, _model_entry(model))
        return _message(request, ctx)


def _message(request: Incoming, ctx: AnswerContext) -> Reply:
    if not request.body_valid:
        raise _bad_request("There was an error parsing the body of your request as JSON.")
    body = as_object(request.body)
    if body is None:
        raise _bad_request("The request body must be a JSON object.")
    model = as_str(body.get("model"))
    if not model:
        raise _bad_request("model: Field required")
    prompt = _prompt(body)
    if not ctx.accepts(model):
        raise Rejected(anthropic_error(404, f"model: {model}"))
    answer = compose_answer(ctx.provider, model, prompt, ctx.reply)
    message_id = f"msg_sim{uuid.uuid4().hex[:24]}"
    stop_reason = "max_tokens" if answer.truncated else "end_turn"
    if body.get("stream") is True:
        return _stream(message_id, model, answer, stop_reason)
    usage: JsonObject = {
        "input_tokens": answer.prompt_tokens,
        "output_tokens": answer.completion_tokens,
    }
    return JsonReply(
        200,
        {
            **_message_head(message_id, model),
            "content": [{"type": "text", "text": answer.text}],
            "stop_reason": stop_reason,
            "usage": usage,
        },
    )


def _model_entry(model: str) -> JsonObject:
    return {
        "type": "model",
        "id": model,
        "display_name": model,
        "created_at": "2025-01-01T00:00:00Z",
    }


def _model_list(models: tuple[str, ...]) -> JsonObject:
    return {
        "data": [_model_entry(m) for m in models],
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }


def _prompt(body: JsonObject) -> Prompt:
    raw_max = body.get("max_tokens")
    if raw_max is None:
        raise _bad_request("max_tokens: Field required")
    max_tokens = as_int(raw_max)
    if max_tokens is None or max_tokens < 1:
        raise _bad_request("max_tokens: Input should be a valid integer greater than or equal to 1")
    messages = as_list(body.get("messages"))
    if not messages:
        raise _bad_request("messages: at least one message is required")
    turns: list[Turn] = []
    system = body.get("system")
    if system is not None:
        if not isinstance(system, (str, list)):
            raise _bad_request("system: Input should be a valid string or list of text blocks")
        turns.append(Turn("system", text_of(system)))
    for index, raw in enumerate(messages):
        message = as_object(raw)
        role = as_str(message.get("role")) if message else None
        if message is None or role not in ("user", "assistant"):
            raise _bad_request(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        turns.append(Turn(role, text_of(message.get("content"))))
    return Prompt(tuple(turns), max_tokens)


def _message_head(message_id: str, model: str) -> JsonObject:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "stop_sequence": None,
    }


def _stream(message_id: str, model: str, answer: Answer, stop_reason: str) -> StreamReply:
    start: JsonObject = {
        **_message_head(message_id, model),
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
    }
    block: JsonObject = {"type": "text", "text": ""}
    frames = [
        sse_event("message_start", {"type": "message_start", "message": start}),
        sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        sse_event("ping", {"type": "ping"}),
    ]
    for piece in answer.chunks:
        delta: JsonObject = {"type": "text_delta", "text": piece}
        payload: JsonObject = {"type": "content_block_delta", "index": 0, "delta": delta}
        frames.append(sse_event("content_block_delta", payload))
    end: JsonObject = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": answer.completion_tokens},
    }
    frames += [
        sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse_event("message_delta", end),
        sse_event("message_stop", {"type": "message_stop"}),
    ]
    return StreamReply(tuple(frames))
