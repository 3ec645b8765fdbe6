"""Builds one adapter and one pooled ``httpx.AsyncClient`` per configured provider.

``apply()`` is called at start-up and on every reload; a provider whose settings did not change keeps
its adapter and warm connections. Clients of replaced adapters are closed at shutdown, not at reload,
because requests in flight may still be using them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from gateway.config.settings import ProviderRuntime
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import AdapterOptions, ChatProvider
from gateway.providers.gemini import GeminiProvider
from gateway.providers.http import ClientLimits, build_client
from gateway.providers.openai_compat import OpenAICompatProvider

TransportFactory = Callable[[ProviderRuntime], httpx.AsyncBaseTransport | None]


def _limits(runtime: ProviderRuntime) -> ClientLimits:
    t = runtime.timeouts
    return ClientLimits(
        connect_timeout_s=t.connect,
        read_timeout_s=t.read,
        write_timeout_s=t.write,
        pool_timeout_s=t.pool,
        max_connections=runtime.max_connections,
        max_keepalive=min(runtime.max_connections, 64),
    )


def build_adapter(runtime: ProviderRuntime, client: httpx.AsyncClient) -> ChatProvider:
    options = AdapterOptions(
        name=runtime.name, base_url=runtime.endpoint, api_key=runtime.api_key, client=client
    )
    if runtime.wire == "gemini":
        return GeminiProvider(options)
    if runtime.wire == "anthropic":
        return AnthropicProvider(options)
    return OpenAICompatProvider(options)


class ProviderRegistry:
    def __init__(
        self, transport_factory: TransportFactory | None = None, *, stack: str = "httptools"
    ) -> None:
        self._transport_factory = transport_factory
        self._stack = stack
        self._adapters: dict[str, ChatProvider] = {}
        self._runtimes: dict[str, ProviderRuntime] = {}
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._retired: list[httpx.AsyncClient] = []

    def apply(self, providers: Mapping[str, ProviderRuntime]) -> None:
        for name in list(self._adapters):
            if providers.get(name) != self._runtimes.get(name) or not providers[name].configured:
                self._adapters.pop(name)
                self._runtimes.pop(name)
                self._retired.append(self._clients.pop(name))
        for name, runtime in providers.items():
            if name in self._adapters or not runtime.configured:
                continue
            transport = self._transport_factory(runtime) if self._transport_factory else None
            client = build_client(_limits(runtime), transport, stack=self._stack)
            self._clients[name] = client
            self._runtimes[name] = runtime
            self._adapters[name] = build_adapter(runtime, client)

    def get(self, name: str) -> ChatProvider | None:
        return self._adapters.get(name)

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._retired]:
            await client.aclose()
        self._clients.clear()
        self._retired.clear()
        self._adapters.clear()
        self._runtimes.clear()
