"""The shape of ``config/default.yaml``: frozen msgspec structs that reject unknown keys.

Agno-Go's layout (``server``, ``logging``, ``providers``, ``memory``, ``runtime``) plus the gateway's own
sections (``models``, ``routes``, ``health``, ``storage``, ``auth``). Keys are camelCase.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import msgspec

Wire = Literal["openai", "gemini", "anthropic"]


class Duration(float):
    """Seconds, written in YAML as ``500ms``, ``30s``, ``5m``, ``1h`` or a bare number of seconds."""

    _PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
    _UNITS: ClassVar[dict[str | None, float]] = {
        "ms": 0.001,
        "s": 1.0,
        "m": 60.0,
        "h": 3600.0,
        None: 1.0,
    }

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError(f"expected a duration like 500ms or 30s, got {value!r}")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError(f"expected a non-negative duration, got {value!r}")
            return cls(value)
        match = cls._PATTERN.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"expected a duration like 500ms or 30s, got {value!r}")
        return cls(float(match.group(1)) * cls._UNITS[match.group(2)])


def dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Duration:
        return Duration.parse(obj)
    raise NotImplementedError


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    pass


class ServerSection(_Section, frozen=True):
    host: str = "0.0.0.0"  # noqa: S104 - Agno-Go's default; auth rules tighten this later
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 1000
    max_output_tokens: int = 65536
    drain_timeout: Duration = Duration(20)
    # After SIGTERM: answer /ready with 503 this long (load balancers stop sending), then stop
    # accepting and let in-flight requests, streams included, finish within drainTimeout.
    shutdown_delay: Duration = Duration(1)


class LoggingSection(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class TimeoutsSection(_Section, frozen=True):
    connect: Duration = Duration(5)
    read: Duration = Duration(60)
    write: Duration = Duration(10)
    pool: Duration = Duration(5)
    first_token: Duration = Duration(30)


class ProviderSection(_Section, frozen=True):
    endpoint: str = ""
    wire: Wire | None = None
    api_key_env: str | None = None
    enabled: bool = True
    timeouts: TimeoutsSection | None = None
    max_connections: int = 256
    models: list[str] = msgspec.field(default_factory=list)


class MemorySection(_Section, frozen=True):
    store_type: str = "memory"
    token_window: int = 256


class RouterSection(_Section, frozen=True):
    max_provider_concurrency: int = 128
    provider_timeout: Duration = Duration(55)
    provider_retries: int = 1
    provider_backoff: Duration = Duration(0.05)
    # The HTTP stack under httpx's API: the gateway's own on httptools (the fastest), aiohttp's
    # (several times faster than httpx's under concurrency, see docs/performance.md) or httpx's.
    http_client: Literal["httptools", "aiohttp", "httpx"] = "httptools"


class RuntimeSection(_Section, frozen=True):
    max_concurrent_requests: int = 64
    request_queue: int = 32
    request_timeout: Duration = Duration(60)
    router: RouterSection = msgspec.field(default_factory=RouterSection)


class RouteSection(_Section, frozen=True):
    primary: str
    fallbacks: list[str] = msgspec.field(default_factory=list)
    weights: dict[str, int] | None = None
    slo_ms: int | None = None
    hedge_after_ms: int | None = None

    def __post_init__(self) -> None:
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise ValueError("sloMs must be positive")
        if self.hedge_after_ms is not None and self.hedge_after_ms <= 0:
            raise ValueError("hedgeAfterMs must be positive")
        if any(w < 0 for w in (self.weights or {}).values()):
            raise ValueError("weights must not be negative")


class BreakerSection(_Section, frozen=True):
    fail_max: int = 5
    reset_timeout: Duration = Duration(30)
    # Open periods double while a provider flaps, up to this.
    max_reset_timeout: Duration = Duration(300)

    def __post_init__(self) -> None:
        if self.fail_max < 1:
            raise ValueError("failMax must be at least 1")
        if self.reset_timeout <= 0:
            raise ValueError("resetTimeout must be positive")


class HealthSection(_Section, frozen=True):
    breaker: BreakerSection = msgspec.field(default_factory=BreakerSection)
    window: Duration = Duration(60)
    min_calls: int = 10
    failure_rate: float = 0.5
    slow_call_ms: int = 30_000
    slow_call_rate: float = 0.8

    def __post_init__(self) -> None:
        for name, rate in (
            ("failureRate", self.failure_rate),
            ("slowCallRate", self.slow_call_rate),
        ):
            if not 0 < rate <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {rate}")
        if self.min_calls < 1:
            raise ValueError("minCalls must be at least 1")
        if self.window <= 0 or self.slow_call_ms <= 0:
            raise ValueError("window and slowCallMs must be positive")


class StorageSection(_Section, frozen=True):
    url: str = "sqlite+aiosqlite:///./data/gateway.db"


class ClientKeySection(_Section, frozen=True):
    """One client API key: the key itself from a variable, or only its SHA-256 (hex)."""

    name: str
    key_env: str | None = None
    key_sha256: str | None = None
    # Model names, ``provider:*`` patterns or route names this key may use; empty means all.
    models: list[str] = msgspec.field(default_factory=list)
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError(f"client key {self.name!r}: set exactly one of keyEnv or keySha256")
        if self.key_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.key_sha256):
            raise ValueError(f"client key {self.name!r}: keySha256 must be 64 lowercase hex digits")
        for limit in (self.requests_per_minute, self.tokens_per_minute):
            if limit is not None and limit < 1:
                raise ValueError(f"client key {self.name!r}: limits must be at least 1")


class AuthSection(_Section, frozen=True):
    enabled: bool = False
    admin_token_env: str = "GATEWAY_ADMIN_TOKEN"  # noqa: S105 - a variable name
    client_keys: list[ClientKeySection] = msgspec.field(default_factory=list)
    # A YAML file holding more ``clientKeys`` entries (e.g. mounted from a secret).
    client_keys_file: str | None = None


class FileSettings(_Section, frozen=True):
    """The whole file. ``providers`` and ``routes`` are decoded entry by entry so errors name the key."""

    server: ServerSection = msgspec.field(default_factory=ServerSection)
    logging: LoggingSection = msgspec.field(default_factory=LoggingSection)
    providers: dict[str, Any] = msgspec.field(default_factory=dict)
    models: dict[str, str] = msgspec.field(default_factory=dict)
    memory: MemorySection = msgspec.field(default_factory=MemorySection)
    runtime: RuntimeSection = msgspec.field(default_factory=RuntimeSection)
    routes: dict[str, Any] = msgspec.field(default_factory=dict)
    health: HealthSection = msgspec.field(default_factory=HealthSection)
    storage: StorageSection = msgspec.field(default_factory=StorageSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
