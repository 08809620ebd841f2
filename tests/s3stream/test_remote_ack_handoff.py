"""A commit's remote acknowledgements reach their loop in one wake-up.

The upload thread answers every append a commit covers at once; the
appends made from one event loop are handed to it together
(s3stream/loop_handoff.py), rather than each in a cross-thread call of its
own. The test holds the loop while the commit answers, counts the calls
made to wake it, and then checks every append is acknowledged; it never
measures time.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import REMOTE
from s3stream.loop_handoff import LoopHandoff
from s3stream.store import MemoryStore
from tests.s3stream.test_remote_cadence import TIMEOUT, opened

APPENDS = 8


class WakeCount:
    """Stands in for ``loop.call_soon_threadsafe``, counting the calls made
    to wake the loop from another thread (each a write to its self-pipe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.wakes = 0
        self._schedule = loop.call_soon_threadsafe

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.wakes += 1
        return self._schedule(*args, **kwargs)


def test_a_commit_wakes_the_appending_loop_once_for_all_the_appends_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No linger: only the flush below seals, so one commit answers all.
    stream_store = opened(tmp_path / "data", MemoryStore(), linger=False)
    try:
        stream = stream_store.create_stream()
        other = stream_store.create_stream()
        for opened_stream in (stream, other):
            stream_store.open_stream(opened_stream, 1)

        async def appends_answered_by_one_commit() -> tuple[list[int], int]:
            loop = asyncio.get_running_loop()
            # Queued now (submit_async), before the local append below.
            acknowledged = [
                stream_store.submit_async(stream, i, i, b"r", REMOTE) for i in range(APPENDS)
            ]
            # Durable in the WAL once this later local append is (the WAL
            # answers in order): each remote one waits on the upload now.
            await stream_store.append_async(other, 0, 0, b"l")
            assert not any(a.done() for a in acknowledged)
            counted = WakeCount(loop)
            monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
            # Registered after the appends' own waits on the same stream, so
            # answered after them by the same commit: while this holds the
            # loop, the commit hands every append over.
            last = stream_store.when_remote(stream, APPENDS)
            assert stream_store.flush(TIMEOUT)
            assert last.result(TIMEOUT) == APPENDS
            monkeypatch.undo()
            return list(await asyncio.gather(*acknowledged)), counted.wakes

        ends, wakes = asyncio.run(appends_answered_by_one_commit())
        assert ends == list(range(1, APPENDS + 1))
        assert wakes == 1, f"{APPENDS} acknowledgements woke their loop {wakes} times"
    finally:
        stream_store.close()


def test_calls_handed_over_run_on_the_loop_in_order_and_a_failing_one_stops_none() -> None:
    ran: list[tuple[str, int]] = []
    reported: list[BaseException] = []

    def note(argument: int) -> None:
        assert threading.current_thread() is threading.main_thread()
        ran.append(("note", argument))

    def fail(argument: int) -> None:
        raise ValueError(argument)

    async def handed_over() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
        handoff = LoopHandoff(loop)
        done = asyncio.Event()

        def from_another_thread() -> None:
            handoff.call(note, 1)
            handoff.call(fail, 2)
            handoff.call(note, 3)
            # Handed over from the loop itself while the others run: a run
            # of its own, after them.
            handoff.call(lambda _: handoff.call(lambda _: done.set(), None), None)

        thread = threading.Thread(target=from_another_thread)
        thread.start()
        thread.join()
        assert ran == []  # never run by the thread that hands a call over
        await asyncio.wait_for(done.wait(), TIMEOUT)

    asyncio.run(handed_over())
    assert ran == [("note", 1), ("note", 3)]
    assert [type(e) for e in reported] == [ValueError]


def test_a_call_handed_to_a_closed_loop_is_dropped() -> None:
    closed = asyncio.new_event_loop()
    closed.close()
    handoff = LoopHandoff(closed)
    handoff.call(lambda _: pytest.fail("ran on a closed loop"), None)
    handoff.call(lambda _: pytest.fail("ran on a closed loop"), None)
    assert handoff._pending is None  # nothing kept for a loop that never runs


def test_calls_waiting_for_a_run_a_closing_loop_dropped_are_dropped_with_it() -> None:
    loop = asyncio.new_event_loop()
    handoff = LoopHandoff(loop)
    handoff.call(lambda _: pytest.fail("ran on a closed loop"), None)  # its run scheduled
    loop.close()  # before the run: close drops the loop's ready calls
    handoff.call(lambda _: pytest.fail("ran on a closed loop"), None)
    assert handoff._pending is None  # nothing kept for a loop that never runs


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6), max_size=12))
def test_every_call_runs_once_in_order_and_each_batch_wakes_the_loop_once(
    batches: list[int],
) -> None:
    """Batches of calls handed over between the loop's turns: each batch,
    however many calls, costs one wake-up, and the calls run in order."""
    loop = asyncio.new_event_loop()
    try:
        counted = WakeCount(loop)
        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        handoff = LoopHandoff(loop)
        ran: list[int] = []
        handed = 0
        for size in batches:
            for _ in range(size):
                handoff.call(ran.append, handed)
                handed += 1
            loop.run_until_complete(asyncio.sleep(0))
        assert ran == list(range(handed))
        assert counted.wakes == sum(1 for size in batches if size)
    finally:
        loop.close()


def test_every_call_runs_when_two_of_one_run_raise_what_stops_the_loop() -> None:
    """KeyboardInterrupt and SystemExit stop the loop, as asyncio lets them
    through a callback; the calls handed over with them still run first,
    however many of them raise so: each stands for a durable append."""
    loop = asyncio.new_event_loop()
    try:
        handoff = LoopHandoff(loop)
        ran: list[int] = []

        def interrupt(argument: int) -> None:
            ran.append(argument)
            raise KeyboardInterrupt

        def exit_(argument: int) -> None:
            ran.append(argument)
            raise SystemExit

        for call, argument in ((ran.append, 0), (interrupt, 1), (exit_, 2), (ran.append, 3)):
            handoff.call(call, argument)
        loop.call_soon(loop.stop)
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            loop.run_forever()
        assert ran == [0, 1, 2, 3]
    finally:
        loop.close()


def test_calls_handed_over_while_the_loop_runs_them_each_run_once_in_order() -> None:
    """A thread hands calls over while the loop runs earlier ones (the
    commit thread and the loop at once): none is lost or run twice, the
    order holds, and a call handed over during a run waits for the next."""
    handed = 20_000
    ran: list[int] = []

    async def handed_over_meanwhile() -> int:
        loop = asyncio.get_running_loop()
        counted = WakeCount(loop)
        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        handoff = LoopHandoff(loop)
        done = asyncio.Event()

        def from_another_thread() -> None:
            for i in range(handed):
                handoff.call(ran.append, i)
            handoff.call(lambda _: done.set(), None)

        thread = threading.Thread(target=from_another_thread)
        thread.start()
        try:
            await asyncio.wait_for(done.wait(), TIMEOUT)
        finally:
            thread.join(TIMEOUT)
        return counted.wakes

    wakes = asyncio.run(handed_over_meanwhile())
    assert ran == list(range(handed))
    assert 1 <= wakes <= handed + 1
