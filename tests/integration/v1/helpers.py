"""Helpers shared by the /v1 tests."""

from __future__ import annotations

from typing import Any

import httpx

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def sse_payloads(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of a streamed answer, in order (``[DONE]`` kept as text)."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def metric_value(client: httpx.Client, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
