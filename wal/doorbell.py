"""How the WAL's writer thread sleeps until an appender has work for it.

A ``threading.Condition`` does the job, at a price paid on every group of
a lone appender (one wake-up per call): each ``wait`` makes a new lock and
queues it, each ``notify`` checks ownership and walks the waiters, all in
Python. With one sleeper only, a lock held while nobody rings is enough:
the sleeper blocks acquiring it, a ringer releases it. Both sides run
under the owner's lock, which keeps the ring and the sleep in step.
"""

from __future__ import annotations

import threading


class Doorbell:
    """One sleeper, many ringers, every call made holding ``lock``."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._bell = threading.Lock()
        self._bell.acquire()  # released only by a ring, taken back by the sleeper
        self._asleep = False
        """Whether the sleeper sleeps or is about to: only then does a ring
        release the bell, so it is released at most once per sleep."""

    def ring(self) -> None:
        """Wakes the sleeper if it sleeps; else nothing (it looks at its
        work before it sleeps again)."""
        if self._asleep:
            self._asleep = False
            self._bell.release()

    def sleep(self, timeout: float | None = None) -> bool:
        """Lets ``lock`` go, sleeps until rung or for ``timeout`` seconds,
        and takes ``lock`` again; whether it was rung."""
        if timeout is not None:
            # A longer wait (an interval of inf) would raise in the acquire
            # and end the sleeper; one this long is as good as endless.
            timeout = min(timeout, threading.TIMEOUT_MAX)
        self._asleep = True
        self._lock.release()
        try:
            rung = self._bell.acquire(timeout=-1 if timeout is None else timeout)
        finally:
            self._lock.acquire()
        if not rung and not self._asleep:
            # Rung after the wait timed out but before the lock was taken
            # again: the bell was released; take it back, or the next sleep
            # would return at once, rung by nobody.
            self._bell.acquire()
            rung = True
        self._asleep = False
        return rung
