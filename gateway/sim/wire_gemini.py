"""Gemini (Generative Language API v1beta) wire format: `generateContent`,
`streamGenerateContent?alt=sse` and model listing, authenticated by
`x-goog-api-key` or `?key=`; a canned `functionCall` when functions are declared
and the user asks about the weather (like the OpenAI wire)."""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Final

from gateway.sim.answer import Answer, Prompt, Turn, compose_answer, count_tokens
from gateway.sim.jsontools import (
    JsonObject,
    as_int,
    as_list,
    as_object,
    as_str,
    dumps,
    text_of,
)
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

PREFIX: Final = "/v1beta/models"
_ACTIONS: Final = MappingProxyType({"generateContent": "chat", "streamGenerateContent": "stream"})
_ROLES: Final = MappingProxyType({"user": "user", "model": "assistant", "function": "tool"})
_STATUS: Final = MappingProxyType(
    {
        400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
        403: ("PERMISSION_DENIED", "The caller does not have permission."),
        404: ("NOT_FOUND", "Requested entity was not found."),
        409: ("ABORTED", "The operation was aborted."),
        429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        499: ("CANCELLED", "The operation was cancelled."),
        500: ("INTERNAL", "An internal error has occurred. Please retry."),
        501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
        503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
        504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
    }
)
_BAD_KEY: Final = "API key not valid. Please pass a valid API key."
_NO_KEY: Final = "Method doesn't allow unregistered callers. Please use an API key."


def gemini_error(
    status: int, message: str | None = None, *, details: list[object] | None = None
) -> JsonReply:
    fallback = ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", f"Error {status}.")
    code_name, default_message = _STATUS.get(status, fallback)
    error: JsonObject = {
        "code": status,
        "message": message if message is not None else default_message,
        "status": code_name,
    }
    if details:
        error["details"] = details
    return JsonReply(status, {"error": error})


def _bad_request(message: str) -> Rejected:
    return Rejected(gemini_error(400, message))


class GeminiWire:
    def route(self, method: str, path: str) -> Route | None:
        if path == PREFIX and method == "GET":
            return Route("models")
        if not path.startswith(PREFIX + "/"):
            return None
        model, colon, verb = path[len(PREFIX) + 1 :].partition(":")
        if not model or "/" in model:
            return None
        if not colon:
            return Route("model", model=model) if method == "GET" else None
        action = _ACTIONS.get(verb)
        return Route(action, model=model) if action is not None and method == "POST" else None

    def describe(self, route: Route, request: Incoming) -> tuple[str | None, bool]:
        return route.model, route.action == "stream"

    def authorize(self, request: Incoming, api_key: str) -> JsonReply | None:
        given = request.headers.get("x-goog-api-key") or request.query.get("key")
        if given == api_key:
            return None
        info: JsonObject = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID" if given else "API_KEY_MISSING",
            "domain": "googleapis.com",
        }
        return gemini_error(401, _BAD_KEY if given else _NO_KEY, details=[info])

    def error(self, status: int, message: str | None = None) -> JsonReply:
        return gemini_error(status, message)

    def handle(self, route: Route, request: Incoming, ctx: AnswerContext) -> Reply:
        model = route.model or ""
        if route.action == "models":
            return JsonReply(200, {"models": [_model_entry(m) for m in ctx.listed]})
        if route.action == "model":
            if model not in ctx.listed:
                raise _model_not_found(model, "get")
            return JsonReply(200, _model_entry(model))
        if not ctx.accepts(model):
            raise _model_not_found(model, "generateContent")
        prompt = _prompt(request)
        function = _first_function_name(as_object(request.body) or {})
        response_id = uuid.uuid4().hex[:22]
        if function is not None and prompt.asks_for_weather():
            payloads: tuple[JsonObject, ...] = (
                _function_call_payload(model, response_id, function, prompt),
            )
        else:
            answer = compose_answer(ctx.provider, model, prompt, ctx.reply)
            payloads = _payloads(model, response_id, answer, stream=route.action == "stream")
        if route.action == "chat":
            return JsonReply(200, payloads[0])
        if request.query.get("alt") == "sse":
            return StreamReply(tuple(sse_data(p, eol=b"\r\n") for p in payloads))
        return JsonReply(200, list(payloads))  # without alt=sse Gemini streams one JSON array


