"""Keeping provider keys out of everything the gateway emits."""

from __future__ import annotations

from collections.abc import Iterable

# Any run of this many characters of a key counts as leaking it.
_PIECE = 8
_CACHED_LEN = 200
_CACHE_SIZE = 4096


class Made(str):
    """Text the gateway made from nothing secret (its own random request ids): the log redaction
    passes it over. A random id needs no scan (it holds no one's key), and scanning each new one
    cost more than the rest of the access line's redaction; remembering them crowded the cache."""

    __slots__ = ()


def redact(text: str, secrets: Iterable[str | None], known: str = "") -> str:
    """Replace every key, and every 8-character piece of one, found in ``text``.

    Pieces that also occur in ``known`` (what the client itself sent) are left alone: hiding them
    would tell the client which of its own strings are pieces of a key.
    """
    for secret in secrets:
        if not secret or len(secret) < _PIECE:
            if secret and secret in text and secret not in known:
                text = text.replace(secret, "[redacted]")
            continue
        if secret in text and secret not in known:
            text = text.replace(secret, "[redacted]")
        for start in range(len(secret) - _PIECE + 1):
            piece = secret[start : start + _PIECE]
            if piece in text and piece not in known:
                text = text.replace(piece, "[redacted]")
    return text


class Redactor:
    """The current secrets (they change on reload) and a fast check for any 8-character piece of them.

    Most text holds no secret: a set lookup per 8-character window answers that in one pass, and only
    text that does hold a piece pays for ``redact``.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self._pieces: frozenset[str] = frozenset()
        # Log fields repeat (paths, model and event names): short texts are checked once.
        self._seen: dict[str, str] = {}
        self.update(secrets)

    def update(self, secrets: Iterable[str | None]) -> None:
        self._seen = {}
        self._secrets = tuple(s for s in secrets if s)
        self._pieces = frozenset(
            s[i : i + _PIECE] for s in self._secrets for i in range(max(1, len(s) - _PIECE + 1))
        )

    def contains_secret(self, text: str) -> bool:
        pieces = self._pieces
        if not pieces:
            return False
        if len(text) < _PIECE:
            return text in pieces
        return not pieces.isdisjoint([text[i : i + _PIECE] for i in range(len(text) - _PIECE + 1)])

    def __call__(self, text: str) -> str:
        seen = self._seen
        cached = seen.get(text)
        if cached is not None:
            return cached
        clean = redact(text, self._secrets) if self.contains_secret(text) else text
        if len(text) <= _CACHED_LEN:
            if len(seen) >= _CACHE_SIZE:
                seen.clear()
            seen[text] = clean
        return clean
