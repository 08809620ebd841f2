"""The engine's one clock: wall time in milliseconds (what records and
stored state are stamped with) and monotonic seconds (what deadlines and
timers are measured in).

The coordinators, the classic group, the partitions and the embedded
clients (through their host) take a :class:`Clock`, so that tests can
drive their timers and timeouts with a :class:`ManualClock` instead of
sleeping; their waits are real waits bounded by the clock's remaining
time, woken through :meth:`Clock.on_advance` when a ManualClock moves.
Code that waits on sockets (a wire fetch's long poll) uses the module
functions, the system clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Clock:
    """The system clock. Subclasses may move on their own: a timer thread
    registers a waker with :meth:`on_advance` to re-read it when it does."""

    def time_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def on_advance(self, wake: Callable[[], None]) -> None:
        """Calls ``wake`` whenever the clock jumps; the system clock never does."""


SYSTEM = Clock()


def time_ms() -> int:
    """Wall time, in milliseconds since the epoch."""
    return SYSTEM.time_ms()


monotonic: Callable[[], float] = time.monotonic
"""Monotonic seconds, for deadlines on real waits: the system clock's own
function, with no Python call between (the server reads it several times
a request; Clock.monotonic above is the same clock)."""


class ManualClock(Clock):
    """A clock that moves only when :meth:`advance` moves it (wall and
    monotonic time together), waking the timers registered with it."""

    def __init__(self, time_ms: int = 1_700_000_000_000, monotonic: float = 1_000.0) -> None:
        self._lock = threading.Lock()
        self._time_ms = time_ms
        self._monotonic = monotonic
        self._wakers: list[Callable[[], None]] = []

    def time_ms(self) -> int:
        with self._lock:
            return self._time_ms

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def on_advance(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakers.append(wake)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        with self._lock:
            self._monotonic += seconds
            self._time_ms += round(seconds * 1000)
            wakers = list(self._wakers)
        for wake in wakers:
            wake()
