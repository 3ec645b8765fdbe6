"""The one small protocol every provider adapter implements.

An adapter turns a provider-neutral ``ChatRequest`` into its wire format, sends it with the pooled
``httpx.AsyncClient`` it was given, and turns the answer back into a ``ChatResult`` or batches of
``StreamEvent``.
Failures surface only as ``gateway.errors.UpstreamError`` subclasses, never as httpx exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

import httpx

from gateway.domain.types import ChatRequest, ChatResult, EventBatch


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """What every adapter needs to be built: its name, where to call, with which key and client."""

    name: str
    base_url: str
    api_key: str | None
    client: httpx.AsyncClient


class ChatProvider(Protocol):
    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One non-streaming call."""
        ...

    def stream(self, request: ChatRequest) -> AsyncGenerator[EventBatch, None]:
        """An async generator of event batches, one per upstream read that completed any events;
        closing it early closes the upstream response."""
        ...
