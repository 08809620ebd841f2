"""A Ctrl-C (SIGINT's KeyboardInterrupt) that arrives on the main thread
while it waits for a lock, and is raised as soon as it has taken it: at the
interpreter's first check for signals after the lock's acquire() returns.

A real signal cannot be sent on cue to that instant; the pending signal is
set the way the signal's own handler sets it (``_thread.interrupt_main``)
while another thread holds the lock, and raised by the interpreter, not by
the test, wherever it next looks."""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import CodeType, FrameType
from typing import NamedTuple, Protocol

from wal.interrupts import _Deferring

WAIT_S = 30.0


class Lock(Protocol):
    """A threading.Lock, or an RLock taken once."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...


def interrupted_taking(lock: Lock, code: CodeType, call: Callable[[], object]) -> bool:
    """Runs ``call`` on the main thread while another thread holds
    ``lock``; once the main thread runs ``code`` (the function that takes
    the lock), the other asks for a KeyboardInterrupt and lets the lock go.
    Whether ``call`` raised KeyboardInterrupt."""
    assert threading.current_thread() is threading.main_thread(), "signals reach the main thread"
    main = threading.main_thread().ident
    assert main is not None
    failures: list[str] = []
    held = threading.Event()

    def interrupt_when_inside() -> None:
        # Taken here, not by the main thread: an RLock is released only by
        # the thread that took it.
        lock.acquire()
        held.set()
        try:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                frame = sys._current_frames().get(main)
                if frame is not None and frame.f_code is code:
                    break
                time.sleep(0.001)
            else:
                failures.append(f"the main thread never ran {code.co_name}")
            # Pending now: the main thread raises it at its next check, and
            # the only one left before the lock is taken is the one after it.
            _thread.interrupt_main()
        finally:
            lock.release()

    previous = _raising_sigint()
    other = threading.Thread(target=interrupt_when_inside)
    other.start()
    try:
        assert held.wait(WAIT_S), "the other thread never took the lock"
        call()
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = False
    finally:
        other.join(WAIT_S)
        _put_back(previous)
    assert not failures, failures
    return interrupted


def taken_elsewhere(lock: Lock) -> bool:
    """Whether another thread can take ``lock`` (and give it back) within
    a few seconds: False is a lock left held for good."""
    taken = threading.Event()

    def take() -> None:
        if lock.acquire(timeout=5):
            lock.release()
            taken.set()

    other = threading.Thread(target=take)
    other.start()
    other.join(WAIT_S)
    return taken.is_set()


class Interrupted(NamedTuple):
    landed: list[str]
    """The function the second Ctrl-C landed in (none if no function was
    called while the first was handled)."""
    error: KeyboardInterrupt
    """What came out, kept as a REPL or a notebook keeps it
    (sys.last_value): its traceback holds the frames it passed through,
    and so whatever a generator suspended in them still holds."""


def interrupted_twice(block: AbstractContextManager[object]) -> Interrupted:
    """Enters ``block`` on the main thread and, inside it, raises a first
    Ctrl-C; a second is made pending as the next Python function called
    while the first is handled starts (the release's first, on the way
    out of the block): the worst point, before the release has given
    anything back. A KeyboardInterrupt must come out of the block."""

    def block_interrupted() -> None:
        with block:
            _thread.interrupt_main()  # the first: raised as this call returns
            raise AssertionError("the block went on past the first Ctrl-C")

    interrupted = interrupted_twice_calling(block_interrupted)
    assert len(interrupted.landed) == 1, interrupted.landed
    return interrupted


def interrupted_twice_calling(call: Callable[[], object]) -> Interrupted:
    """Runs ``call`` on the main thread, which must raise a first Ctrl-C;
    while that one is handled (a finally, an __exit__ on its way out), a
    second is made pending as the next Python function starts, by a trace
    function, as SIGINT's own handler sets it, and the interpreter's look
    at that function's start handles it. The handler found is SIGINT's
    again after."""
    assert threading.current_thread() is threading.main_thread(), "signals reach the main thread"
    landed: list[str] = []

    def second_at_the_next_call(frame: FrameType, event: str, arg: object) -> None:
        # Once the first is being handled: not in SIGINT's handler itself.
        if event == "call" and isinstance(sys.exc_info()[1], KeyboardInterrupt):
            sys.settrace(None)
            landed.append(frame.f_code.co_qualname)
            _thread.interrupt_main()

    previous = _raising_sigint()
    found = signal.getsignal(signal.SIGINT)
    try:
        sys.settrace(second_at_the_next_call)
        try:
            call()
        except KeyboardInterrupt as error:
            came_out = error
        else:
            raise AssertionError("no KeyboardInterrupt came out")
        sys.settrace(None)  # a C call: no function starts before it
        assert signal.getsignal(signal.SIGINT) is found  # the handler found is back
    finally:
        sys.settrace(None)
        _put_back(previous)
    return Interrupted(landed, came_out)


def _raising_sigint() -> signal._HANDLER:
    """Makes SIGINT raise KeyboardInterrupt, as Python starts, unless
    Python's own handler or a window's (wal/interrupts.py, which this must
    neither replace nor put back later) is in place; what to put back
    (SIG_DFL, SIG_IGN, or a handler an earlier test of the process left
    behind), or None."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler or isinstance(previous, _Deferring):
        return None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return previous


def _put_back(previous: signal._HANDLER) -> None:
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
