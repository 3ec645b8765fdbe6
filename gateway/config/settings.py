"""Resolved settings: the file's sections plus what the environment said about each provider.

Built once by the loader; everything else receives these objects (or parts of them) through
constructors and never reads the environment itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.config.schema import (
    AuthSection,
    HealthSection,
    LoggingSection,
    MemorySection,
    RouteSection,
    RuntimeSection,
    ServerSection,
    StorageSection,
    TimeoutsSection,
    Wire,
)

ProviderStatus = Literal["available", "not-configured", "disabled"]


@dataclass(frozen=True, slots=True)
class KnownProvider:
    wire: Wire
    endpoint: str
    needs_key: bool = True
    capabilities: tuple[str, ...] = ("chat", "streaming", "tools")


# The providers every gateway knows without configuration (Agno-Go's list plus Anthropic).
KNOWN_PROVIDERS: Mapping[str, KnownProvider] = {
    "openai": KnownProvider("openai", "https://api.openai.com/v1"),
    "gemini": KnownProvider("gemini", "https://generativelanguage.googleapis.com/v1beta"),
    "anthropic": KnownProvider("anthropic", "https://api.anthropic.com"),
    "groq": KnownProvider("openai", "https://api.groq.com/openai/v1"),
    "openrouter": KnownProvider("openai", "https://openrouter.ai/api/v1"),
    "glm4": KnownProvider("openai", "https://open.bigmodel.cn/api/paas/v4"),
    "siliconflow": KnownProvider("openai", "https://api.siliconflow.cn/v1"),
    "cerebras": KnownProvider("openai", "https://api.cerebras.ai/v1"),
    "modelscope": KnownProvider("openai", "https://api.modelscope.cn/v1"),
    # Ollama needs no key; it counts as configured only when its endpoint is set.
    "ollama": KnownProvider("openai", "", needs_key=False),
}


@dataclass(frozen=True, slots=True)
class ProviderRuntime:
    """One provider as the gateway will use it. ``api_key`` never appears in repr or logs."""

    name: str
    wire: Wire
    endpoint: str
    key_env: str | None
    api_key: str | None = field(repr=False)
    enabled: bool
    timeouts: TimeoutsSection
    max_connections: int
    models: tuple[str, ...]
    capabilities: tuple[str, ...]

    @property
    def missing_env(self) -> str | None:
        """The variable to set to make this provider usable, if one is missing."""
        if self.key_env is not None and not self.api_key:
            return self.key_env
        if not self.endpoint:
            return f"{self.name.upper()}_ENDPOINT"
        return None

    @property
    def status(self) -> ProviderStatus:
        if not self.enabled:
            return "disabled"
        return "not-configured" if self.missing_env else "available"

    @property
    def configured(self) -> bool:
        return self.status == "available"


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client API key as the gateway keeps it: only the SHA-256 digest of the key."""

    name: str
    sha256: bytes = field(repr=False)
    models: tuple[str, ...] = ()
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSection
    logging: LoggingSection
    providers: Mapping[str, ProviderRuntime]
    models: Mapping[str, str]
    memory: MemorySection
    runtime: RuntimeSection
    routes: Mapping[str, RouteSection]
    health: HealthSection
    storage: StorageSection
    auth: AuthSection
    admin_token: str | None = field(default=None, repr=False)
    client_keys: tuple[ClientKey, ...] = ()
    # Set when several workers share metrics (prometheus-client multiprocess mode).
    metrics_multiproc_dir: str | None = None
    config_path: Path | None = None
    env_file: Path | None = None

    def secrets(self) -> tuple[str, ...]:
        """Every secret the gateway holds, for redaction."""
        keys = [p.api_key for p in self.providers.values() if p.api_key]
        if self.admin_token:
            keys.append(self.admin_token)
        return tuple(keys)
