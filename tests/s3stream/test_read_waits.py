"""ReadWaits: async fetches' waits for object reads, ended at a deadline by
one timer per loop, never by one timer per wait."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

import pytest

from s3stream.read_waits import ReadWaits

WAITS = 100


def ended(value: int) -> Future[int]:
    read: Future[int] = Future()
    read.set_result(value)
    return read


class TimersCounted:
    """Counts the timers ``loop.call_at`` arms."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = 0
        self._call_at = loop.call_at
        loop.call_at = self._counted  # type: ignore[method-assign]

    def _counted(self, when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        self.armed += 1
        return self._call_at(when, callback, *args)


def test_reads_that_end_in_time_share_one_timer() -> None:
    async def run() -> tuple[list[int | None], int]:
        loop = asyncio.get_running_loop()
        timers = TimersCounted(loop)
        waits: ReadWaits[int] = ReadWaits(loop, 60.0)
        results = [await waits.wait(ended(i)) for i in range(WAITS)]
        return results, timers.armed

    results, armed = asyncio.run(run())
    assert results == list(range(WAITS))
    assert armed == 1  # the first wait's; no wait after it armed one


def test_a_read_that_does_not_end_ends_its_waits_and_goes_on() -> None:
    stalled: Future[int] = Future()

    async def run() -> list[int | None]:
        waits: ReadWaits[int] = ReadWaits(asyncio.get_running_loop(), 0.01)
        first, second = await asyncio.gather(waits.wait(stalled), waits.wait(stalled))
        stalled.set_result(7)  # the store answers at last
        return [first, second, await waits.wait(stalled)]

    assert asyncio.run(run()) == [None, None, 7]
    assert not stalled.cancelled()


def test_a_read_that_fails_raises_its_error_to_the_wait() -> None:
    failed: Future[int] = Future()
    failed.set_exception(OSError("store"))

    async def run() -> int | None:
        return await ReadWaits[int](asyncio.get_running_loop(), 60.0).wait(failed)

    with pytest.raises(OSError, match="store"):
        asyncio.run(run())


def test_a_read_ending_after_its_loop_closed_is_ignored() -> None:
    stalled: Future[int] = Future()

    async def run() -> int | None:
        return await ReadWaits[int](asyncio.get_running_loop(), 0.01).wait(stalled)

    assert asyncio.run(run()) is None
    stalled.set_result(1)  # its callback finds the loop closed, and raises nothing
