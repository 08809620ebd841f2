"""Offset syncs: how a mirrored record's source offset maps to its offset on
the target cluster.

Offsets differ between the two sides: transaction markers, aborted records
and compaction gaps take source offsets that the target never sees, and the
target may hold markers of its own. The mapping is still monotone and
piecewise contiguous: within a run of records copied one after another, the
target offset is the source offset plus a fixed delta. The mirror writes an
:class:`OffsetSync` to the target's :data:`OFFSET_SYNCS_TOPIC` for the first
record of every run (whenever the delta changes), so every mirrored record's
target offset follows *exactly* from the last sync at or below its source
offset — not approximately, as with periodic syncs.

Record form on the target (a compacted-by-nothing, one-partition topic;
records are appended in the order the mirror learns them):

- key: ``topic`` UTF-8, a NUL byte, then the partition as a big-endian
  signed 32-bit integer;
- value: version (int16, currently 0), source offset (int64), target offset
  (int64), all big-endian;
- no headers.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition

OFFSET_SYNCS_TOPIC = "tidelog.mirror.offset-syncs"
"""The topic on the target cluster that holds offset syncs."""

_VALUE = struct.Struct(">hqq")
_PARTITION = struct.Struct(">i")
_VERSION = 0


class InvalidOffsetSync(EngineError):
    """An offset-sync record did not parse."""

    code = KafkaCode.CORRUPT_MESSAGE


@dataclass(frozen=True, slots=True, order=True)
class OffsetSync:
    """The record at ``source_offset`` of ``tp`` is at ``target_offset`` on
    the target, and so are the records after it up to the next sync (each
    one further along by one on both sides)."""

    tp: TopicPartition
    source_offset: int
    target_offset: int

    def key(self) -> bytes:
        return self.tp.topic.encode() + b"\0" + _PARTITION.pack(self.tp.partition)

    def value(self) -> bytes:
        return _VALUE.pack(_VERSION, self.source_offset, self.target_offset)

    @classmethod
    def parse(cls, key: bytes, value: bytes) -> OffsetSync:
        topic, sep, partition = (
            key[: -_PARTITION.size - 1],
            key[-_PARTITION.size - 1 : -_PARTITION.size],
            key[-_PARTITION.size :],
        )
        if not topic or sep != b"\0" or len(value) != _VALUE.size:
            raise InvalidOffsetSync(f"offset sync of {len(key)}+{len(value)} bytes")
        version, source, target = _VALUE.unpack(value)
        if version != _VERSION or source < 0 or target < 0:
            raise InvalidOffsetSync(f"offset sync version {version}: {source} -> {target}")
        try:
            name = topic.decode()
        except UnicodeDecodeError as exc:
            raise InvalidOffsetSync("offset sync topic is not UTF-8") from exc
        return cls(TopicPartition(name, _PARTITION.unpack(partition)[0]), source, target)


class OffsetTranslation:
    """The syncs of one partition, answering source offset -> target offset.

    :meth:`translate` is exact for any source offset of a mirrored record at
    or after the first sync: the last sync at or below it gives the delta.
    An offset inside a gap (a marker or a removed record) translates to at
    most where the next run starts, so a position (the first offset not yet
    read) translates to a target position with nothing mirrored skipped and
    nothing repeated.
    """

    __slots__ = ("_source", "_target")

    def __init__(self, syncs: Iterable[OffsetSync] = ()) -> None:
        self._source: list[int] = []
        self._target: list[int] = []
        for sync in sorted(syncs):
            self.add(sync)

    def add(self, sync: OffsetSync) -> None:
        """Adds a sync at or after the last one (a repeat is ignored)."""
        if self._source and sync.source_offset <= self._source[-1]:
            if sync.source_offset == self._source[-1] and sync.target_offset == self._target[-1]:
                return
            raise InvalidOffsetSync(
                f"sync {sync.source_offset} -> {sync.target_offset} after {self._source[-1]}"
            )
        self._source.append(sync.source_offset)
        self._target.append(sync.target_offset)

    def translate(self, source_offset: int) -> int | None:
        """The target offset of the mirrored record at ``source_offset``;
        None below the first sync (nothing known)."""
        at = bisect.bisect_right(self._source, source_offset) - 1
        if at < 0:
            return None
        target = self._target[at] + (source_offset - self._source[at])
        if at + 1 < len(self._target):
            # Past the end of run ``at`` (a gap on the source): the next
            # mirrored record is the first of the next run.
            target = min(target, self._target[at + 1])
        return target

    def __len__(self) -> int:
        return len(self._source)
