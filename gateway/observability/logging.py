"""structlog configuration: JSON lines in production, console rendering on a terminal.

Standard-library loggers (uvicorn's) go through the same processors, so every line has one shape and
carries the ``request_id`` bound by the request middleware.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final

import msgspec
import structlog

from gateway.redaction import Made, Redactor

_ENCODER = msgspec.json.Encoder(enc_hook=str)

# The id of the request being served, set by the request middleware for the request's task (and the
# tasks it starts). One variable read per line instead of structlog's ``merge_contextvars``, which
# copies the whole context and scans every variable in it on every line.
REQUEST_ID: Final = ContextVar[str | None]("gateway_request_id", default=None)


def add_request_id(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def redacting(redactor: Redactor) -> Any:
    """A processor that removes every secret (and 8-character piece of one) from every field."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redactor(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if value is None or isinstance(value, int | float | bool):
            return value
        return redactor(str(value))

    # a set: one hash test, not five compares
    plain = frozenset((int, float, bool, type(None), Made))

    def process(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in event.items():
            kind = type(value)
            if kind is str:
                event[key] = redactor(value)
            elif kind not in plain:
                event[key] = clean(value)
        return event

    return process


def _json_bytes(event: dict[str, Any], **_: Any) -> bytes:
    return _ENCODER.encode(event)


def _logger_factory(use_json: bool) -> Callable[..., Any]:
    """Loggers that write a rendered line straight to stderr (bytes for JSON), named for ``logger``."""
    if use_json:
        stream = sys.stderr.buffer

        def bytes_logger(*args: Any) -> structlog.BytesLogger:
            return structlog.BytesLogger(stream, name=str(args[0]) if args else None)

        return bytes_logger

    def print_logger(*args: Any) -> structlog.PrintLogger:
        logger = structlog.PrintLogger(sys.stderr)
        logger.name = str(args[0]) if args else None  # type: ignore[attr-defined]
        return logger

    return print_logger


def configure_logging(
    level: str = "info", fmt: str = "auto", redactor: Redactor | None = None
) -> None:
    """Our own loggers run structlog's native pipeline: a call below ``level`` costs nothing, and a
    line is rendered (msgspec for JSON) and written in one go, without a stdlib ``LogRecord`` and
    handler chain (about half the cost of the one access line per request). Standard-library loggers
    (uvicorn's, asyncio's) go through a formatter with the same processors, so every line has one
    shape, carries the ``request_id`` bound by the request middleware, and is redacted."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    threshold = _LEVELS.get(level, logging.INFO)
    shared: list[Any] = [
        add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    redact = redacting(redactor or Redactor())
    # Stamped after redaction: the time is ours and different on every line, never worth a scan.
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    console = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact,
            stamp,
            structlog.processors.JSONRenderer(serializer=_json_bytes) if use_json else console,
        ],
        logger_factory=_logger_factory(use_json),
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            stamp,
            structlog.processors.JSONRenderer() if use_json else console,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # One line per request comes from our middleware; uvicorn's access line and httpx's per-call
    # INFO line would repeat it (and cost ~70 us each).
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
