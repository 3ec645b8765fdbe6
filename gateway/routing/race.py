"""Running a plan's attempts: one after another, or two at once when the route hedges.

Sequential failover runs each attempt inline in the request's own task (no task, no ``asyncio.wait``
per attempt: most requests take this path). With ``hedge_after_s``, each attempt is a task, and a
runner that has produced nothing by then gets a competitor (the next admitted candidate); the first
success wins and the loser is cancelled, its admission released and its attempt recorded as
``cancelled``. Either way an attempt interrupted from outside (the request timeout, a client gone) is
recorded as ``cancelled`` and says nothing about the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from gateway.domain.models import Candidate
from gateway.errors import UpstreamError
from gateway.routing.health import Admission
from gateway.routing.record import Attempt, RoutingRecord

if TYPE_CHECKING:
    from gateway.routing.router import Router

T = TypeVar("T")


@dataclass(slots=True)
class Running(Generic[T]):
    """One attempt in flight."""

    index: int
    candidate: Candidate
    admission: Admission
    started: float
    task: asyncio.Task[T] | None  # None when run inline (no hedging)


class Race(Generic[T]):
    def __init__(
        self,
        router: Router,
        record: RoutingRecord,
        admissions: Iterator[tuple[int, Candidate, Admission]],
        *,
        attempt: Callable[[Candidate], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]],
        hedge_after_s: float | None,
    ) -> None:
        self._router = router
        self._record = record
        self._admissions = admissions
        self._attempt = attempt
        self._discard = discard
        self._hedge_after_s = hedge_after_s
        self._running: dict[asyncio.Task[T], Running[T]] = {}

    async def run(self) -> tuple[Running[T], T] | None:
        """The winning attempt and its value, or None when every candidate failed over."""
        if self._hedge_after_s is None:
            return await self._run_inline()
        try:
            while self._running or self._start():
                single = len(self._running) == 1
                timeout = self._hedge_after_s if single else None
                done, _ = await asyncio.wait(
                    self._running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    if not self._start():
                        self._hedge_after_s = None  # nobody left to hedge with: just wait
                    continue
                for task in done:
                    won = self._settle(task)
                    if won is not None:
                        return won
            return None
        finally:
            await self._cancel_rest()

    async def _run_inline(self) -> tuple[Running[T], T] | None:
        for index, candidate, admission in self._admissions:
            run: Running[T] = Running(index, candidate, admission, self._router.clock(), None)
            self._inflight(admission, 1)
            try:
                value = await self._attempt(candidate)
            except UpstreamError as exc:
                self._inflight(admission, -1)
                self._router.attempt_failed(self._record, run, exc)
                if not exc.failover:
                    self._router.publish_decision(self._record)
                    raise
                continue
            except asyncio.CancelledError:
                self._inflight(admission, -1)
                self._router.health.release(admission)
                self._record_cancelled(run)
                raise
            except BaseException:
                self._inflight(admission, -1)
                self._router.health.release(admission)
                raise
            self._inflight(admission, -1)
            return run, value
        return None

    def _record_cancelled(self, run: Running[T]) -> None:
        elapsed_ms = (self._router.clock() - run.started) * 1000
        # Cut short from outside, or a hedged attempt that lost the race: either way, too slow.
        self._record.attempts.append(
            Attempt(run.admission.provider, str(run.candidate.ref), "cancelled", elapsed_ms, "slow")
        )

    def _inflight(self, admission: Admission, delta: int) -> None:
        self._router.health.track_inflight(admission.provider, delta)

    def _start(self) -> bool:
        nxt = next(self._admissions, None)
        if nxt is None:
            return False
        index, candidate, admission = nxt
        task = asyncio.ensure_future(self._attempt(candidate))
        self._running[task] = Running(index, candidate, admission, self._router.clock(), task)
        self._inflight(admission, 1)
        return True

    def _settle(self, task: asyncio.Task[T]) -> tuple[Running[T], T] | None:
        run = self._running.pop(task)
        self._inflight(run.admission, -1)
        try:
            return run, task.result()
        except UpstreamError as exc:
            self._router.attempt_failed(self._record, run, exc)
            if not exc.failover:
                self._router.publish_decision(self._record)
                raise
            return None
        except BaseException:
            self._router.health.release(run.admission)
            raise

    async def _cancel_rest(self) -> None:
        running, self._running = self._running, {}
        for task, run in running.items():
            task.cancel()
            self._inflight(run.admission, -1)
        for task, run in running.items():
            try:
                value = await task
            except BaseException:  # noqa: S110 - a cancelled loser: nothing to report
                pass
            else:
                await self._discard(value)
            self._router.health.release(run.admission)
            self._record_cancelled(run)
