"""Fetch reads shared by the consumers that ask for the same data.

When a partition grows, every consumer tailing it wakes and fetches it from
the same offset with the same limit (fan-out: one topic, many consumer
groups). The first of those fetches reads the store and encodes the
partition's entry of its response; the others take the same read and, for
the same API version, the same encoded bytes, for as long as the partition
is unchanged: the same leader (a topic deleted and created again is another
partition), high watermark, log start and last stable offset. Stored bytes
below the high watermark do not change while those stand (a log cleaner's
replace keeps what a read of the range means), so a shared read answers
what a read of its own would have.

The cache is small and bounded by bytes: it holds references to stored
batches (log cache or block cache memory), and an entry of a partition that
stopped growing is dropped once newer entries need the room.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

from engine.partition import Partition
from engine.protocol.encoder import EncodedItem

ReadT = TypeVar("ReadT")

MAX_ENTRIES = 1024
MAX_BYTES = 32 * 1024 * 1024
"""Record bytes the entries may hold references to: within the log cache's
and block cache's own bounds, they keep memory alive a little longer only."""
MAX_READ_BYTES = 1024 * 1024
"""The largest read kept. Tailing consumers' reads are what arrived since
their last fetch; a replay's reads of megabytes, each asked for once, would
only push theirs out."""


class ReadKey(NamedTuple):
    topic: str
    partition: int
    offset: int
    limit: int
    committed: bool


class Marks(NamedTuple):
    """What must not have moved for a shared read to stand."""

    high_watermark: int
    log_start_offset: int
    last_stable_offset: int


class SharedRead(Generic[ReadT]):
    """One read, and its partition entry encoded for each API version asked."""

    __slots__ = ("_encoded", "leader", "marks", "read", "size")

    def __init__(self, leader: Partition, marks: Marks, read: ReadT, size: int) -> None:
        self.leader = leader
        self.marks = marks
        self.read = read
        self.size = size
        self._encoded: dict[int, EncodedItem] = {}

    def encoded(self, version: int, encode: Callable[[], EncodedItem]) -> EncodedItem:
        """The partition's response entry for ``version``, encoded once."""
        item = self._encoded.get(version)
        if item is None:
            item = self._encoded[version] = encode()
        return item


def marks_of(leader: Partition) -> Marks:
    # One look at the partition's offsets (a Fetch asks this of each
    # partition it reads), not one per offset.
    log_start, high_watermark, last_stable = leader.read_offsets()
    return Marks(high_watermark, log_start, last_stable)


class SharedReads(Generic[ReadT]):
    """Reads by what was asked (ReadKey), least recently used dropped first.
    Used from the event loop only."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        max_read_bytes: int = MAX_READ_BYTES,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_read_bytes = min(max_read_bytes, max_bytes)
        self.size = 0
        self.hits = 0
        """Reads answered by an earlier one (engine metrics read it)."""
        self._reads: OrderedDict[ReadKey, SharedRead[ReadT]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._reads)

    def get(self, key: ReadKey, leader: Partition, marks: Marks) -> SharedRead[ReadT] | None:
        """The read asked for, if an earlier one made it of the same
        partition, then at the same ``marks`` (its marks now)."""
        shared = self._reads.get(key)
        if shared is None:
            return None
        if shared.leader is not leader or shared.marks != marks:
            self._drop(key)
            return None
        self._reads.move_to_end(key)
        self.hits += 1
        return shared

    def put(
        self, key: ReadKey, leader: Partition, marks: Marks, read: ReadT, size: int
    ) -> SharedRead[ReadT] | None:
        """Keeps a read made with the partition at ``marks`` (taken before
        the read: a read racing an append then stands for the older marks,
        and no later fetch matches them). None if it is too big to keep."""
        if size > self.max_read_bytes:
            return None
        self._drop(key)
        shared = SharedRead(leader, marks, read, size)
        self._reads[key] = shared
        self.size += size
        while self.size > self.max_bytes or len(self._reads) > self.max_entries:
            _, oldest = self._reads.popitem(last=False)
            self.size -= oldest.size
        return shared

    def _drop(self, key: ReadKey) -> None:
        shared = self._reads.pop(key, None)
        if shared is not None:
            self.size -= shared.size
