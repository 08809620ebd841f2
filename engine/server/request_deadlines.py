"""The deadlines of requests waiting to be answered (a Produce's acks
waiting for its fsync, within the request's timeout_ms), kept by one
timer for the whole server instead of a timer per request.

A timer per request cost the event loop a timer handle, a libuv timer
started, stopped and closed (a close callback a loop pass later) for every
Produce, although nearly every one is answered long before its timeout.
Here a request waiting is one entry of a dict, removed when it is
answered; the one timer is armed for the earliest deadline of those still
waiting, and when it fires it answers those past theirs and arms itself
for the next. A timeout is answered when its deadline has passed, on the
timer's callback at that deadline as a timer of its own would answer it:
never before, and late only by as much as the loop is.

The waiting are grouped by their timeout: requests of one timeout come in
the order of their deadlines (the loop's clock is monotonic), so each
group is a dict in insertion order and a sweep reads only a group's first
entries. Each group has one entry in a heap of when it is next due (its
first request's deadline, or earlier: a group emptied and filled again is
looked at early, once), so a sweep reads only the groups due, not every
timeout waiting: a client chooses each request's timeout_ms, and one
pipelining a new timeout with every request would otherwise make each
sweep, one a deadline, cost a step per timeout waiting.

A group found empty at a sweep is dropped; empty groups kept otherwise are
dropped, and the heap made again from the groups left, once the groups
number twice those left at the last drop (and at least ``_GROUPS_KEPT``):
at most one pass over them per as many new timeouts, so empty groups stay
bounded by the most timeouts that have waited at once. An entry is held
only while its request waits: what is kept is bounded by the requests in
flight, as their answers are.
"""

from __future__ import annotations

import asyncio
import math
from heapq import heapify, heappop, heappush
from typing import Protocol

_GROUPS_KEPT = 16
"""Groups kept, empty or not, before empty ones are dropped (one per
timeout_ms: clients send one)."""
_DUE = 1e-6
"""How far past the loop's clock a deadline still counts as reached: a
deadline and the clock are sums of floats, and the timer armed for it
may read a clock a rounding short of it."""


class Expiring(Protocol):
    """A request's answer that a timeout settles."""

    def time_out(self) -> None:
        """Answers the request as timed out (if it is not answered yet)."""


Waiting = dict[Expiring, float]
"""One timeout's requests waiting, each with its deadline (the loop's
time), in the order they came: the order of their deadlines."""


class RequestDeadlines:
    """The server's requests waiting with a timeout (see the module)."""

    __slots__ = ("_armed_at", "_due", "_groups", "_loop", "_timer", "_until_drop")

    def __init__(self) -> None:
        self._groups: dict[int, Waiting] = {}
        self._due: list[tuple[float, int]] = []
        """A heap: each group's timeout once, with when it is next due (no
        later than its first entry's deadline)."""
        self._until_drop = _GROUPS_KEPT
        """How many groups may be kept before the empty ones are dropped."""
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, entry: Expiring, timeout_ms: int) -> Waiting:
        """Has ``entry`` timed out ``timeout_ms`` from now unless it is
        removed from the group returned first (``del group[entry]``, or
        ``pop`` where the sweep may have removed it): the caller removes
        it when its request is answered. Called on the event loop."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        group = self._groups.get(timeout_ms)
        if group is None:
            group = self._new_group(timeout_ms, deadline)
        group[entry] = deadline
        if deadline < self._armed_at:
            self._arm(loop, deadline)
        return group

    def _new_group(self, timeout_ms: int, deadline: float) -> Waiting:
        if len(self._groups) >= self._until_drop:
            self._drop_empty()
        group: Waiting = {}
        self._groups[timeout_ms] = group
        heappush(self._due, (deadline, timeout_ms))
        return group

    def _drop_empty(self) -> None:
        """Drops the empty groups and makes the heap again from those left
        (each due at its first entry's deadline): the groups then may
        double before the next pass, so a pass is paid for by as many new
        timeouts as it reads."""
        self._groups = {timeout: group for timeout, group in self._groups.items() if group}
        self._due = [(next(iter(group.values())), t) for t, group in self._groups.items()]
        heapify(self._due)
        self._until_drop = max(_GROUPS_KEPT, 2 * len(self._groups))

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = deadline
        self._timer = loop.call_at(deadline, self._sweep)

    def _sweep(self) -> None:
        """Answers every request past its deadline, drops the groups found
        empty and arms the timer for the earliest deadline left."""
        loop = self._loop
        assert loop is not None
        self._timer = None
        self._armed_at = math.inf
        due = loop.time() + _DUE
        groups = self._groups
        heap = self._due
        expired: list[Expiring] = []
        while heap and heap[0][0] <= due:
            _, timeout = heappop(heap)
            group = groups[timeout]
            past: list[Expiring] = []
            for entry, deadline in group.items():
                if deadline > due:
                    break
                past.append(entry)
            for entry in past:
                del group[entry]
            if group:
                heappush(heap, (next(iter(group.values())), timeout))
            else:
                del groups[timeout]
            expired += past
        if heap:
            self._arm(loop, heap[0][0])
        for entry in expired:
            entry.time_out()

    @property
    def waiting(self) -> int:
        """How many requests wait (for tests and metrics)."""
        return sum(map(len, self._groups.values()))

    def close(self) -> None:
        """Stops the timer (the server stopping): requests still waiting
        are answered by their connections' closing instead."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = math.inf
