"""Every log line written while a request is served carries its id, from our loggers and stdlib's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# Run in a process of its own: configure_logging sets structlog's and the root logger's config.
_SCRIPT = """
import asyncio, logging
import structlog
from gateway.observability.logging import REQUEST_ID, configure_logging

configure_logging("info", "json")
log = structlog.get_logger("gateway")

async def main():
    bound = REQUEST_ID.set("req-7")
    log.info("inside")
    logging.getLogger("uvicorn.error").warning("stdlib inside")
    async def child():
        log.info("in_task")
    await asyncio.create_task(child())
    log.info("explicit", request_id="given")
    REQUEST_ID.reset(bound)
    log.info("outside")

asyncio.run(main())
"""


def test_lines_inside_a_request_carry_its_id_and_lines_outside_none() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    ids = {line["event"]: line.get("request_id") for line in lines}
    assert ids == {
        "inside": "req-7",
        "stdlib inside": "req-7",
        "in_task": "req-7",
        "explicit": "given",
        "outside": None,
    }
