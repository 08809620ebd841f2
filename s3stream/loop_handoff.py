"""Calls handed from other threads to one event loop, many per wake-up.

A manifest commit answers every remote acknowledgement its upload holds
at once, on the upload thread; each one's next step runs on the loop that
appended it. Scheduled one by one, each is a cross-thread call of its own
(a write to the loop's self-pipe, and the loop thread taking the GIL back
from the upload thread between them), so the last of a commit's appends
is answered after all the others' wake-ups. Handed over here, the calls
that arrive before the loop runs them share one wake-up and run in the
order they came, as the WAL's group commit settles its group in one call
per loop (wal/group_commit.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


class LoopHandoff:
    """Runs calls on ``loop``, handed over from any thread: the first call
    handed over while none waits schedules one run of all that wait."""

    __slots__ = ("_lock", "_pending", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[[Any], None], Any]] | None = None
        """Calls waiting for the run scheduled on the loop (None: no run is)."""

    def call(self, function: Callable[[Any], None], argument: Any) -> None:
        """Calls ``function(argument)`` on the loop, soon; never here."""
        with self._lock:
            # A loop closed with the run scheduled dropped it (close clears
            # its ready calls): scheduling anew drops what waited too, rather
            # than keep it, and the loop, as long as this handoff lives.
            if self._pending is not None and not self.loop.is_closed():
                self._pending.append((function, argument))
                return
            self._pending = [(function, argument)]
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # a closed loop: nobody is waiting any more
            with self._lock:
                self._pending = None

    def _run(self) -> None:
        with self._lock:
            calls, self._pending = self._pending or [], None
        self._run_from(calls, 0)

    def _run_from(self, calls: list[tuple[Callable[[Any], None], Any]], start: int) -> None:
        for index in range(start, len(calls)):
            function, argument = calls[index]
            try:
                self._call_reporting(function, argument)
            except BaseException:
                # SystemExit or KeyboardInterrupt, let through to stop the
                # loop; the calls after it run first, each as guarded as
                # this one (a second such exception must not cut the rest
                # short either): their appends are durable, and left here
                # they would never be answered. As _settle_on_loop in
                # wal/group_commit.py.
                self._run_from(calls, index + 1)
                raise

    def _call_reporting(self, function: Callable[[Any], None], argument: Any) -> None:
        try:
            function(argument)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as error:
            # Reported as the loop reports a failing callback of its own
            # (asyncio's Handle catches BaseException too), without cutting
            # the other calls short.
            self.loop.call_exception_handler(
                {"message": "a call handed to the loop failed", "exception": error}
            )
