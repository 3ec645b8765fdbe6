"""Keeping provider keys out of everything the gateway emits."""

from __future__ import annotations

from collections.abc import Iterable

# Any run of this many characters of a key counts as leaking it.
_PIECE = 8


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every key, and every 8-character piece of one, found in ``text``."""
    for secret in secrets:
        if not secret or len(secret) < _PIECE:
            if secret and secret in text:
                text = text.replace(secret, "[redacted]")
            continue
        if secret in text:
            text = text.replace(secret, "[redacted]")
        for start in range(len(secret) - _PIECE + 1):
            piece = secret[start : start + _PIECE]
            if piece in text:
                text = text.replace(piece, "[redacted]")
    return text
