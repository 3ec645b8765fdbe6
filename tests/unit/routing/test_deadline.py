"""The router's time limits keep ``asyncio.timeout``'s semantics."""

from __future__ import annotations

import asyncio

import pytest

from gateway.routing.deadline import Deadlines


async def test_an_expired_limit_raises_timeout_and_leaves_the_task_uncancelled() -> None:
    deadlines = Deadlines()
    with pytest.raises(TimeoutError), deadlines.after(0.01):
        await asyncio.sleep(5)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # the task goes on normally


async def test_work_that_ends_in_time_is_not_cancelled_later() -> None:
    deadlines = Deadlines()
    with deadlines.after(0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)  # past the limit: its timer was cancelled at the exit


async def test_no_limit_never_expires() -> None:
    deadlines = Deadlines()
    with deadlines.after(None):
        await asyncio.sleep(0.02)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines()
    entered = asyncio.Event()

    async def limited() -> None:
        with deadlines.after(0.05):
            entered.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                await asyncio.sleep(0.1)  # cleaning up: the limit expires meanwhile
                raise

    task = asyncio.ensure_future(limited())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_limits_follow_the_task_that_entered_them() -> None:
    deadlines = Deadlines()

    async def slow() -> str:
        with deadlines.after(0.01):
            await asyncio.sleep(5)
        return "done"

    async def quick() -> str:
        with deadlines.after(1):
            await asyncio.sleep(0.05)
        return "done"

    results = await asyncio.gather(slow(), quick(), return_exceptions=True)
    assert isinstance(results[0], TimeoutError)
    assert results[1] == "done"


def test_a_new_event_loop_is_picked_up() -> None:
    deadlines = Deadlines()

    async def limited() -> None:
        with deadlines.after(0.01):
            await asyncio.sleep(5)

    for _ in range(2):  # the second run is on a new loop: the remembered one is gone
        with pytest.raises(TimeoutError):
            asyncio.run(limited())


def test_limits_in_another_thread_use_that_thread_s_loop() -> None:
    deadlines = Deadlines()

    async def limited() -> str:
        with deadlines.after(1):
            await asyncio.sleep(0.01)
        with pytest.raises(TimeoutError), deadlines.after(0.01):
            await asyncio.sleep(5)
        return "ok"

    async def main() -> None:
        assert await limited() == "ok"
        # Another thread runs its own loop while this one still runs.
        assert await asyncio.to_thread(asyncio.run, limited()) == "ok"
        assert await limited() == "ok"

    asyncio.run(main())