def _model_entry(model: str) -> JsonObject:
    return {
        "name": f"models/{model}",
        "displayName": model,
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    }


def _model_not_found(model: str, method: str) -> Rejected:
    message = (
        f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods."
    )
    return Rejected(gemini_error(404, message))


def _prompt(request: Incoming) -> Prompt:
    if not request.body_valid:
        raise _bad_request("Invalid JSON payload received.")
    body = as_object(request.body)
    if body is None:
        raise _bad_request("Invalid JSON payload received. Expected an object.")
    contents = as_list(body.get("contents"))
    if not contents:
        raise _bad_request("* GenerateContentRequest.contents: contents is not specified")
    turns: list[Turn] = []
    system = as_object(body.get("systemInstruction") or body.get("system_instruction"))
    if system is not None:
        turns.append(Turn("system", text_of(system.get("parts"))))
    for index, raw in enumerate(contents):
        content = as_object(raw)
        role = as_str(content.get("role", "user")) if content else None
        parts = as_list(content.get("parts")) if content else None
        if role is None or role not in _ROLES or parts is None:
            raise _bad_request(f"* GenerateContentRequest.contents[{index}]: invalid role or parts")
        answers = [
            p["functionResponse"] for p in parts if isinstance(p, dict) and "functionResponse" in p
        ]
        if answers:  # a tool answer travels in a user turn
            turns.append(Turn("tool", dumps(answers).decode()))
        else:
            turns.append(Turn(_ROLES[role], text_of(parts)))
    config = as_object(body.get("generationConfig") or body.get("generation_config")) or {}
    raw_limit = config.get("maxOutputTokens")
    limit = as_int(raw_limit)
    if raw_limit is not None and (limit is None or limit < 1):
        raise _bad_request("* GenerateContentRequest.generation_config.max_output_tokens: invalid")
    return Prompt(tuple(turns), limit)


def _payloads(
    model: str, response_id: str, answer: Answer, *, stream: bool
) -> tuple[JsonObject, ...]:
    """One GenerateContentResponse (non-stream) or one per chunk (stream)."""
    pieces = (answer.chunks or ("",)) if stream else (answer.text,)
    out: list[JsonObject] = []
    for index, piece in enumerate(pieces):
        final = index == len(pieces) - 1
        sent = answer.completion_tokens if final else index + 1
        candidate: JsonObject = {"content": {"parts": [{"text": piece}], "role": "model"}}
        if final:
            candidate["finishReason"] = "MAX_TOKENS" if answer.truncated else "STOP"
        candidate["index"] = 0
        usage: JsonObject = {
            "promptTokenCount": answer.prompt_tokens,
            "candidatesTokenCount": sent,
            "totalTokenCount": answer.prompt_tokens + sent,
        }
        out.append(
            {
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": response_id,
            }
        )
    return tuple(out)


FUNCTION_ARGS: Final = MappingProxyType({"city": "Paris"})


def _first_function_name(body: JsonObject) -> str | None:
    """Name of the first declared function, None when the request declares none."""
    for tool in as_list(body.get("tools")) or []:
        declarations = as_list((as_object(tool) or {}).get("functionDeclarations")) or []
        for declaration in declarations:
            name = as_str((as_object(declaration) or {}).get("name"))
            if not name:
                raise _bad_request("* GenerateContentRequest.tools: function name is required")
            return name
    return None


def _function_call_payload(model: str, response_id: str, name: str, prompt: Prompt) -> JsonObject:
    args = dict(FUNCTION_ARGS)
    completion = count_tokens(dumps(args).decode())
    part: JsonObject = {"functionCall": {"name": name, "args": args}}
    candidate: JsonObject = {
        "content": {"parts": [part], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }
    usage: JsonObject = {
        "promptTokenCount": prompt.prompt_tokens,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt.prompt_tokens + completion,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    }
