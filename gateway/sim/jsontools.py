"""Tiny typed helpers to encode JSON and to navigate untrusted decoded JSON."""

from __future__ import annotations

import json

JsonObject = dict[str, object]


def dumps(value: object) -> bytes:
    """Compact UTF-8 JSON, like the real provider APIs emit."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes) -> tuple[object, bool]:
    """Decode `raw`; returns (value, ok). An empty body decodes to (None, True)."""
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw), True
    except (ValueError, UnicodeDecodeError):
        return None, False


def as_object(value: object) -> JsonObject | None:
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return value
    return None


def as_list(value: object) -> list[object] | None:
    return value if isinstance(value, list) else None


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def as_int(value: object) -> int | None:
    """An int that is not a bool."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def text_of(content: object) -> str:
    """Text of an OpenAI/Anthropic message content (string or list of blocks)
    or of a Gemini `parts` list; non-text blocks are ignored."""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for block in as_list(content) or []:
        if isinstance(block, str):
            pieces.append(block)
            continue
        obj = as_object(block)
        if obj is None:
            continue
        text = as_str(obj.get("text"))
        if text is not None and obj.get("type", "text") in ("text", "input_text"):
            pieces.append(text)
    return " ".join(pieces)
