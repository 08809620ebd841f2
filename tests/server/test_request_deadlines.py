"""The server's one timer for requests waiting with a timeout
(engine/server/request_deadlines.py): the work it does per request stays
the same however many distinct timeouts wait beside it. A client chooses
each request's timeout_ms (any int32), so a peer pipelining requests with
a new timeout each must not make every later request, or every deadline's
sweep, cost one step per timeout already waiting."""

from __future__ import annotations

import asyncio
import sys
from types import FrameType
from typing import Any

from engine.server import request_deadlines
from engine.server.request_deadlines import RequestDeadlines


class _ClockLoop(asyncio.SelectorEventLoop):
    """A loop whose clock the test moves: timers fire when it passes them."""

    now = 0.0

    def time(self) -> float:
        return self.now


class _Request:
    __slots__ = ("timed_out",)

    def __init__(self) -> None:
        self.timed_out = False

    def time_out(self) -> None:
        self.timed_out = True


def _lines_run(count: int) -> tuple[int, list[_Request]]:
    """Lines of request_deadlines.py run to add ``count`` requests of
    distinct timeouts (1 to ``count`` ms) and to time each out at its own
    deadline, the clock moved one ms at a time."""
    loop = _ClockLoop()
    lines = 0

    def trace(frame: FrameType, event: str, _: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename != request_deadlines.__file__:
            return None
        if event == "line":
            lines += 1
        return trace

    requests = [_Request() for _ in range(count)]

    async def run() -> None:
        deadlines = RequestDeadlines()
        sys.settrace(trace)
        try:
            for timeout_ms, request in enumerate(requests, 1):
                deadlines.add(request, timeout_ms)
            for ms in range(1, count + 1):
                loop.now = ms / 1000
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        finally:
            sys.settrace(None)
        assert deadlines.waiting == 0
        deadlines.close()

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return lines, requests


def test_each_request_is_timed_out_at_its_own_deadline_among_distinct_timeouts() -> None:
    _, requests = _lines_run(50)
    assert all(request.timed_out for request in requests)


def test_the_work_per_request_does_not_grow_with_the_distinct_timeouts_waiting() -> None:
    """Twice the requests (each its own timeout, all waiting at once) is
    about twice the work, not four times: nothing scans every timeout
    waiting per request added or per deadline reached."""
    small, _ = _lines_run(300)
    large, _ = _lines_run(600)
    assert large < 2.5 * small, (small, large)
