"""Thread-safe log of the provider requests a simulated server received.

Secrets are redacted before anything is stored: auth headers, cookies and the
Gemini `?key=` query parameter.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from gateway.sim.jsontools import JsonObject

REDACTED: Final = "REDACTED"
_SECRET_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie"}
)
_SECRET_QUERY: Final = frozenset({"key", "api_key"})


@dataclass(frozen=True)
class RequestRecord:
    """One received request. `status` is None until the response status is sent
    (stays None for hung requests)."""

    seq: int
    time: float
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    model: str | None
    stream: bool
    body: object
    status: int | None = None

    def to_json(self) -> JsonObject:
        return {
            "seq": self.seq,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "model": self.model,
            "stream": self.stream,
            "body": self.body,
            "status": self.status,
        }


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() not in _SECRET_HEADERS:
            out[name] = value
        elif " " in value and name.lower().endswith("authorization"):
            out[name] = f"{value.split(' ', 1)[0]} {REDACTED}"  # keep the scheme
        else:
            out[name] = REDACTED
    return out


def redact_query(query: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in _SECRET_QUERY else v) for k, v in query.items()}


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[int, RequestRecord] = {}
        self._seq = itertools.count(1)

    def add(
        self,
        *,
        time: float,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        model: str | None,
        stream: bool,
        body: object,
    ) -> int:
        """Store a request (secrets redacted here); returns its sequence number."""
        with self._lock:
            seq = next(self._seq)
            self._records[seq] = RequestRecord(
                seq=seq,
                time=time,
                method=method,
                path=path,
                query=redact_query(query),
                headers=redact_headers(headers),
                model=model,
                stream=stream,
                body=body,
            )
            return seq

    def set_status(self, seq: int, status: int) -> None:
        with self._lock:
            record = self._records.get(seq)
            if record is not None:
                self._records[seq] = replace(record, status=status)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def clear(self) -> int:
        with self._lock:
            count = len(self._records)
            self._records.clear()
            return count
