"""Where the readers of one stream read next, each with its read-ahead window.

Several consumer groups (or replay jobs, or tail readers) of one stream read
it at positions of their own. A window kept per stream would take each one's
read for a seek by the other and start again small; here each position keeps
its own, found by the offset its last read ended at (where its reader reads
next). Two positions that come to end at the same offset are one from then
on (their readers read the same blocks). How many a stream keeps is bounded:
a reader that seeks at random, or a peer opening positions without end,
replaces the least lately read one (docs/design/0155, "Several readers of
one stream").
"""

from __future__ import annotations

from collections import OrderedDict

READ_POSITIONS_PER_STREAM = 16
"""The most read positions one stream keeps a window for: more consumer
groups of one topic than this, read at once, share the cache poorly anyway
(each gets a sixteenth of its stream's share)."""


class ReadPosition:
    """One reader's place in a stream: where its last read ended, its
    read-ahead window, and the read clock (bytes all reads returned) then."""

    __slots__ = ("caught_up", "end", "read_at", "window")

    def __init__(self) -> None:
        self.end = -1
        self.window = 0
        self.read_at = 0
        self.caught_up = False
        """Its last read reached the end of what objects hold: nothing
        ahead of it to keep in the cache until more is uploaded."""


class StreamPositions:
    """The read positions of one stream, least lately read first, keyed by
    where each reads next. A position being read is taken out (``take``)
    and put back when its read ends (``put``), so a second reader at the
    same offset meanwhile starts one of its own."""

    __slots__ = ("_by_end",)

    def __init__(self) -> None:
        self._by_end: OrderedDict[int, ReadPosition] = OrderedDict()

    def take(self, offset: int, read_clock: int, stale_bytes: int) -> ReadPosition:
        """The position whose last read ended at ``offset``, or a new one
        (``end`` -1: not a continuation). Positions not read while all
        readers read ``stale_bytes`` since are dropped first: their
        read-ahead is gone from a cache of that size whatever it was."""
        self.drop_stale(read_clock, stale_bytes)
        found = self._by_end.pop(offset, None)
        if found is not None:
            return found
        while len(self._by_end) >= READ_POSITIONS_PER_STREAM:
            self._by_end.popitem(last=False)
        return ReadPosition()

    def put(self, position: ReadPosition, end: int, read_clock: int, caught_up: bool) -> None:
        """Puts ``position`` back, its read having ended at ``end``. One
        already ending there is the same reader's place from now on: the
        two merge, keeping the larger window. The least lately read go
        while the stream has its most."""
        met = self._by_end.pop(end, None)
        if met is not None:
            position.window = max(position.window, met.window)
        # ``take`` made room only for what it returned; positions taken at
        # once by readers on several threads come back together.
        while len(self._by_end) >= READ_POSITIONS_PER_STREAM:
            self._by_end.popitem(last=False)
        position.end = end
        position.read_at = read_clock
        position.caught_up = caught_up
        self._by_end[end] = position

    def drop_stale(self, read_clock: int, stale_bytes: int) -> None:
        while self._by_end:
            oldest = next(iter(self._by_end.values()))
            if read_clock - oldest.read_at < stale_bytes:
                return
            self._by_end.popitem(last=False)

    def reading(self) -> int:
        """The positions that have read-ahead to keep: not caught up."""
        return sum(1 for position in self._by_end.values() if not position.caught_up)

    def __len__(self) -> int:
        return len(self._by_end)
