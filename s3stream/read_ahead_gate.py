"""How many read-ahead loads run at once while live traffic is present.

A replay of history is read ahead by the reader's workers: each load is a
GET of up to a span of blocks and a parse of every block in it (CRC
checks), a few milliseconds of CPU a megabyte. A sequential reader soon
has its whole window in flight, one load per worker, so during a replay
every worker is runnable at once. The workers run at a lower OS priority
(``read_nice``), but Linux weighs each runnable thread on its own: seven
workers at nice 5 weigh more than twice the event loop at nice 0, and the
loop, the WAL's writer and its sync thread (each a hop of every
acknowledgement) wait behind them for a CPU.

So while live traffic is present (ReplayPace.is_live: an append or records
the log cache answered, lately), at most ``limit`` loads run at once; the
others wait until one of them ends. Alone, a replay loads with
every worker, as fast as it can. The wait is bounded: a load that has not
had its turn within ``most_wait_s`` runs anyway (``overdue``), so a replay
slowed beside live traffic always moves on, and no thread can wait on a
load that waits on it for longer than that.

Only loads that wait on nothing are gated (a span's GET and parse, the
prefetch of a whole stream object's index): the reads a fetch waits for
directly run on the fetch threads and are never held here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from wal.interrupts import released_contextmanager

MOST_WAIT_S = 0.25
"""The longest a load waits for its turn (then it runs anyway)."""


class ReadAheadGate:
    """Admits read-ahead loads: all at once with no live traffic, at most
    ``limit`` at once beside it (0: never limited). ``live`` says whether
    live traffic is present; ``clock`` gives seconds (the deadline of a
    wait)."""

    __slots__ = (
        "_changed",
        "_clock",
        "_limit",
        "_live",
        "_most_wait_s",
        "_running",
        "admitted_at_once",
        "held",
        "overdue",
    )

    def __init__(
        self,
        limit: int,
        live: Callable[[], bool],
        most_wait_s: float = MOST_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 0:
            raise ValueError(f"read-ahead loads beside live traffic must be >= 0, got {limit}")
        self._limit = limit
        self._live = live
        self._most_wait_s = most_wait_s
        self._clock = clock
        self._changed = threading.Condition(threading.Lock())
        self._running = 0
        self.admitted_at_once = 0
        """Loads that ran as soon as they asked."""
        self.held = 0
        """Loads that waited for their turn beside live traffic."""
        self.overdue = 0
        """Held loads that ran because their wait reached most_wait_s."""

    @property
    def limit(self) -> int:
        return self._limit

    def beside_live(self) -> bool:
        """Whether live traffic is present now (loads are limited)."""
        return self._live()

    @property
    def running(self) -> int:
        with self._changed:
            return self._running

    def _must_wait(self) -> bool:
        return self._limit > 0 and self._running >= self._limit and self._live()

    @released_contextmanager
    def admitted(self) -> Iterator[None]:
        """Holds the caller until its load may run, then counts it running
        until the block ends (through a second Ctrl-C too: wal/interrupts.py)."""
        with self._changed:
            if not self._must_wait():
                self.admitted_at_once += 1
            else:
                self.held += 1
                deadline = self._clock() + self._most_wait_s
                while self._must_wait():
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        self.overdue += 1
                        break
                    self._changed.wait(remaining)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                # Every waiter looks again: with live traffic gone, all of
                # them may run, not just the next.
                self._changed.notify_all()
