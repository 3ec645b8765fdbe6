"""Provider-neutral chat types: the only shapes that cross api/, routing/ and providers/.

Wire formats (OpenAI, Gemini, Anthropic) are translated to and from these inside each adapter.

They are frozen ``msgspec.Struct`` types, not frozen dataclasses: a frozen dataclass sets each field
through ``object.__setattr__`` (1.6 us for a ``StreamEvent``, made for every streamed chunk, against
0.1 us). Use ``msgspec.structs.replace`` for a changed copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from msgspec import Struct, field

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class ToolCall(Struct, frozen=True):
    """A function call requested by the model; ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str


class ToolSpec(Struct, frozen=True):
    """A function the model may call; ``parameters`` is a JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


class ChatMessage(Struct, frozen=True):
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class Usage(Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatRequest(Struct, frozen=True):
    """One model call, already resolved to a concrete upstream model id.

    ``passthrough`` carries OpenAI parameters the gateway does not interpret; OpenAI-wire adapters
    forward them unchanged, other adapters translate what they can and reject the rest.
    """

    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    passthrough: Mapping[str, Any] = field(default_factory=dict)
    # The client's own OpenAI parameters when they also had to be translated into the typed fields
    # above (a plan mixing wire formats): OpenAI-wire adapters send these exactly as given.
    openai_params: Mapping[str, Any] = field(default_factory=dict)


class ChatResult(Struct, frozen=True):
    content: str
    model: str
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)


class ToolCallDelta(Struct, frozen=True):
    """A piece of a streamed tool call; pieces with the same ``index`` concatenate."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class StreamEvent(Struct, frozen=True):
    """One step of a streamed answer: text, tool-call pieces, and at the end a finish reason and usage."""

    delta: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None

    @property
    def has_content(self) -> bool:
        return bool(self.delta or self.tool_calls)


# The events of one upstream read, in order, never empty: streams travel in these batches so a burst
# of events (the end of an answer: finish, usage, done) is relayed as one write, not one per event.
EventBatch = tuple[StreamEvent, ...]
