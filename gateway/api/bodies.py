"""Request bodies of the AgentOS API, decoded with msgspec; both Agno-Go shapes are accepted.

Decoding errors become ``InvalidRequestError`` naming the field at fault (``$.model.modelId`` ->
``model.modelId``).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

import msgspec

from gateway.domain.agents import AgentSpec
from gateway.domain.types import ChatMessage
from gateway.errors import InvalidRequestError

T = TypeVar("T")

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


class _Body(msgspec.Struct, rename="camel", forbid_unknown_fields=False):
    pass


class ModelObject(_Body):
    provider: str
    model_id: str
    stream: bool | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_ms: int | None = None


class ToolsObject(_Body):
    registered: list[Any] = msgspec.field(default_factory=list)
    enabled: list[str] = msgspec.field(default_factory=list)
    mcp_endpoints: list[str] = msgspec.field(default_factory=list)
    tool_timeout_ms: int | None = None


class MemoryObject(_Body):
    store_type: str | None = None
    namespace: str | None = None
    retention: str | None = None
    token_window: int | None = None


class AgentConfig(_Body):
    fallback_model: str | None = None
    fallback_models: list[str] = msgspec.field(default_factory=list)
    route: str | None = None


class AgentBody(_Body):
    name: str
    model: str | ModelObject
    description: str = ""
    instructions: str | None = None
    tools: list[Any] | ToolsObject | None = None
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    memory: MemoryObject | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class SessionBody(_Body):
    user_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class MessageIn(_Body):
    role: str
    content: str


class MessageBody(_Body):
    role: str | None = None
    content: str | None = None
    messages: list[MessageIn] | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


def decode(body: bytes, type_: type[T]) -> T:
    if not body.strip():
        raise InvalidRequestError("request body is empty; expected a JSON object", field="$")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        message, path = match.group("msg"), (match.group("path") or "").lstrip(".")
        missing = _MISSING.search(message)
        if missing:
            path = f"{path}.{missing.group('name')}" if path else missing.group("name")
        raise InvalidRequestError(f"invalid body: {message}", field=path or "$") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequestError(f"malformed JSON: {exc}", field="$") from None


def check_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequestError(
            f"{field} must be a UUID, got {value[:64]!r}", field=field
        ) from None


def _required_text(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidRequestError(f"{field} must not be empty", field=field)
    return value


def agent_spec(body: AgentBody) -> AgentSpec:
    """Normalize either payload shape into one agent document."""
    name = _required_text(body.name, "name")
    document: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if isinstance(body.model, ModelObject):
        provider = _required_text(body.model.provider, "model.provider")
        model_id = _required_text(body.model.model_id, "model.modelId")
        model = f"{provider}:{model_id}"
        for key, value in msgspec.structs.asdict(body.model).items():
            if key not in ("provider", "model_id") and value is not None:
                options[_camel(key)] = value
    else:
        model = _required_text(body.model, "model")
    config = dict(body.config)
    try:
        typed = msgspec.convert(config, AgentConfig)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        path = "config" + (match.group("path") or "")
        raise InvalidRequestError(f"invalid body: {match.group('msg')}", field=path) from None
    fallbacks = ([typed.fallback_model] if typed.fallback_model else []) + typed.fallback_models
    if isinstance(body.tools, ToolsObject):
        tools: Any = msgspec.to_builtins(body.tools)
    else:
        tools = body.tools if body.tools is not None else []
    memory = msgspec.to_builtins(body.memory) if body.memory is not None else None
    document.update(
        instructions=body.instructions,
        tools=tools,
        config=config,
        memory=memory,
        metadata=body.metadata,
    )
    if options:
        document["modelOptions"] = options
    return AgentSpec(
        name=name,
        model=model,
        description=body.description,
        instructions=body.instructions,
        fallbacks=tuple(fallbacks),
        route=typed.route,
        temperature=options.get("temperature"),
        max_tokens=options.get("maxTokens"),
        token_window=body.memory.token_window if body.memory else None,
        document=document,
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_INPUT_ROLES = ("user", "system", "assistant")


def chat_messages(body: MessageBody) -> list[ChatMessage]:
    if body.messages is not None:
        items = [(m.role, m.content, f"messages[{i}]") for i, m in enumerate(body.messages)]
    elif body.content is not None:
        items = [(body.role or "user", body.content, "")]
    else:
        raise InvalidRequestError(
            "expected 'content' (with optional 'role') or 'messages'", field="content"
        )
    if not items:
        raise InvalidRequestError("messages must not be empty", field="messages")
    result = []
    for role, content, where in items:
        prefix = f"{where}." if where else ""
        if role not in _INPUT_ROLES:
            raise InvalidRequestError(
                f"role must be one of {', '.join(_INPUT_ROLES)}, got {role[:32]!r}",
                field=f"{prefix}role",
            )
        if not content.strip():
            raise InvalidRequestError("content must not be empty", field=f"{prefix}content")
        result.append(ChatMessage(role=role, content=content))  # type: ignore[arg-type]
    return result
