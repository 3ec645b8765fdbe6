"""Conversation history: stored messages to chat messages, trimmed to a token window."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.domain.types import ChatMessage, Role, ToolCall
from gateway.store.records import HistoryMessage

_ROLES: frozenset[str] = frozenset({"system", "user", "assistant", "tool"})


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate (about four characters a token), good enough for trimming."""
    return len(text) // 4 + 1


def to_chat_message(record: HistoryMessage) -> ChatMessage:
    role: Role = record.role if record.role in _ROLES else "user"  # type: ignore[assignment]
    calls = tuple(
        ToolCall(str(c.get("id", "")), str(c.get("name", "")), str(c.get("arguments", "")))
        for c in record.tool_calls or ()
    )
    return ChatMessage(role=role, content=record.content, tool_calls=calls)


def window_taker(token_window: int) -> Callable[[str], bool] | None:
    """For reading history newest first: accepts contents while they fit the window, exactly as
    ``trim_to_window`` would keep them (the first one always), then refuses. ``None`` when the
    window is unbounded."""
    if token_window <= 0:
        return None
    used = 0

    def take(content: str) -> bool:
        nonlocal used
        cost = estimate_tokens(content)
        if used and used + cost > token_window:
            return False
        used += cost
        return True

    return take


def trim_to_window(messages: Sequence[ChatMessage], token_window: int) -> list[ChatMessage]:
    """The most recent messages that fit the window; the newest message is always kept."""
    take = window_taker(token_window)
    if take is None:
        return list(messages)
    kept: list[ChatMessage] = []
    for message in reversed(messages):
        if not take(message.content):
            break
        kept.append(message)
    kept.reverse()
    return kept
