"""How late the server's event loop runs: a tick every ``TICK_S`` that
measures how long after its due time it ran, the longest such lag since
asked, and, on the ``tidelog.stalls`` logger at DEBUG, each lag of
``LATE_S`` or more, each full garbage collection with its duration, and
each younger one that took ``LATE_S`` or more.

A produce is acknowledged by a callback on the loop; a loop held by one
long callback (or by the collector, or by another thread holding the GIL)
delays every acknowledgement due meanwhile. The lines say when and how
long, beside the ``tidelog.stalls`` lines of the WAL (slow syncs, rolls,
spares) and the object store (object writes), so that a latency spike can
be laid against what ran at that moment: turn the logger on with
``kafka-configs --alter --entity-type broker-loggers --entity-name 1
--add-config tidelog.stalls=DEBUG`` (or ``--log-level DEBUG``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from engine import clock

TICK_S = 0.02
"""How often the loop is asked to run the tick while the stalls logger is
on (a few thousand callbacks a minute: nothing beside a produce's own)."""
IDLE_TICK_S = 1.0
"""How often while it is off: an idle embedded server should not wake
fifty times a second for lines nobody reads; the longest lag is still
measured, coarsely (a hold is seen only when a tick falls due in it)."""
LATE_S = 0.01
"""Lags from this one up are logged (when the logger is on)."""

stalls = logging.getLogger("tidelog.stalls")


class LoopLag:
    """The event loop's lag, measured by a tick on it; the garbage
    collector's full collections and its long younger ones, timed on
    whichever thread ran them."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        """The longest lag since ``take_longest``."""
        self.ticks = 0
        """Ticks run since start (how often an idle server wakes for this)."""
        self._task: asyncio.Task[None] | None = None
        self._collection_started = 0.0

    def start(self) -> None:
        """Starts the tick on the running loop and the collector's timing."""
        self._task = asyncio.get_running_loop().create_task(self._tick())
        gc.callbacks.append(self._collected)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)

    def take_longest(self) -> float:
        """The longest lag since the last call, in seconds; starts anew."""
        longest, self.longest_s = self.longest_s, 0.0
        return longest

    def observe(self, lag_s: float) -> None:
        """One tick's lag: kept if the longest, logged if LATE_S or more."""
        self.longest_s = max(self.longest_s, lag_s)
        if lag_s >= LATE_S and stalls.isEnabledFor(logging.DEBUG):
            stalls.debug("event loop ran %.1f ms late", lag_s * 1000)

    async def _tick(self) -> None:
        while True:
            period = TICK_S if stalls.isEnabledFor(logging.DEBUG) else IDLE_TICK_S
            due = clock.monotonic() + period
            await asyncio.sleep(period)
            self.ticks += 1
            self.observe(max(0.0, clock.monotonic() - due))

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        # Every full collection, and a younger one only if it held the GIL
        # LATE_S or more: young ones are short and many. Under ``serve``'s
        # young threshold (engine/gc_pause.py, docs/design/0152) the middle
        # generation holds the log cache's batches, and its collection, not
        # a full one, is the longest pause (60 ms of CPU, measured).
        if not stalls.isEnabledFor(logging.DEBUG):
            return
        if phase == "start":
            self._collection_started = clock.monotonic()
            return
        if not self._collection_started:  # the logger was turned on mid-collection
            return
        took_s = clock.monotonic() - self._collection_started
        self._collection_started = 0.0
        generation = info["generation"]
        if generation == 2:
            stalls.debug(
                "full garbage collection took %.1f ms (%d objects freed)",
                took_s * 1000,
                info["collected"],
            )
        elif took_s >= LATE_S:
            stalls.debug(
                "garbage collection of generation %d took %.1f ms (%d objects freed)",
                generation,
                took_s * 1000,
                info["collected"],
            )
