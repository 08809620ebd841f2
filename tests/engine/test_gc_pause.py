"""PausedWhileRunning: the collector paused while the awaited coroutine runs,
never while it waits; its result, its errors and its cancellation as a plain
await gives them."""

from __future__ import annotations

import _thread
import asyncio
import gc
import signal
import threading
import weakref
from collections.abc import Callable, Iterator

import pytest

from engine import gc_pause
from engine.gc_pause import PAUSE_BOUND, CollectorPaused, PausedWhileRunning
from tests.engine.interrupted import (
    interrupted_taking,
    interrupted_twice,
    interrupted_twice_calling,
    taken_elsewhere,
)


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_paused_in_the_steps_and_running_in_the_waits() -> None:
    seen: list[tuple[str, bool]] = []

    async def other() -> None:
        seen.append(("other", gc.isenabled()))

    async def steps() -> str:
        seen.append(("first step", gc.isenabled()))
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(other()))
        await asyncio.sleep(0.01)  # gives the loop to others
        seen.append(("second step", gc.isenabled()))
        return "done"

    async def main() -> str:
        return await PausedWhileRunning(steps())

    assert asyncio.run(main()) == "done"
    assert seen == [("first step", False), ("other", True), ("second step", False)]
    assert gc.isenabled()


def test_an_error_and_an_error_thrown_in_come_out_as_from_a_plain_await() -> None:
    class Refused(Exception):
        pass

    async def refuses() -> None:
        await asyncio.sleep(0)
        raise Refused

    async def main() -> None:
        await PausedWhileRunning(refuses())

    with pytest.raises(Refused):
        asyncio.run(main())
    assert gc.isenabled()


def test_a_cancelled_wait_reaches_the_coroutine_and_ends_the_pause() -> None:
    cleaned: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(gc.isenabled())

    async def awaiting() -> None:
        await PausedWhileRunning(waits())

    async def main() -> None:
        task = asyncio.ensure_future(awaiting())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleaned == [False]  # its cleanup ran as a step of its own, paused
    assert gc.isenabled()


