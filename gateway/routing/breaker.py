"""One pybreaker ``CircuitBreaker`` per provider, driven correctly under asyncio.

pybreaker's own async path needs Tornado, and ``with breaker.calling(): await ...`` counts cancellations
and client errors and lets every concurrent call through when half-open. So the call itself runs outside
pybreaker, and its *classified* outcome is fed into pybreaker's state machine synchronously afterwards
(``_feed``): pybreaker still owns the states, counters, transitions and listeners, while this wrapper
adds what it lacks:

- admission before the call: open refuses until the reset timeout, then exactly one half-open probe is
  admitted at a time and every other request goes to the fallback;
- an injected clock (``ClockedStorage``), so tests run long outages in milliseconds;
- trips on failure *rate* and slow-call rate (decided by the caller, applied with ``trip()``);
- open periods that grow while a provider flaps (doubling up to ``max_reset_timeout_s``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pybreaker

Ticket = Literal["call", "probe"]
Transition = Callable[[str, str, str], None]  # provider, from_state, to_state


class ClockedStorage(pybreaker.CircuitMemoryStorage):
    """pybreaker compares ``opened_at`` with the wall clock; present it so elapsed time follows ours."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self._clock = clock
        self._opened_clock: float | None = None

    @property
    def opened_at(self) -> datetime | None:
        if self._opened_clock is None:
            return None
        return datetime.now(UTC) - timedelta(seconds=self._clock() - self._opened_clock)

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        del value  # the moment is taken from the injected clock instead
        self._opened_clock = self._clock()

    @property
    def opened_clock(self) -> float | None:
        return self._opened_clock


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: ProviderBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else "closed"
        # Late trial successes re-announce closed -> closed: not a transition.
        if old != new_state.name:
            self._owner._on_transition(old, new_state.name)


class ProviderBreaker:
    def __init__(
        self,
        provider: str,
        *,
        fail_max: int,
        reset_timeout_s: float,
        max_reset_timeout_s: float,
        clock: Callable[[], float],
        on_transition: Transition,
    ) -> None:
        self.provider = provider
        self._clock = clock
        self._base_reset_s = reset_timeout_s
        self._max_reset_s = max(max_reset_timeout_s, reset_timeout_s)
        self._on_transition_cb = on_transition
        self._storage = ClockedStorage(clock)
        self._probe_in_flight = False
        self._trips = 0
        self._closed_at: float | None = None
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            state_storage=self._storage,
            listeners=[_Listener(self)],
            name=provider,
        )

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return str(self._cb.current_state)

    @property
    def reset_timeout_s(self) -> float:
        return float(self._cb.reset_timeout)

    @property
    def opened_clock(self) -> float | None:
        return self._storage.opened_clock if self.state == "open" else None

    @property
    def probe_in_flight(self) -> bool:
        return self._probe_in_flight

    def reopens_in(self) -> float | None:
        """Seconds until an open breaker admits its half-open probe."""
        opened = self.opened_clock
        if opened is None:
            return None
        return max(0.0, opened + self.reset_timeout_s - self._clock())

    def would_refuse(self) -> bool:
        """Whether ``admit()`` would refuse now (without changing anything)."""
        state = self.state
        if state == "open":
            return (self.reopens_in() or 0.0) > 0
        return state == "half-open" and self._probe_in_flight

    # -- the call protocol ------------------------------------------------------------------

    def admit(self) -> Ticket | None:
        state = self.state
        if state == "closed":
            return "call"
        if state == "open":
            if (self.reopens_in() or 0.0) > 0:
                return None
            self._cb.half_open()
        if self._probe_in_flight:
            return None
        self._probe_in_flight = True
        return "probe"

    def on_success(self, ticket: Ticket) -> None:
        if ticket == "probe":
            self._probe_in_flight = False
            self._feed(None)
        elif self.state == "closed" and self._cb.fail_counter:
            self._feed(None)  # resets the consecutive-failure counter (nothing to do at zero)

    def on_failure(self, ticket: Ticket, error: Exception) -> None:
        if ticket == "probe":
            self._probe_in_flight = False
            self._feed(error)
        elif self.state == "closed":
            self._feed(error)
        # A late failure of a call admitted before the trip says nothing new.

    def release(self, ticket: Ticket) -> None:
        """The call ended without a verdict on the provider (cancelled, client error, 429, 401)."""
        if ticket == "probe":
            self._probe_in_flight = False

    def trip(self) -> None:
        """Open now (failure-rate or slow-call trip decided by the statistics)."""
        if self.state == "closed":
            self._cb.open()

    def reset(self) -> None:
        self._probe_in_flight = False
        if self.state != "closed":
            self._cb.close()

    def _feed(self, error: Exception | None) -> None:
        """Replay one classified outcome through pybreaker's state machine (no await inside)."""
        try:
            with self._cb.calling():
                if error is not None:
                    raise error
        except pybreaker.CircuitBreakerError:
            pass
        except Exception as exc:
            if exc is not error:
                raise

    def _on_transition(self, old: str, new: str) -> None:
        now = self._clock()
        if new == "open":
            # Re-opening soon after closing (or from half-open) is flapping: wait longer each time.
            recently_closed = (
                self._closed_at is not None and now - self._closed_at < self._max_reset_s
            )
            self._trips = self._trips + 1 if old == "half-open" or recently_closed else 1
            timeout = min(self._base_reset_s * 2 ** (self._trips - 1), self._max_reset_s)
            self._cb.reset_timeout = timeout
        elif new == "closed":
            self._closed_at = now
        self._on_transition_cb(self.provider, old, new)
