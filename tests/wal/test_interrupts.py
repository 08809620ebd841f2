"""Releases a second Ctrl-C cannot cut short (wal/interrupts.py): the
second, landing as the release starts, waits for it and is raised once
everything is given back; the block itself stays interruptible; and the
WAL's gathered block gives its hold back through it."""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.engine.interrupted import interrupted_twice, taken_elsewhere
from wal.interrupts import released_contextmanager
from wal.log import WriteAheadLog


class Held:
    """A lock and a count, taken together and given back together."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    @released_contextmanager
    def taken(self) -> Iterator[None]:
        with self.lock:
            self.count += 1
            try:
                yield
            finally:
                self.count -= 1


def test_a_second_ctrl_c_as_the_release_starts_waits_for_it() -> None:
    held = Held()
    interrupted = interrupted_twice(held.taken())
    assert held.count == 0
    assert taken_elsewhere(held.lock)
    assert interrupted.landed == ["_GeneratorReleasing.__exit__"]  # before anything was given back


def test_a_release_inside_a_block_raises_the_second_before_the_blocks_next_line() -> None:
    """Nested: the inner release runs whole, and its deferred Ctrl-C is
    raised as it returns, inside the outer block, which it then leaves
    (given back too)."""
    outer, inner = Held(), Held()
    lines: list[str] = []

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        try:
            with outer.taken():
                interrupted = interrupted_twice(inner.taken())
                lines.append("after the inner block")
                _thread.interrupt_main()
                lines.append("never")
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert interrupted.landed == ["_GeneratorReleasing.__exit__"]
    assert lines == ["after the inner block"]
    assert (outer.count, inner.count) == (0, 0)
    assert taken_elsewhere(outer.lock) and taken_elsewhere(inner.lock)
    assert signal.getsignal(signal.SIGINT) is previous


def test_a_block_interrupted_once_gives_back_and_raises() -> None:
    held = Held()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    went_on = False
    try:
        try:
            with held.taken():
                _thread.interrupt_main()
                went_on = True
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not went_on
    assert held.count == 0
    assert taken_elsewhere(held.lock)


def test_off_the_main_thread_nothing_changes_the_handler() -> None:
    held = Held()
    seen: list[object] = []

    def take() -> None:
        with held.taken():
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    other = threading.Thread(target=take)
    other.start()
    other.join(30)
    assert seen == [before]
    assert held.count == 0


def test_a_gathered_blocks_hold_is_given_back_through_a_second_ctrl_c(tmp_path: Path) -> None:
    """Left held, every group commit after would wait out its hold limit."""
    with WriteAheadLog(str(tmp_path / "wal")) as log:
        interrupted = interrupted_twice(log.gathered())
        assert log._committer._holds == 0
        assert interrupted.landed == ["_GeneratorReleasing.__exit__"]


def test_a_handler_installed_inside_a_window_is_the_one_later_windows_put_back() -> None:
    """A window whose release never ran (cut short while another handler
    had replaced the wrapper) is not waited for: the next window counts
    from one and puts back the handler it found."""
    abandoned, held = Held(), Held()
    previous = signal.getsignal(signal.SIGINT)
    try:
        abandoned.taken().__enter__()  # its release never runs
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with held.taken():
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def test_an_applications_handler_is_left_alone() -> None:
    """An event loop's handler (uvloop's under ``tidelog serve``) sets a
    flag and raises nothing: no window wraps it, and the loop's takers
    swap no handlers."""
    held = Held()
    seen: list[object] = []

    def sets_a_flag(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGINT, sets_a_flag)
    try:
        with held.taken():
            seen.append(signal.getsignal(signal.SIGINT))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [sets_a_flag]
