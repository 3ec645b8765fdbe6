"""Static description of one simulated provider (name, wire format, key, models, port).

`SimSpec` is the immutable input of `SimServer` / `SimCluster`; this module also
knows the per-wire defaults (served models, endpoint path the gateway should use).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Wire = Literal["openai", "gemini", "anthropic"]
WIRES: tuple[Wire, ...] = get_args(Wire)


@dataclass(frozen=True)
class SimSpec:
    """One simulated provider.

    `models` empty means "accept any model" (and list a wire-specific default).
    `port` 0 picks a free port at first start; the port is then kept for
    restarts (`refuse()` / `accept()`).  `prefix` is the OpenAI-wire path prefix
    (ignored by the other wires).  `reply` overrides the deterministic answer.
    `api_key` None disables authentication.
    """

    name: str
    wire: Wire
    api_key: str | None = "sim-key"
    models: tuple[str, ...] = ()
    port: int = 0
    prefix: str = "/v1"
    reply: str | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in " :/"):
            raise ValueError(f"invalid sim provider name {self.name!r}")
        if self.wire not in WIRES:
            raise ValueError(f"unknown wire {self.wire!r}; expected one of {WIRES}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"invalid port {self.port}")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ValueError(f"prefix must start and not end with '/': {self.prefix!r}")
        if not isinstance(self.models, tuple):
            raise TypeError("models must be a tuple of str")

    @property
    def listed_models(self) -> tuple[str, ...]:
        """Models advertised by the list-models endpoint."""
        return self.models or default_models(self.wire)

    @property
    def endpoint_path(self) -> str:
        """Path appended to ``http://host:port`` to form the gateway's base URL."""
        match self.wire:
            case "openai":
                return self.prefix
            case "gemini":
                return "/v1beta"
            case "anthropic":
                return ""


def default_models(wire: Wire) -> tuple[str, ...]:
    """Models listed when a spec does not restrict them."""
    match wire:
        case "openai":
            return ("gpt-4o-mini", "gpt-4o")
        case "gemini":
            return ("gemini-2.0-flash", "gemini-1.5-pro")
        case "anthropic":
            return ("claude-3-5-haiku-latest", "claude-sonnet-4-0")
