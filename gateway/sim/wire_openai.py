"""OpenAI Chat Completions wire format (`POST {prefix}/chat/completions`,
`GET {prefix}/models`), including SSE streaming, `stream_options.include_usage`
and a canned tool call when the user asks about the weather."""

from __future__ import annotations

import time
import uuid
from types import MappingProxyType
from typing import Final

from gateway.sim.answer import Answer, Prompt, Turn, compose_answer, count_tokens
from gateway.sim.jsontools import JsonObject, as_int, as_list, as_object, as_str, text_of
from gateway.sim.wire import (
    AnswerContext,
    Incoming,
    JsonReply,
    Rejected,
    Reply,
    Route,
    StreamReply,
    sse_data,
)

TOOL_ARGUMENTS: Final = '{"city": "Paris"}'
_ROLES: Final = MappingProxyType(
    {
        "system": "system",
        "developer": "system",
        "user": "user",
        "assistant": "assistant",
        "tool": "tool",
        "function": "tool",
    }
)
_OVERLOADED: Final = "The engine is currently overloaded, please try again later."
_DEFAULTS: Final = MappingProxyType(
    {
        400: ("invalid_request_error", None, "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        403: ("permission_error", None, "You are not allowed to perform this request."),
        404: ("invalid_request_error", None, "Not found."),
        408: ("timeout", None, "Request timed out."),
        429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
        500: ("server_error", None, "The server had an error while processing your request."),
        502: ("server_error", None, "Bad gateway."),
        503: ("server_error", None, _OVERLOADED),
        504: ("server_error", None, "Gateway timeout."),
    }
)
_NO_KEY: Final = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def openai_error(
    status: int, message: str | None = None, *, type_: str | None = None, code: str | None = None
) -> JsonReply:
    fallback_type = "invalid_request_error" if status < 500 else "server_error"
    default_type, default_code, default_message = _DEFAULTS.get(
        status, (fallback_type, None, f"Error {status}.")
    )
    error: JsonObject = {
        "message": message if message is not None else default_message,
        "type": type_ or default_type,
        "param": None,
        "code": code or default_code,
    }
    return JsonReply(status, {"error": error})


def _bad_request(message: str, code: str | None = None) -> Rejected:
    return Rejected(openai_error(400, message, code=code))


class OpenAIWire:
    def __init__(self, prefix: str = "/v1") -> None:
        self._chat = f"{prefix}/chat/completions"
        self._models = f"{prefix}/models"

    def route(self, method: str, path: str) -> Route | None:
        if path == self._chat and method == "POST":
            return Route("chat")
        if path == self._models and method == "GET":
            return Route("models")
        if path.startswith(self._models + "/") and method == "GET":
            return Route("model", model=path[len(self._models) + 1 :])
        return None

    def describe(self, route: Route, request: Incoming) -> tuple[str | None, bool]:
        body = as_object(request.body) or {}
        return (as_str(body.get("model")) or route.model), body.get("stream") is True

    def authorize(self, request: Incoming, api_key: str) -> JsonReply | None:
        header = request.headers.get("authorization")
        if not header:
            return openai_error(401, _NO_KEY, code="missing_api_key")
        if header != f"Bearer {api_key}":
            return openai_error(401, "Incorrect API key provided.", code="invalid_api_key")
        return None

    def error(self, status: int, message: str | None = None) -> JsonReply:
        return openai_error(status, message)

    def handle(self, route: Route, request: Incoming, ctx: AnswerContext) -> Reply:
        if route.action == "models":
            return JsonReply(200, {"object": "list", "data": [_model_entry(m) for m in ctx.listed]})
        if route.action == "model":
            model = route.model or ""
            if model not in ctx.listed:
                raise _model_not_found(model)
            return JsonReply(200, _model_entry(model))
        return _chat_completion(request, ctx)


def _chat_completion(request: Incoming, ctx: AnswerContext) -> Reply:
    body = _body(request)
    model = as_str(body.get("model"))
    if not model:
        raise _bad_request("you must provide a model parameter", "missing_required_parameter")
    if not ctx.accepts(model):
        raise _model_not_found(model)
    prompt = _prompt(body)
    tool_name = _first_tool_name(body)
    stream = body.get("stream") is True
    options = as_object(body.get("stream_options")) or {}
    include_usage = stream and options.get("include_usage") is True
    base: JsonObject = {
        "id": f"chatcmpl-sim{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_sim",
    }
    if tool_name is not None and prompt.asks_for_weather():
        usage = _usage(prompt.prompt_tokens, count_tokens(TOOL_ARGUMENTS))
        call_id = f"call_sim{uuid.uuid4().hex[:16]}"
        if stream:
            return _stream_tool_call(base, tool_name, call_id, usage if include_usage else None)
        calls = [_tool_call(call_id, tool_name)]
        message: JsonObject = {"role": "assistant", "content": None, "tool_calls": calls}
        return JsonReply(200, _completion(base, message, "tool_calls", usage))
    answer = compose_answer(ctx.provider, model, prompt, ctx.reply)
    finish = "length" if answer.truncated else "stop"
    usage = _usage(answer.prompt_tokens, answer.completion_tokens)
    if stream:
        return _stream_text(base, answer, finish, usage if include_usage else None)
    message = {"role": "assistant", "content": answer.text}
    return JsonReply(200, _completion(base, message, finish, usage))


def _body(request: Incoming) -> JsonObject:
    if not request.body_valid:
        raise _bad_request("We could not parse the JSON body of your request.")
    body = as_object(request.body)
    if body is None:
        raise _bad_request("The request body must be a JSON object.")
    return body


def _model_entry(model: str) -> JsonObject:
    return {"id": model, "object": "model", "created": 0, "owned_by": "sim"}


def _model_not_found(model: str) -> Rejected:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return Rejected(openai_error(404, message, code="model_not_found"))


def _prompt(body: JsonObject) -> Prompt:
    messages = as_list(body.get("messages"))
    if not messages:
        raise _bad_request("'messages' is a required property and must be a non-empty array.")
    turns: list[Turn] = []
    for index, raw in enumerate(messages):
        message = as_object(raw)
        role = as_str(message.get("role")) if message else None
        if message is None or role is None or role not in _ROLES:
            raise _bad_request(f"Invalid value for 'messages[{index}].role'.")
        turns.append(Turn(_ROLES[role], text_of(message.get("content"))))
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    limit = as_int(max_tokens)
    if max_tokens is not None and (limit is None or limit < 1):
        raise _bad_request("max_tokens must be a positive integer.")
    return Prompt(tuple(turns), limit)


def _first_tool_name(body: JsonObject) -> str | None:
    if body.get("tools") is None:
        return None
    tools = as_list(body["tools"])
    if tools is None:
        raise _bad_request("'tools' must be an array.")
    if not tools:
        return None
    function = as_object((as_object(tools[0]) or {}).get("function")) or {}
    name = as_str(function.get("name"))
    if not name:
        raise _bad_request("Missing required parameter: 'tools[0].function.name'.")
    return name


def _usage(prompt_tokens: int, completion_tokens: int) -> JsonObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _tool_call(call_id: str, name: str) -> JsonObject:
    function: JsonObject = {"name": name, "arguments": TOOL_ARGUMENTS}
    return {"id": call_id, "type": "function", "function": function}


def _completion(
    base: JsonObject, message: JsonObject, finish: str, usage: JsonObject
) -> JsonObject:
    choice: JsonObject = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {**base, "object": "chat.completion", "choices": [choice], "usage": usage}


def _chunk(base: JsonObject, delta: JsonObject, finish: str | None, with_usage: bool) -> bytes:
    choice: JsonObject = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    payload: JsonObject = {**base, "object": "chat.completion.chunk", "choices": [choice]}
    if with_usage:
        payload["usage"] = None  # like OpenAI: null on every chunk but the usage one
    return sse_data(payload)


def _stream_end(base: JsonObject, usage: JsonObject | None) -> list[bytes]:
    frames: list[bytes] = []
    if usage is not None:
        final: JsonObject = {**base, "object": "chat.completion.chunk", "choices": []}
        frames.append(sse_data({**final, "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def _stream_text(
    base: JsonObject, answer: Answer, finish: str, usage: JsonObject | None
) -> StreamReply:
    with_usage = usage is not None
    frames = [_chunk(base, {"role": "assistant", "content": ""}, None, with_usage)]
    frames += [_chunk(base, {"content": piece}, None, with_usage) for piece in answer.chunks]
    frames.append(_chunk(base, {}, finish, with_usage))
    return StreamReply(tuple(frames + _stream_end(base, usage)))


def _stream_tool_call(
    base: JsonObject, name: str, call_id: str, usage: JsonObject | None
) -> StreamReply:
    with_usage = usage is not None
    function: JsonObject = {"name": name, "arguments": ""}
    head: JsonObject = {"index": 0, "id": call_id, "type": "function", "function": function}
    first: JsonObject = {"role": "assistant", "content": None, "tool_calls": [head]}
    frames = [_chunk(base, first, None, with_usage)]
    split = TOOL_ARGUMENTS.index(" ") + 1
    for piece in (TOOL_ARGUMENTS[:split], TOOL_ARGUMENTS[split:]):
        delta: JsonObject = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        frames.append(_chunk(base, delta, None, with_usage))
    frames.append(_chunk(base, {}, "tool_calls", with_usage))
    return StreamReply(tuple(frames + _stream_end(base, usage)))
