"""structlog configuration: JSON lines in production, console rendering on a terminal.

Standard-library loggers (uvicorn's) go through the same processors, so every line has one shape and
carries the ``request_id`` bound by the request middleware.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from gateway.redaction import Redactor

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

    def process(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in event.items():
            event[key] = clean(value)
        return event

    return process


def configure_logging(
    level: str = "info", fmt: str = "auto", redactor: Redactor | None = None
) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redacting(redactor or Redactor()),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # One line per request comes from our middleware; uvicorn's access line and httpx's per-call
    # INFO line would repeat it (and cost ~70 us each).
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
