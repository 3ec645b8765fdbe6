"""Summaries of a py-spy speedscope profile: where the gateway's CPU goes, by package and function."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def pyspy_path() -> str:
    """py-spy from PATH, else the one installed beside this Python (the venv's)."""
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def pyspy_record(pyspy: str, pid: int, seconds: float, rate: int, dest: Path) -> list[str]:
    """The command line of one non-blocking, GIL-only py-spy recording in speedscope format."""
    return [
        pyspy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{seconds:g}",
        "--rate",
        str(rate),
        "--nonblocking",
        "--gil",
        "--format",
        "speedscope",
        "--output",
        str(dest),
    ]


# Package of a frame, from its file path (first match wins).
_PACKAGES = (
    ("/gateway/", "gateway"),
    ("/litestar/", "litestar"),
    ("/uvicorn/", "uvicorn"),
    ("/h11/", "h11"),
    ("/httptools/", "httptools"),
    ("/httpx_aiohttp/", "httpx_aiohttp"),
    ("/httpx/", "httpx"),
    ("/httpcore/", "httpcore"),
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "yarl"),
    ("/multidict/", "multidict"),
    ("/structlog/", "structlog"),
    ("/logging/", "logging (stdlib)"),
    ("/prometheus_client/", "prometheus_client"),
    ("/sqlalchemy/", "sqlalchemy"),
    ("/aiosqlite/", "aiosqlite"),
    ("/sqlite3/", "sqlite3"),
    ("/msgspec/", "msgspec"),
    ("/asyncio/", "asyncio (stdlib)"),
    ("/selectors.py", "asyncio (stdlib)"),
    ("/threading.py", "threading (stdlib)"),
    ("/queue.py", "threading (stdlib)"),
    ("/uuid.py", "uuid (stdlib)"),
    ("/json/", "json (stdlib)"),
    ("/re/", "re (stdlib)"),
    ("/enum.py", "enum (stdlib)"),
    ("/typing.py", "typing (stdlib)"),
    ("/dataclasses.py", "dataclasses (stdlib)"),
    ("/contextlib.py", "contextlib (stdlib)"),
    ("/bench/", "bench"),
)


def package_of(path: str) -> str:
    for marker, name in _PACKAGES:
        if marker in path:
            return name
    if "/lib/python3" in path and "site-packages" not in path:
        return "other stdlib"
    return "other"


def short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize_speedscope(path: Path, top: int = 25) -> dict[str, Any]:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    keys = [(f["name"], short(f.get("file") or "?")) for f in frames]
    packages = [package_of(f.get("file") or "") for f in frames]
    self_fn: Counter[tuple[str, str]] = Counter()
    incl_fn: Counter[tuple[str, str]] = Counter()
    self_pkg: Counter[str] = Counter()
    incl_pkg: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=False):
            if not stack:
                continue
            total += weight
            threads[profile.get("name", "?")] += weight
            leaf = stack[-1]  # speedscope stacks run from the root to the leaf
            self_fn[keys[leaf]] += weight
            self_pkg[packages[leaf]] += weight
            for key in {keys[i] for i in stack}:
                incl_fn[key] += weight
            for pkg in {packages[i] for i in stack}:
                incl_pkg[pkg] += weight

    def share(counter: Counter[Any], n: int) -> list[dict[str, Any]]:
        rows = []
        for key, weight in counter.most_common(n):
            name = key if isinstance(key, str) else f"{key[0]} ({key[1]})"
            rows.append({"name": name, "share": round(weight / total, 4) if total else 0.0})
        return rows

    return {
        "samples_seconds": round(total, 2),
        "threads": share(threads, 5),
        "self_by_package": share(self_pkg, 20),
        "inclusive_by_package": share(incl_pkg, 20),
        "self_by_function": share(self_fn, top),
        "inclusive_by_function": share(incl_fn, top * 2),
    }
