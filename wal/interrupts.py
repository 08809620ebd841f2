"""Releases that a second Ctrl-C cannot cut short.

SIGINT's handler (Python's default raises KeyboardInterrupt) runs on the
main thread at the interpreter's next look for signals: after a call
returns, on a backward jump, and as a Python function starts. A release
written in Python (a context manager's ``__exit__``, a function a
``finally`` calls) therefore has a point before it gives anything back
where an interrupt can land: its own start. The first Ctrl-C, raised in a
block, is what the release runs for; a second one arriving while that
release runs would skip it and leave a lock held, or a count up, for good
(or, with a generator's context manager, until the traceback is dropped).

A taker on the main thread opens a window as it takes (``Releasing``),
if SIGINT's handler is Python's own; while one is open, the handler is a
wrapper of it: run inside a release (a function marked ``@release``, or
anything one calls) it notes the signal and returns, and the release's
close of its window calls the handler found once everything is given
back; anywhere else it calls the handler found, so the block between
taking and releasing stays interruptible. The last window closed puts
the handler found back. Other threads receive no signals and open no
window. CPython's signal handling is the spec here: a handler's
frame is the frame where the interpreter looked.

In wal/, the lowest package that releases this way: s3stream and engine
use it too (docs/design/0111).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C module: no stubs
import _thread
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from types import CodeType, FrameType, TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
T = TypeVar("T")

_MAIN = threading.main_thread().ident
SIGINT = signal.SIGINT.value
Handler = Callable[[int, FrameType | None], Any] | int | None
# _signal's calls, not signal's: the module's wrappers convert handlers to
# and from enums, some 6 microseconds a call (an exception for a handler
# that is a function); the C calls take a tenth of one, and the setting
# one system call.
_getsignal: Callable[[int], Handler] = _signal.getsignal
_setsignal: Callable[[int, Handler], Handler] = _signal.signal
_RELEASES: set[CodeType] = set()
FRAMES_LOOKED_AT = 64
"""How far up the stack a signal looks for a release: a release's own
calls (a generator's finally, a lock's release written in Python) are
a few frames deep."""


def release(function: F) -> F:
    """Marks ``function`` as a release: a signal that arrives while it (or
    anything it calls) runs inside an open window waits for the window's
    close."""
    _RELEASES.add(function.__code__)
    return function


class _MainWindows:
    """The main thread's open windows, and whether a signal waits for their close."""

    def __init__(self) -> None:
        self.open = 0
        self.pending = False


_windows = _MainWindows()


def _in_release(frame: FrameType | None) -> bool:
    for _ in range(FRAMES_LOOKED_AT):
        if frame is None:
            return False
        if frame.f_code in _RELEASES:
            return True
        frame = frame.f_back
    return False


class _Deferring:
    """SIGINT's handler while a window is open."""

    __slots__ = ("found",)

    def __init__(self, found: Callable[[int, FrameType | None], Any]) -> None:
        self.found = found

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if _windows.open and _in_release(frame):
            _windows.pending = True
            return
        found = self.found
        if not _windows.open and _getsignal(SIGINT) is self:
            # A taker interrupted before it counted its window: put back
            # what it found, as its close would have.
            _setsignal(SIGINT, found)
        found(signum, frame)


class Releasing:
    """A taker whose release a signal cannot cut short: its ``__enter__``
    calls ``_open_window`` first, inside the try whose handler releases,
    and its release (marked ``@release``) calls ``_close_window`` last."""

    __slots__ = ("_window",)

    def __init__(self) -> None:
        self._window = False

    def _open_window(self) -> None:
        if _thread.get_ident() != _MAIN:
            return
        found = _getsignal(SIGINT)
        if found is not signal.default_int_handler and not isinstance(found, _Deferring):
            # Only Python's own raises KeyboardInterrupt wherever the
            # interpreter looks. An application's (an event loop's: uvloop's
            # under ``tidelog serve``, which sets a flag) is left alone, and
            # costs its takers no handler swaps (two system calls) on the
            # loop's hot paths; SIG_IGN and SIG_DFL raise nothing.
            return
        # Counted before the handler changes, with no call between: an
        # interrupt after any call below finds the window to close.
        self._window = True
        if isinstance(found, _Deferring):
            _windows.open += 1
        else:
            # The first window; or the wrapper was replaced by another
            # handler while windows were open, whose closes the count no
            # longer waits for.
            _windows.open = 1
            _windows.pending = False
            _setsignal(SIGINT, _Deferring(found))

    @release
    def _close_window(self) -> None:
        """Called last by a release: the window closes, and a signal that
        waited for it is handled now, unless another release is still
        running below this one (its own close handles it then)."""
        if _thread.get_ident() != _MAIN:
            return  # signals are the main thread's
        handler = _getsignal(SIGINT)
        found = handler.found if isinstance(handler, _Deferring) else handler
        if self._window:
            self._window = False
            _windows.open = max(_windows.open - 1, 0)  # a window opened before a reset: none
            if not _windows.open and handler is not found:
                _setsignal(SIGINT, found)
        # A release without a window of its own (its taker opened none, or
        # closed it early: a refused connection's) still handles a signal
        # that landed in it, when nothing below it is a release: another
        # taker's window may stay open for long (a kept-alive connection's).
        # Frame 1 is the release calling this; 2 is what called that.
        if _windows.pending and (not _windows.open or not _in_release(sys._getframe(2))):
            _windows.pending = False
            if callable(found):
                found(SIGINT, sys._getframe(1))


class _GeneratorReleasing(Releasing, Generic[T]):
    """contextlib.contextmanager's context manager, whose release (the
    generator's code after its yield) a signal cannot cut short, and
    whose entry ends the generator if interrupted once it yielded."""

    __slots__ = ("_generator",)

    def __init__(self, generator: Generator[T, None, None]) -> None:
        self._window = False
        self._generator = generator

    def __enter__(self) -> T:
        try:
            self._open_window()
            return next(self._generator)
        except StopIteration:
            self._close_window()
            raise RuntimeError("generator didn't yield") from None
        except BaseException:
            self._abandon()
            raise

    @release
    def _abandon(self) -> None:
        try:
            self._generator.close()  # its finally runs, if it yielded
        finally:
            self._close_window()

    @release
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        try:
            if error is None:
                try:
                    next(self._generator)
                except StopIteration:
                    return False
                raise RuntimeError("generator didn't stop")
            try:
                self._generator.throw(error)
            except StopIteration as stopped:
                return stopped is not error
            except BaseException as raised:
                if raised is error:
                    return False
                raise
            raise RuntimeError("generator didn't stop after throw()")
        finally:
            self._close_window()


def released_contextmanager(
    function: Callable[P, Iterator[T]],
) -> Callable[P, _GeneratorReleasing[T]]:
    """contextlib.contextmanager, with the release a signal cannot cut
    short (the generator's code after its yield runs whole)."""

    def make(*args: P.args, **kwargs: P.kwargs) -> _GeneratorReleasing[T]:
        # A generator function's, as for contextlib.contextmanager.
        return _GeneratorReleasing(cast(Generator[T, None, None], function(*args, **kwargs)))

    make.__doc__ = function.__doc__
    make.__name__ = function.__name__
    make.__qualname__ = function.__qualname__
    return make
