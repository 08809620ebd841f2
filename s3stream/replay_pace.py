"""How fast reads from object storage are answered while live traffic is present.

A replay of history asks for tens of megabytes a fetch, as fast as it is
answered; each answer costs the server's read threads CPU (file reads,
CRC checks, parsing blocks) and the replaying client more (decoding every
record). On a machine with fewer cores than that work wants, live produce
and tail reads wait for a CPU behind it. So while live traffic is present
(an append or records the log cache answers, within ``LIVE_WINDOW_S``), an
asynchronous read that went to object storage is answered only after a
rest: ``rest_ratio`` times as long as the read took. A replay then goes
at least 1 / (1 + rest_ratio) as fast as it would (the rest adds to the
server's part of each round trip, not the client's), and the client,
paced by the answers, asks less often; alone, with no live traffic, it
goes at full speed. The rest is a timer on the event loop, never a
thread held.
"""

from __future__ import annotations

import time
from collections.abc import Callable

LIVE_WINDOW_S = 0.5
"""An append or a tail read within this long counts as live traffic."""
MOST_REST_S = 0.25
"""The longest rest after one read (a read slowed by a failing store is
not made to wait as long again)."""


class ReplayPace:
    """When live traffic was last seen, and the rest a read from object
    storage takes because of it. Times come from ``clock`` (seconds)."""

    __slots__ = ("_clock", "_live_at", "_rest_ratio")

    def __init__(self, rest_ratio: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rest_ratio = rest_ratio
        self._clock = clock
        self._live_at = -float("inf")

    def now(self) -> float:
        return self._clock()

    def live(self) -> None:
        """An append, or records the log cache answered: live traffic now."""
        self._live_at = self._clock()

    def is_live(self) -> bool:
        """Whether live traffic was seen within ``LIVE_WINDOW_S``."""
        return self._live_at >= self._clock() - LIVE_WINDOW_S

    def rest_after(self, started: float) -> float:
        """Seconds to rest before answering a read from object storage that
        started at ``started`` and has just ended: 0 with no live traffic
        since ``LIVE_WINDOW_S`` before the read started."""
        if self._rest_ratio <= 0 or self._live_at < started - LIVE_WINDOW_S:
            return 0.0
        return min(MOST_REST_S, (self._clock() - started) * self._rest_ratio)
