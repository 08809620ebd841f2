"""A group's settling over every shape a group can take: waiters of threads,
of two event loops and of a closed one, futures and calls, some cancelled
before the group is settled, with positions, batches' lists of positions
or the group's one error. Every waiter not cancelled is settled exactly
once, with its own outcome, on its own loop; a cancelled one stays
cancelled; nothing reaches a loop's exception handler; a closed loop
stops nobody else's waiters. Then through a real log: a failed sync fails
every waiter of its group, single and batch, cancelled ones passed over."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal import Append, LogFailed, LogIOError, Position, WalOutcome, WriteAheadLog
from wal.group_commit import PendingAppend, PendingBatch, Queued, _settle
from wal.loop_call import CallOnLoop
from wal.segment import SegmentWriter

OpenLog = Callable[..., WriteAheadLog]
TIMEOUT = 30

KINDS = ("thread", "future_a", "future_b", "call_a", "call_b", "future_closed", "call_closed")


class Loops:
    """Two event loops not running (their callbacks run when the test turns
    them) and a closed one, each recording what reaches its handler."""

    def __init__(self) -> None:
        self.a = asyncio.new_event_loop()
        self.b = asyncio.new_event_loop()
        self.closed = asyncio.new_event_loop()
        self.reported: list[dict[str, Any]] = []
        for loop in (self.a, self.b, self.closed):
            loop.set_exception_handler(lambda _loop, context: self.reported.append(context))

    def by_name(self, name: str) -> asyncio.AbstractEventLoop:
        return {"a": self.a, "b": self.b, "closed": self.closed}[name]

    def turn(self) -> None:
        """Runs whatever was handed to the live loops."""
        for loop in (self.a, self.b):
            for _ in range(3):
                loop.run_until_complete(asyncio.sleep(0))

    def close(self) -> None:
        for loop in (self.a, self.b, self.closed):
            loop.close()


@contextmanager
def loops() -> Iterator[Loops]:
    made = Loops()
    try:
        yield made
    finally:
        made.close()


def queued(waiter: Any, batch: bool) -> Queued:
    if batch:
        return PendingBatch(waiter, bytearray(), 2, None)
    return PendingAppend(waiter, 1, bytes(24), b"", 0, 0)


shapes = st.lists(
    st.tuples(st.sampled_from(KINDS), st.booleans(), st.booleans()),  # kind, cancelled, batch
    min_size=1,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(shapes, st.booleans())
def test_every_waiter_of_any_group_is_settled_once_with_its_own_outcome(
    shape: list[tuple[str, bool, bool]], failed: bool
) -> None:
    with loops() as made:
        calls: dict[int, list[WalOutcome]] = {}
        waiters: list[Any] = []
        for index, (kind, _, _) in enumerate(shape):
            if kind == "thread":
                thread_future: Future[Any] = Future()
                thread_future.set_running_or_notify_cancel()
                waiters.append(thread_future)
                continue
            loop = made.by_name(kind.split("_")[1])
            if kind.startswith("call"):
                calls[index] = []
                waiters.append(CallOnLoop(loop, calls[index].append))
            else:
                waiters.append(loop.create_future())
        made.closed.close()  # its waiters' coroutines are gone: nobody waits any more
        cancelled = {
            i
            for i, (kind, cancel, _) in enumerate(shape)
            if cancel and kind in ("future_a", "future_b")
        }
        for index in cancelled:
            waiters[index].cancel()
        error = LogIOError("writing", "segment", OSError(errno.EIO, "gone"))
        outcomes: list[Any] = [
            error
            if failed
            else ([Position(1, 100 * i), Position(1, 100 * i + 50)] if batch else Position(1, i))
            for i, (_, _, batch) in enumerate(shape)
        ]
        group = [queued(w, batch) for w, (_, _, batch) in zip(waiters, shape, strict=True)]

        _settle(group, outcomes)
        made.turn()

        assert made.reported == []
        for index, (kind, _, _) in enumerate(shape):
            waiter, outcome = waiters[index], outcomes[index]
            if index in cancelled:
                assert waiter.cancelled()
            elif kind.endswith("closed"):
                if kind.startswith("call"):
                    assert calls[index] == []
                else:
                    assert not waiter.done()
            elif kind.startswith("call"):
                assert calls[index] == [outcome]
            elif failed:
                assert waiter.exception() is error
            else:
                assert waiter.result() == outcome


@contextmanager
def failing_sync(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Every sync waits for the event, then fails as a dead disk's does (a
    fault the real disk cannot produce on cue)."""
    gate = threading.Event()

    def failing(self: SegmentWriter) -> None:
        assert gate.wait(TIMEOUT), "the test never released the sync"
        raise OSError(errno.EIO, "the disk is gone")

    monkeypatch.setattr(SegmentWriter, "sync", failing)
    try:
        yield gate
    finally:
        gate.set()


@pytest.mark.parametrize("cancelled", [[], [0], [7], [3, 4, 15]])
def test_a_failed_sync_fails_every_waiter_of_its_group(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, cancelled: list[int]
) -> None:
    """Sixteen waiters of one loop in one group, singles and batches, some
    cancelled while the sync is held: the sync fails, and every waiter not
    cancelled fails with the log's error; none is left waiting, none is
    given a position."""
    log = open_log()

    async def main() -> list[asyncio.Future[Any]]:
        with failing_sync(monkeypatch) as gate:
            with log.gathered():
                waiters: list[asyncio.Future[Any]] = [
                    log.submit_many_async([Append(b"b%d" % i), Append(b"c%d" % i)])
                    if i % 3 == 0
                    else log.append_async(b"a%d" % i)
                    for i in range(16)
                ]
            await asyncio.sleep(0)
            for index in cancelled:
                waiters[index].cancel()
            gate.set()
            await asyncio.wait(waiters, timeout=TIMEOUT)
            return waiters

    waiters = asyncio.run(main())
    assert [i for i, w in enumerate(waiters) if w.cancelled()] == cancelled
    for index, waiter in enumerate(waiters):
        if index not in cancelled:
            error = waiter.exception()
            # A hold past its 5 ms on a loaded machine splits the appends
            # into two groups: the second fails with the first's error.
            if isinstance(error, LogFailed):
                error = error.cause
            assert isinstance(error, LogIOError), (index, error)
