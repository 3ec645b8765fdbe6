"""``asyncio.timeout`` for the router's hot path: the same semantics at a fraction of the cost.

Every model call enters two time limits (the request's and the attempt's or first token's). On
Python 3.11 each ``asyncio.timeout`` looks the running loop up three times, and every look-up is a
``getpid()`` system call: six per call, about 1 % of a gapped stream's CPU on this VM, plus some 150
Python bytecodes per limit for its state machine. ``Deadlines`` keeps the loop, so a limit costs one
timer and no system call. Like ``asyncio.timeout``, an expired limit cancels the task that entered it
and turns that cancellation (and only that one) into ``TimeoutError`` at the exit.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType


class Deadlines:
    """Makes the limits of one owner (a router); remembers the loop they run on."""

    __slots__ = ("_thread", "loop")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0  # the thread the loop was found running in (a loop runs in one thread)

    def after(self, delay_s: float | None) -> Deadline:
        """A limit of ``delay_s`` seconds from entry (``None``: no limit), for ``with``."""
        return Deadline(self, delay_s)

    def current_task(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Task[object]]:
        loop = self.loop
        same_thread = threading.get_ident() == self._thread  # no system call, unlike the loop's
        task = asyncio.current_task(loop) if loop is not None and same_thread else None
        if task is None:  # first use, or a new loop (tests run many, in several threads)
            loop = self.loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
            task = asyncio.current_task(loop)
            if task is None:
                raise RuntimeError("a deadline must be entered in a task")
        assert loop is not None
        return loop, task


class Deadline:
    __slots__ = ("_cancelling", "_delay_s", "_expired", "_handle", "_owner", "_task")

    def __init__(self, owner: Deadlines, delay_s: float | None) -> None:
        self._owner = owner
        self._delay_s = delay_s
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._expired = False
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        delay_s = self._delay_s
        if delay_s is not None:
            loop, task = self._owner.current_task()
            self._task = task
            self._cancelling = task.cancelling()
            self._handle = loop.call_at(loop.time() + delay_s, self._expire)
        return self

    def _expire(self) -> None:
        self._handle = None
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._expired:
            self._expired = False
            assert self._task is not None
            # Ours only if no other cancellation came in meanwhile (as asyncio.timeout decides).
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
