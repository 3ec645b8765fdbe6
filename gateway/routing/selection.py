"""Ordering a plan's candidates before the attempts: weighted A/B choice and SLO demotion."""

from __future__ import annotations

import random

import msgspec

from gateway.domain.models import Candidate, Plan
from gateway.routing.health import HealthBook


class Ordering(msgspec.Struct, frozen=True):
    candidates: tuple[Candidate, ...]
    reason: str | None = None  # "weighted" or "slow" when the order differs from the plan's


def _weighted(plan: Plan, health: HealthBook, rng: random.Random) -> Ordering | None:
    route = plan.route_settings
    if route is None or not route.weights:
        return None
    names = {str(c.requested): c for c in plan.candidates} | {
        str(c.ref): c for c in plan.candidates
    }
    pool = [
        (names[name], weight)
        for name, weight in route.weights.items()
        if name in names and weight > 0 and health.skip_reason(names[name].ref.provider) is None
    ]
    if not pool:
        return None
    chosen = rng.choices([c for c, _ in pool], weights=[w for _, w in pool])[0]
    rest = tuple(c for c in plan.candidates if c != chosen)
    return Ordering((chosen, *rest), "weighted")


def _demote_slow(plan: Plan, health: HealthBook) -> Ordering | None:
    """Move a primary whose p95 breaks the route's SLO behind the first healthy, faster candidate."""
    route = plan.route_settings
    if route is None or route.slo_ms is None or len(plan.candidates) < 2:
        return None
    primary, *others = plan.candidates
    slo_s = route.slo_ms / 1000
    primary_p95 = health.latency_p95_s(primary.ref.provider)
    if primary_p95 is None or primary_p95 <= slo_s:
        return None
    for index, other in enumerate(others):
        if health.skip_reason(other.ref.provider) is not None:
            continue
        other_p95 = health.latency_p95_s(other.ref.provider)
        if other_p95 is None or other_p95 < primary_p95:
            ordered = [*others[: index + 1], primary, *others[index + 1 :]]
            return Ordering(tuple(ordered), "slow")
    return None


def order_candidates(plan: Plan, health: HealthBook, rng: random.Random) -> Ordering:
    return _weighted(plan, health, rng) or _demote_slow(plan, health) or Ordering(plan.candidates)
