"""The group coordinator's clock: one thread, a heap of deadlines.

Session expiry, rebalance and sync deadlines, the initial rebalance delay
and the offset retention check all run here, as do the coordinator's
reactions to state-log writes becoming durable (handed over from the WAL's
thread, which must never wait for the coordinator's lock). The thread
sleeps until the earliest deadline or until a sooner one is added; nothing
polls.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from engine.clock import SYSTEM, Clock

log = logging.getLogger("tidelog.groups")


class Timer:
    """A scheduled call; ``cancel`` keeps it from running."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerThread:
    """Runs callbacks at monotonic deadlines, in deadline order (ties in the
    order they were added), one at a time on its own thread."""

    def __init__(self, name: str, clock: Clock = SYSTEM) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._left_soon: list[Timer] = []
        """Work handed over with call_soon, found by stop: run once the thread ended."""
        self._counter = itertools.count()
        self._changed = threading.Condition(threading.Lock())
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        clock.on_advance(self._clock_advanced)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self._clock.monotonic() + max(delay_s, 0.0), callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        with self._changed:
            if self._stopped:
                timer.cancelled = True
                return timer
            heapq.heappush(self._heap, (when, next(self._counter), timer))
            if self._heap[0][2] is timer:
                self._changed.notify()
        return timer

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` on this thread as soon as it is free, or in the
        caller's thread if the timer thread has stopped (so that work handed
        over while closing still happens)."""
        with self._changed:
            if not self._stopped:
                heapq.heappush(self._heap, (0.0, next(self._counter), Timer(0.0, callback)))
                self._changed.notify()
                return
        callback()

    def _clock_advanced(self) -> None:
        with self._changed:
            self._changed.notify()

    @property
    def on_timer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        """Stops the thread once the callback running now (if any) returns;
        timers not yet due are dropped, work handed over with call_soon runs."""
        with self._changed:
            self._stopped = True
            # Kept until each has run: a stop cut short runs the rest when called again.
            self._left_soon.extend(entry[2] for entry in self._heap if entry[0] == 0.0)
            self._heap.clear()
            self._changed.notify()
        if not self.on_timer_thread:
            self._thread.join()
        while self._left_soon:
            _run_quietly(self._left_soon.pop(0))

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    if self._stopped:
                        return
                    if self._heap:
                        wait = self._heap[0][0] - self._clock.monotonic()
                        if wait <= 0:
                            timer = heapq.heappop(self._heap)[2]
                            break
                        self._changed.wait(wait)
                    else:
                        self._changed.wait()
            if not timer.cancelled:
                _run_quietly(timer)


def _run_quietly(timer: Timer) -> None:
    try:
        timer.callback()
    except Exception:  # one failed callback must not stop every group's timers
        log.exception("a group coordinator timer failed")
