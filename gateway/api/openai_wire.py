"""OpenAI chat-completions requests on ``/v1``: the body parsed, validated, made a ``ChatRequest``.

The body is decoded once to a dict; the fields the gateway needs are validated and taken out, and
everything else stays in ``ChatRequest.passthrough``. When every candidate speaks the OpenAI wire
the OpenAI parameters stay there too, exactly as the client sent them (``max_completion_tokens``,
``tools`` with ``strict``, ``stop`` as a string...); when a candidate needs translating they are
moved into the typed ``ChatRequest`` fields the Gemini and Anthropic adapters understand.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.domain.types import ChatMessage, ChatRequest, Role, ToolCall, ToolSpec
from gateway.errors import InvalidRequestError, UnsupportedParameterError

MAX_FALLBACKS = 8
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
# Body fields the gateway itself consumes: never forwarded as they are.
_OWN_FIELDS = ("model", "messages", "stream", "fallbacks", "n")
# OpenAI parameters with a typed ChatRequest field, moved there when a candidate needs translating.
_TYPED_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
)
_decoder = msgspec.json.Decoder()


def _invalid(message: str, where: str) -> InvalidRequestError:
    return InvalidRequestError(message, field=where)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


# -- request -------------------------------------------------------------------------------------


class ChatCall(msgspec.Struct, frozen=True):
    """A validated chat-completions body: what the gateway needs, and the rest to pass through."""

    model: str
    messages: tuple[ChatMessage, ...]
    stream: bool = False
    include_usage: bool = False
    fallbacks: tuple[str, ...] = ()
    params: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_request(self, *, translate: bool) -> ChatRequest:
        """The provider-neutral request; ``translate`` when some candidate is not OpenAI-wire."""
        if not translate:
            return ChatRequest(model=self.model, messages=self.messages, passthrough=self.params)
        rest = {k: v for k, v in self.params.items() if k not in _TYPED_FIELDS}
        p = self.params
        max_tokens = p.get("max_completion_tokens")
        stop = p.get("stop")
        return ChatRequest(
            model=self.model,
            messages=self.messages,
            temperature=p.get("temperature"),
            top_p=p.get("top_p"),
            max_tokens=max_tokens if max_tokens is not None else p.get("max_tokens"),
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            tools=_tool_specs(p.get("tools")),
            tool_choice=p.get("tool_choice"),
            passthrough=rest,
            openai_params=p,
        )


def parse_chat_body(raw: bytes) -> ChatCall:
    """Decode and validate a chat-completions body; errors name the field at fault."""
    if not raw.strip():
        raise _invalid("request body is empty; expected a JSON object", "$")
    try:
        body = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise _invalid(f"malformed JSON: {exc}", "$") from None
    if not isinstance(body, dict):
        raise _invalid(f"the body must be a JSON object, not {_type_name(body)}", "$")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("'model' is required and must be a non-empty string", "model")
    messages = parse_messages(body.get("messages"))
    stream = _optional(body, "stream", bool) or False
    options = _optional(body, "stream_options", dict) or {}
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise _invalid("'include_usage' must be a boolean", "stream_options.include_usage")
    _check_params(body)
    return ChatCall(
        model=model.strip(),
        messages=messages,
        stream=stream,
        include_usage=bool(include_usage),
        fallbacks=_fallbacks(body.get("fallbacks")),
        params={k: v for k, v in body.items() if k not in _OWN_FIELDS},
    )


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        expected = {bool: "a boolean", dict: "an object", list: "an array", str: "a string"}[kind]
        raise _invalid(f"'{key}' must be {expected}, got {_type_name(value)}", key)
    return value


def _number(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _invalid(f"'{key}' must be a number, got {_type_name(value)}", key)


def _positive_int(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"'{key}' must be a positive integer, got {value!r}"[:200], key)


def _check_params(body: dict[str, Any]) -> None:
    """Type checks of the OpenAI parameters the gateway knows; values are left to the provider."""
    _number(body, "temperature")
    _number(body, "top_p")
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise UnsupportedParameterError("'n' must be 1: the gateway returns one choice", field="n")
    stop = body.get("stop")
    text_list = isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    if stop is not None and not isinstance(stop, str) and not text_list:
        raise _invalid("'stop' must be a string or an array of strings", "stop")
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, str | dict):
        raise _invalid("'tool_choice' must be a string or an object", "tool_choice")
    for i, tool in enumerate(_optional(body, "tools", list) or []):
        _check_tool(tool, f"tools[{i}]")


def _check_tool(tool: object, where: str) -> None:
    if not isinstance(tool, dict):
        raise _invalid("each tool must be an object", where)
    if tool.get("type", "function") != "function":
        return  # other tool types reach OpenAI-wire providers as they are; translation rejects them
    function = tool.get("function")
    if not isinstance(function, dict):
        raise _invalid("a function tool needs a 'function' object", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid("a function tool needs a name", f"{where}.function.name")
    if not isinstance(function.get("description", ""), str):
        raise _invalid("'description' must be a string", f"{where}.function.description")
    if not isinstance(function.get("parameters", {}), dict):
        raise _invalid("'parameters' must be a JSON schema object", f"{where}.function.parameters")


def _tool_specs(tools: object) -> tuple[ToolSpec, ...]:
    specs = []
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type", "function")
        if kind != "function":
            raise UnsupportedParameterError(
                f"tool type '{kind}' can only be sent to OpenAI-wire providers",
                field=f"tools[{i}].type",
            )
        function = tool["function"]
        specs.append(
            ToolSpec(
                name=function["name"],
                description=function.get("description") or "",
                parameters=function.get("parameters") or {},
            )
        )
    return tuple(specs)


def _fallbacks(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _invalid("'fallbacks' must be an array of model names", "fallbacks")
    if len(value) > MAX_FALLBACKS:
        raise _invalid(f"at most {MAX_FALLBACKS} fallbacks are allowed", "fallbacks")
    return tuple(v.strip() for v in value)


def header_fallbacks(value: str | None) -> tuple[str, ...]:
    """``X-Gateway-Fallbacks: a,b`` -> ``("a", "b")``."""
    names = tuple(n.strip() for n in (value or "").split(",") if n.strip())
    if len(names) > MAX_FALLBACKS:
        raise _invalid(f"at most {MAX_FALLBACKS} fallbacks are allowed", "X-Gateway-Fallbacks")
    return names


# -- messages ------------------------------------------------------------------------------------


def parse_messages(value: object) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise _invalid("'messages' is required and must be a non-empty array", "messages")
    return tuple(_message(raw, f"messages[{i}]") for i, raw in enumerate(value))


def _message(raw: object, where: str) -> ChatMessage:
    if not isinstance(raw, dict):
        raise _invalid(f"each message must be an object, got {_type_name(raw)}", where)
    role_name = raw.get("role")
    role = _ROLES.get(role_name) if isinstance(role_name, str) else None
    if role is None:
        raise _invalid(
            f"role must be one of {', '.join(_ROLES)}, got {str(role_name)[:32]!r}", f"{where}.role"
        )
    content = _content(raw.get("content"), f"{where}.content", optional=role == "assistant")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise _invalid("'name' must be a string", f"{where}.name")
    tool_calls: tuple[ToolCall, ...] = ()
    if role == "assistant" and raw.get("tool_calls") is not None:
        tool_calls = _tool_calls(raw["tool_calls"], f"{where}.tool_calls")
    tool_call_id = raw.get("tool_call_id")
    if role == "tool" and (not isinstance(tool_call_id, str) or not tool_call_id):
        raise _invalid("a tool message needs its 'tool_call_id'", f"{where}.tool_call_id")
    return ChatMessage(
        role=role,
        content=content,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id if role == "tool" else None,
        name=name,
    )


def _content(value: object, where: str, *, optional: bool) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        if optional:
            return ""
        raise _invalid("'content' is required", where)
    if not isinstance(value, list):
        raise _invalid(
            f"'content' must be a string or an array of parts, got {_type_name(value)}", where
        )
    texts = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            raise UnsupportedParameterError(
                f"content part {j} has type {str(kind)[:32]!r}: only text parts are supported",
                field=where,
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise _invalid(f"content part {j} needs a 'text' string", where)
        texts.append(text)
    return "\n".join(texts)


def _tool_calls(value: object, where: str) -> tuple[ToolCall, ...]:
    if not isinstance(value, list):
        raise _invalid("'tool_calls' must be an array", where)
    calls = []
    for j, raw in enumerate(value):
        at = f"{where}[{j}]"
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or not isinstance(function, dict):
            raise _invalid("a tool call needs a 'function' object", f"{at}.function")
        call_id, name = raw.get("id"), function.get("name")
        arguments = function.get("arguments", "")
        if not isinstance(call_id, str) or not call_id:
            raise _invalid("a tool call needs an 'id'", f"{at}.id")
        if not isinstance(name, str) or not name:
            raise _invalid("a tool call needs a function name", f"{at}.function.name")
        if not isinstance(arguments, str):
            raise _invalid("'arguments' must be a JSON string", f"{at}.function.arguments")
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return tuple(calls)
