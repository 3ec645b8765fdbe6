"""Fault-injection plan of one simulated server, thread-safe.

`FaultPlan` is an immutable snapshot; `Faults` holds the current plan behind a
lock so tests (any thread) and the HTTP control API (server loop) can change it
while requests are served.  `Faults.draw()` atomically consumes one queued
status and returns the `FaultDecision` for a single request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Final

from gateway.sim.jsontools import JsonObject, as_int


class Unset(Enum):
    UNSET = "UNSET"


UNSET: Final = Unset.UNSET

# camelCase (HTTP control API) -> snake_case (Python API)
_JSON_FIELDS: Final = (
    ("statuses", "statuses"),
    ("statusAlways", "status_always"),
    ("retryAfter", "retry_after"),
    ("errorMessage", "error_message"),
    ("latencyMs", "latency_ms"),
    ("hang", "hang"),
    ("cutAfterChunks", "cut_after_chunks"),
    ("stallAfterChunks", "stall_after_chunks"),
    ("chunkDelayMs", "chunk_delay_ms"),
)


class FaultError(ValueError):
    """An invalid fault setting (bad type or out-of-range value)."""


@dataclass(frozen=True)
class FaultPlan:
    """Faults applied to provider requests (never to the `/_sim` control API).

    statuses:           queue of error statuses, one consumed per request.
    status_always:      error status for every request while set (after the queue).
    retry_after:        seconds; adds `Retry-After` to 429/503 error answers.
    error_message:      message put into injected error bodies.
    latency_ms:         delay before the response headers.
    hang:               send nothing until the client disconnects / server stops.
    cut_after_chunks:   streams only: send N frames then drop the connection.
    stall_after_chunks: streams only: send N frames then go silent (connection open).
    chunk_delay_ms:     streams only: delay between frames.
    """

    statuses: tuple[int, ...] = ()
    status_always: int | None = None
    retry_after: int | None = None
    error_message: str | None = None
    latency_ms: int = 0
    hang: bool = False
    cut_after_chunks: int | None = None
    stall_after_chunks: int | None = None
    chunk_delay_ms: int = 0

    def to_json(self) -> JsonObject:
        return {camel: _jsonable(getattr(self, snake)) for camel, snake in _JSON_FIELDS}

    @property
    def is_clear(self) -> bool:
        return self == FaultPlan()


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one request (the consumed status, if any, is fixed)."""

    status: int | None
    retry_after: int | None
    error_message: str | None
    latency_ms: int
    hang: bool
    cut_after_chunks: int | None
    stall_after_chunks: int | None
    chunk_delay_ms: int


class Faults:
    """Thread-safe holder of the current `FaultPlan`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan = FaultPlan()

    @property
    def plan(self) -> FaultPlan:
        with self._lock:
            return self._plan

    def update(
        self,
        *,
        statuses: Iterable[int] | Unset = UNSET,
        status_always: int | Unset | None = UNSET,
        retry_after: int | Unset | None = UNSET,
        error_message: str | Unset | None = UNSET,
        latency_ms: int | Unset = UNSET,
        hang: bool | Unset = UNSET,
        cut_after_chunks: int | Unset | None = UNSET,
        stall_after_chunks: int | Unset | None = UNSET,
        chunk_delay_ms: int | Unset = UNSET,
    ) -> FaultPlan:
        """Change the given fields only (others keep their value); returns the new plan.
        `statuses` replaces the remaining queue."""
        given: dict[str, object] = {
            "statuses": statuses,
            "status_always": status_always,
            "retry_after": retry_after,
            "error_message": error_message,
            "latency_ms": latency_ms,
            "hang": hang,
            "cut_after_chunks": cut_after_chunks,
            "stall_after_chunks": stall_after_chunks,
            "chunk_delay_ms": chunk_delay_ms,
        }
        validators = dict(_VALIDATORS)
        changes = {
            name: validators[name](value, name)
            for name, value in given.items()
            if not isinstance(value, Unset)
        }
        with self._lock:
            self._plan = replace(self._plan, **changes)  # type: ignore[arg-type]
            return self._plan

    def update_from_json(self, data: Mapping[str, object]) -> FaultPlan:
        """Apply a camelCase JSON object (HTTP control API); unknown keys are rejected."""
        known = dict(_JSON_FIELDS)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise FaultError(
                f"unknown fault field(s): {', '.join(unknown)}; expected {', '.join(known)}"
            )
        kwargs: dict[str, Any] = {known[key]: value for key, value in data.items()}
        return self.update(**kwargs)  # values are validated by update()

    def reset(self) -> FaultPlan:
        with self._lock:
            self._plan = FaultPlan()
            return self._plan

    def draw(self) -> FaultDecision:
        """Decide the faults of one request, consuming the head of the status queue."""
        with self._lock:
            plan = self._plan
            status = plan.status_always
            if plan.statuses:
                status = plan.statuses[0]
                self._plan = replace(plan, statuses=plan.statuses[1:])
        return FaultDecision(
            status=status,
            retry_after=plan.retry_after,
            error_message=plan.error_message,
            latency_ms=plan.latency_ms,
            hang=plan.hang,
            cut_after_chunks=plan.cut_after_chunks,
            stall_after_chunks=plan.stall_after_chunks,
            chunk_delay_ms=plan.chunk_delay_ms,
        )


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def _status(value: object, name: str) -> int:
    status = as_int(value)
    if status is None or not 400 <= status <= 599:
        raise FaultError(f"{name}: error status must be an integer in 400..599, got {value!r}")
    return status


def _statuses(value: object, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise FaultError(f"{name} must be a list of error statuses, got {value!r}")
    return tuple(_status(item, name) for item in value)


def _opt_status(value: object, name: str) -> int | None:
    return None if value is None else _status(value, name)


def _opt_text(value: object, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise FaultError(f"{name} must be a string or null, got {value!r}")
    return value


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{name} must be a boolean, got {value!r}")
    return value


def _count(value: object, name: str) -> int:
    number = as_int(value)
    if number is None or number < 0:
        raise FaultError(f"{name} must be a non-negative integer, got {value!r}")
    return number


def _opt_count(value: object, name: str) -> int | None:
    return None if value is None else _count(value, name)


_VALIDATORS: Final[tuple[tuple[str, Callable[[object, str], object]], ...]] = (
    ("statuses", _statuses),
    ("status_always", _opt_status),
    ("retry_after", _opt_count),
    ("error_message", _opt_text),
    ("latency_ms", _count),
    ("hang", _flag),
    ("cut_after_chunks", _opt_count),
    ("stall_after_chunks", _opt_count),
    ("chunk_delay_ms", _count),
)
