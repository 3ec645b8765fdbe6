"""The routing record: what the router tried, what served, and why (DESIGN 3.5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.domain.models import Candidate, Plan
from gateway.domain.types import Usage


class Attempt(msgspec.Struct, frozen=True):
    provider: str
    model: str
    outcome: str  # "success", "skipped", "cancelled" or an upstream outcome such as "server_error"
    latency_ms: float = 0.0
    reason: str | None = None  # why a candidate was skipped or failed; "panic" for a panic attempt

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "provider": self.provider,
            "model": self.model,
            "outcome": self.outcome,
            "latencyMs": round(self.latency_ms, 1),
        }
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass(slots=True)
class RoutingRecord:
    plan: Plan
    ordered: tuple[Candidate, ...] = ()
    order_reason: str | None = None  # "weighted" or "slow"
    attempts: list[Attempt] = field(default_factory=list)
    served: Candidate | None = None
    served_index: int = -1
    panic: bool = False
    usage: Usage | None = None  # known once the answer is complete

    @property
    def fallback(self) -> bool:
        """Served by something other than the first choice because of health or a failure."""
        if self.served is None:
            return False
        return self.served_index > 0 or self.order_reason == "slow"

    @property
    def decision(self) -> str:
        if self.served is None:
            return "none"
        return "fallback" if self.fallback else "primary"

    @property
    def reason(self) -> str:
        """Why the serving candidate served: ``healthy`` for an undisturbed first choice, else why."""
        if self.panic:
            return "panic"
        if self.served_index == 0:
            return self.order_reason or "healthy"
        first = self.attempts[0] if self.attempts else None
        if first is None:
            return "error"
        return first.reason or "error"

    @property
    def upstream_calls(self) -> int:
        return sum(1 for a in self.attempts if a.outcome != "skipped")

    def to_json(self) -> dict[str, Any]:
        return {
            "requestedModel": self.plan.requested,
            "servedModel": str(self.served.ref) if self.served else None,
            "provider": self.served.ref.provider if self.served else None,
            "route": self.plan.route,
            "fallback": self.fallback,
            "decision": self.decision,
            "reason": self.reason,
            "attempts": [a.to_json() for a in self.attempts],
        }

    def headers(self) -> dict[str, str]:
        """The routing headers of an answer (X-Request-ID is the request middleware's)."""
        headers = {
            "x-gateway-fallback": "true" if self.fallback else "false",
            "x-gateway-attempts": str(self.upstream_calls),
        }
        if self.served is not None:
            headers["x-gateway-provider"] = self.served.ref.provider
            headers["x-gateway-model"] = str(self.served.ref)
        return headers
