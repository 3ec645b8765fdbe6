"""Small helpers to answer JSON fast (msgspec encodes, Litestar just sends bytes)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from litestar import Response

_encoder = msgspec.json.Encoder()


def rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=_encoder.encode(content),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def encode(content: Any) -> bytes:
    return _encoder.encode(content)
