"""The completions' retry timer: one thread that hands a completion back to
the workers once its backoff has passed, so a completion waiting out a
refusal holds no worker (docs/design/0108).

Waits are real waits on the system clock, as the backoffs are (a store
refusing for room heals in real time, whatever clock a test drives the
coordinator's timers with). A call scheduled after close, or still
waiting at close, is not run: its ``cancel`` is called instead, once; so
is the ``cancel`` of a call that raised.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from engine import clock

log = logging.getLogger("tidelog.transactions")


class RetryTimer:
    """Thread safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, Callable[[], None], Callable[[], None]]] = []
        self._order = itertools.count()
        """Ties broken in the order scheduled (callables do not compare)."""
        self._closed = False
        self._thread: threading.Thread | None = None
        """Started at the first retry: most engines never refuse a completion."""

    def schedule(self, delay_s: float, run: Callable[[], None], cancel: Callable[[], None]) -> None:
        """Calls ``run`` on the timer's thread once ``delay_s`` has passed, or
        ``cancel`` (on the caller's thread, or close's) if the timer closes first."""
        with self._changed:
            if not self._closed:
                due = clock.monotonic() + delay_s
                heapq.heappush(self._due, (due, next(self._order), run, cancel))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="tidelog-txn-retry", daemon=True
                    )
                    self._thread.start()
                self._changed.notify()
                return
        cancel()

    def close(self) -> None:
        """Stops the thread (a call it is running finishes first) and cancels
        the calls still waiting."""
        with self._changed:
            self._closed = True
            thread = self._thread
            self._changed.notify()
        if thread is not None:
            thread.join()
        # One at a time, each taken before it is called, in the order due: a
        # close cut short (Ctrl-C in the join) and called again cancels those
        # left, none twice (docs/design/0113).
        while cancel := self._next_waiting():
            cancel()

    def _next_waiting(self) -> Callable[[], None] | None:
        with self._changed:
            return heapq.heappop(self._due)[3] if self._due else None

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed:
                    if self._due:
                        wait = self._due[0][0] - clock.monotonic()
                        if wait <= 0:
                            break
                        self._changed.wait(wait)
                    else:
                        self._changed.wait()
                if self._closed:
                    return
                _, _, run, cancel = heapq.heappop(self._due)
            try:
                run()
            except Exception:
                # Cancelled, not dropped: a dropped retry would hold its
                # transactional id pending, and its waiter, for ever.
                log.exception("a transaction completion's retry failed to start")
                try:
                    cancel()
                except Exception:
                    log.exception("cancelling a transaction completion's retry failed")