def test_pauses_that_overlap_without_end_still_let_the_collector_run() -> None:
    # Pausers on several threads (the event loop's Fetch steps, the admin
    # thread's bulk work, a second server in the same process) may overlap
    # so that one always holds the pause when another leaves: the count of
    # pausers never reaches zero, and the cyclic garbage made meanwhile must
    # still be collected once the young generation has grown past the bound.
    collected: list[int] = []

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.collect()  # the young generation empty: the cycle below stays in it until a collection
    first = Cycle()
    weakref.finalize(first, collected.append, 1)
    del first
    held = CollectorPaused()
    held.__enter__()
    rounds = 0
    while not collected and rounds < 40:
        taking = CollectorPaused()
        taking.__enter__()  # the next pauser comes before the last leaves
        held.__exit__(None, None, None)
        held = taking
        for _ in range(PAUSE_BOUND // 10):
            Cycle()  # garbage only a collection frees
        rounds += 1
    ran_while_paused = bool(collected)
    held.__exit__(None, None, None)
    assert ran_while_paused, f"the collector never ran in {rounds} rounds of overlapping pauses"
    assert rounds <= 12  # the bound passed, and then one pauser's step more


@pytest.fixture
def own_lock(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Lock]:
    """The pauses' lock and count for this test alone: a lock it leaves
    held, or a pause it leaves counted, wedges no other test."""
    lock = threading.Lock()
    monkeypatch.setattr(gc_pause._pauses, "lock", lock)
    monkeypatch.setattr(gc_pause._pauses, "count", 0)
    yield lock
    gc.enable()


def test_a_ctrl_c_as_a_pause_takes_its_lock_leaves_the_lock_free(own_lock: threading.Lock) -> None:
    """A KeyboardInterrupt raised on the main thread just after the pause
    has taken its lock (an embedded engine's creation of many topics, a
    notebook's interrupted cell) leaves the lock free: held, every later
    pause on every thread (each Fetch's steps on the event loop) would
    block on it for good. acquire() then try: the interpreter looks for
    signals after the call that took the lock, before the try begins; a
    with statement takes it with no look between."""
    part = gc_pause._Part()
    assert interrupted_taking(own_lock, gc_pause._pause.__code__, lambda: gc_pause._pause(part))
    assert taken_elsewhere(own_lock)
    assert gc_pause._pauses.count == 0  # interrupted before it counted itself
    assert gc.isenabled()


def test_a_ctrl_c_as_a_release_takes_its_lock_leaves_the_lock_free(
    own_lock: threading.Lock,
) -> None:
    paused = CollectorPaused()
    paused.__enter__()
    assert paused.counted
    release = CollectorPaused.__exit__
    assert interrupted_taking(own_lock, release.__code__, lambda: release(paused, None, None, None))
    assert taken_elsewhere(own_lock)
    # The interrupt came after the release had counted itself out.
    assert gc_pause._pauses.count == 0
    assert gc.isenabled()


def interrupted_after(call: Callable[..., object]) -> Callable[..., object]:
    """``call``, with a Ctrl-C made pending as it returns: the interpreter
    raises it at its next look for signals, the one after the call's
    return, before the caller's next line (where a signal really can land,
    but never on cue)."""

    def interrupted(*args: object) -> object:
        result = call(*args)
        _thread.interrupt_main()
        return result

    return interrupted


def run_interrupted(run: Callable[[], object]) -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        signal.signal(signal.SIGINT, previous)


def one_step() -> None:
    async def step() -> None:
        pass

    stepping = step()
    try:
        with pytest.raises(StopIteration):
            next(PausedWhileRunning(stepping).__await__())
    finally:
        stepping.close()  # never started when interrupted before its step


def one_bulk_change() -> None:
    with CollectorPaused():
        pass


@pytest.mark.parametrize("pauser", [one_step, one_bulk_change])
def test_a_ctrl_c_as_a_pause_returns_leaves_no_pause_counted(
    own_lock: threading.Lock, monkeypatch: pytest.MonkeyPatch, pauser: Callable[[], None]
) -> None:
    """A KeyboardInterrupt raised just after the pause has counted itself,
    before its caller's try (an embedded engine's bulk creation on the main
    thread), ends the pause: left counted, the collector stays off for good
    and memory held by cycles only grows."""
    monkeypatch.setattr(gc_pause, "_pause", interrupted_after(gc_pause._pause))
    run_interrupted(pauser)
    assert gc_pause._pauses.count == 0
    assert gc.isenabled()


@pytest.mark.parametrize("pauser", [one_step, one_bulk_change])
def test_a_ctrl_c_as_the_pause_turns_the_collector_off_leaves_it_on(
    own_lock: threading.Lock, monkeypatch: pytest.MonkeyPatch, pauser: Callable[[], None]
) -> None:
    """Interrupted inside the pause, once the collector is off: the pause
    is counted already, and its release turns the collector back on."""
    monkeypatch.setattr(gc, "disable", interrupted_after(gc.disable))
    run_interrupted(pauser)
    assert gc_pause._pauses.count == 0
    assert gc.isenabled()


def test_a_second_ctrl_c_as_a_steps_pause_ends_leaves_no_pause_counted(
    own_lock: threading.Lock,
) -> None:
    """A Fetch's step (on an event loop on the main thread) interrupted,
    and a second Ctrl-C as the first leaves the step: the step's release
    is a finally's own code, with no function started before it gives
    the pause back (wal/interrupts.py), so none can land there."""

    async def step() -> None:
        _thread.interrupt_main()

    stepping = step()
    awaiting = PausedWhileRunning(stepping).__await__()
    try:
        interrupted = interrupted_twice_calling(lambda: next(awaiting))
    finally:
        stepping.close()
    assert gc_pause._pauses.count == 0
    assert gc.isenabled()
    assert interrupted.landed == []  # the release started no function


def test_a_second_ctrl_c_as_a_bulk_pause_ends_leaves_no_pause_counted(
    own_lock: threading.Lock,
) -> None:
    """Bulk admin work on the main thread (an embedded engine creating many
    topics) interrupted, and a second Ctrl-C as the pause's release
    starts: the release runs whole, then the interrupt is raised. With the
    exception kept, as a REPL keeps it, the pause is over: a generator's
    context manager, interrupted there, left its generator suspended and
    the collector off until the traceback was dropped."""
    interrupted = interrupted_twice(CollectorPaused())
    assert gc_pause._pauses.count == 0
    assert gc.isenabled()
    assert interrupted.landed == ["CollectorPaused.__exit__"]
