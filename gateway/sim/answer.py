"""Deterministic, wire-neutral answers: reply text, stream chunks and token counts.

Every wire module turns its request into a `Prompt`, asks `compose_answer` for
an `Answer`, and renders that in its own format.  Tokens are whitespace words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USER_TEXT_LIMIT = 200
_CHUNK_RE = re.compile(r"\s*\S+\s*")
_WEATHER_RE = re.compile(r"\bweather\b", re.IGNORECASE)


@dataclass(frozen=True)
class Turn:
    role: str  # normalised: "system" | "user" | "assistant" | "tool"
    text: str


@dataclass(frozen=True)
class Prompt:
    turns: tuple[Turn, ...]
    max_tokens: int | None = None

    @property
    def last_user_text(self) -> str:
        for turn in reversed(self.turns):
            if turn.role == "user":
                return turn.text
        return ""

    @property
    def ends_with_user(self) -> bool:
        return bool(self.turns) and self.turns[-1].role == "user"

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(t.text) for t in self.turns)

    def asks_for_weather(self) -> bool:
        """True when the final turn is a user turn mentioning "weather"."""
        return self.ends_with_user and _WEATHER_RE.search(self.last_user_text) is not None


@dataclass(frozen=True)
class Answer:
    text: str
    chunks: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    truncated: bool  # cut by max_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def count_tokens(text: str) -> int:
    return len(text.split())


def split_chunks(text: str) -> tuple[str, ...]:
    """One chunk per word, each carrying the whitespace that follows it."""
    return tuple(_CHUNK_RE.findall(text))


def default_reply(provider: str, model: str, user_text: str) -> str:
    return f"Hello from {provider}/{model}: you said '{user_text[:USER_TEXT_LIMIT]}'"


def compose_answer(provider: str, model: str, prompt: Prompt, reply: str | None = None) -> Answer:
    text = reply if reply is not None else default_reply(provider, model, prompt.last_user_text)
    chunks = split_chunks(text)
    truncated = prompt.max_tokens is not None and prompt.max_tokens < len(chunks)
    if truncated and prompt.max_tokens is not None:
        chunks = chunks[: prompt.max_tokens]
        text = "".join(chunks)
    return Answer(
        text=text,
        chunks=chunks,
        prompt_tokens=prompt.prompt_tokens,
        completion_tokens=len(chunks),
        truncated=truncated,
    )
