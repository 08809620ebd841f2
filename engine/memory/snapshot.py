"""Snapshots: a point in time of a set of topics as one OffsetVector.

``snapshot(host, topics)`` cuts every partition of ``topics`` where what is
durable ends now: read committed (the default) at the last stable offset,
below which every transaction is decided, read uncommitted at the high
watermark. ``at=T`` cuts each partition before its first record (or
transaction marker) whose timestamp is after ``T``, found through the
partition's time index as ListOffsets by timestamp finds it, and never past
the cut of now. For a LogAppendTime topic the timestamps are the engine's
clock when the batch was appended, so the cut is what had been appended by
T; for a CreateTime topic they are the producers' timestamps, so the cut is
the first record a producer dated after T (docs/memory.md, "Points in time
and bounded replay").

Each position carries the leader epoch of the last record it includes,
from the partition's leader-epoch history (-1 when it includes none), and
the id of the topic it was cut in.

A topic deleted before the call is UnknownTopic. One deleted while the
snapshot cuts it (and maybe created again under its name, with fewer
partitions or more) is UnknownTopic too, whatever its cut's read met: a
vector of what the deleted stream had left, or one with positions of two
incarnations of the name, or of some of the new one's partitions, names
no point in time of a topic that exists (engine/memory/deleted_topics.py).
So each topic's partitions are those of one look at it, never looked up
again by name one by one.
A topic created again before the call is cut as the topic the name holds.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable
from typing import Protocol

from engine.client.host import ClientHost
from engine.errors import OffsetOutOfRange, UnknownTopic
from engine.memory.deleted_topics import deleted_under
from engine.memory.vector import OffsetVector, Position
from engine.partition import Partition
from engine.store_errors import unanswered_reads
from engine.types import TopicPartition

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"


def snapshot(
    host: ClientHost,
    topics: Iterable[str],
    at: int | None = None,
    isolation_level: str = READ_COMMITTED,
) -> OffsetVector:
    """The vector of what ``topics`` held durably now (``at=None``) or at
    ``at`` (ms since the epoch); UnknownTopic names a topic that does not
    exist."""
    committed = _committed(isolation_level)
    positions: dict[TopicPartition, Position] = {}
    cut: list[Partition] = []
    # A topic deleted (and maybe created again) under the cuts: UnknownTopic,
    # never a cut of what its stream had left, nor one of two incarnations.
    with deleted_under(cut, {}):
        for leader in _partitions(host, topics):
            cut.append(leader)
            with unanswered_reads(leader.topic, leader.index):  # a cut by time reads objects
                positions[_tp(leader)] = _cut(leader, at, committed)
    return OffsetVector(positions)


async def snapshot_async(
    host: ClientHost,
    topics: Iterable[str],
    at: int | None = None,
    isolation_level: str = READ_COMMITTED,
) -> OffsetVector:
    """Like snapshot, for asyncio: a cut by time may read object storage,
    so it runs off the event loop."""
    if at is None:
        return snapshot(host, topics, None, isolation_level)
    return await asyncio.to_thread(snapshot, host, list(topics), at, isolation_level)


def earliest(host: ClientHost, topics: Iterable[str]) -> OffsetVector:
    """Every partition's log start as a vector: where a replay of all the
    records still held begins."""
    positions: dict[TopicPartition, Position] = {}
    read: list[Partition] = []
    with deleted_under(read, {}):  # as a snapshot's cuts
        for leader in _partitions(host, topics):
            read.append(leader)
            start = leader.log_start_offset
            positions[_tp(leader)] = Position(start, epoch_of(leader, start - 1), leader.topic_id)
    return OffsetVector(positions)


def epoch_of(leader: Partition, offset: int) -> int:
    """The leader epoch the record at ``offset`` was written in (-1: before
    the first record, or no history)."""
    if offset < 0:
        return -1
    with leader.lock:
        history = list(leader.leader_epochs)
    i = bisect.bisect_right(history, offset, key=lambda entry: entry[1]) - 1
    return history[i][0] if i >= 0 else -1


class LogBounds(Protocol):
    """Where a partition's log is (a Partition is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def index(self) -> int: ...

    @property
    def log_start_offset(self) -> int: ...

    @property
    def high_watermark(self) -> int: ...


class EpochHistory(LogBounds, Protocol):
    """What checking a position needs of a partition (a Partition is one)."""

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]: ...


class VectorDiverged(OffsetOutOfRange):
    """A vector's position (or a record's ref) names records of a leader
    epoch that ends before it in this log: records it counted were lost (a
    takeover after an acknowledgement the old owner's WAL alone held) and
    their offsets hold other records now, or it is another log's. Kafka's
    consumer raises LogTruncationException, an OffsetOutOfRange, on the
    same evidence (OffsetsForLeaderEpoch)."""

    def __init__(self, leader: LogBounds, position: Position, epoch_end: int) -> None:
        super().__init__(
            leader.topic,
            leader.index,
            position.offset,
            leader.log_start_offset,
            leader.high_watermark,
        )
        self.args = (
            f"{leader.topic}-{leader.index}: the records below {position.offset} were named "
            f"as written in leader epoch {position.leader_epoch}, which ends at {epoch_end} "
            "in this log: records past it are not the ones named",
        )
        self.leader_epoch = position.leader_epoch
        self.epoch_end = epoch_end


def check_position(leader: EpochHistory, position: Position) -> None:
    """VectorDiverged if the log's own leader epochs say the records below
    ``position`` are not the ones it named: its epoch (the one the last
    record it includes was written in, or over the wire the leader's epoch
    when it was cut) ends before it. A position with no epoch, or one older
    than the epochs the log still knows, cannot be checked; one outside the
    log is the caller's OffsetOutOfRange or RecordsRemoved."""
    if position.leader_epoch < 0:
        return
    if not leader.log_start_offset < position.offset <= leader.high_watermark:
        return
    epoch, end = leader.end_offset_for_epoch(position.leader_epoch)
    if epoch >= 0 and end < position.offset:
        raise VectorDiverged(leader, position, end)


def check_record(leader: EpochHistory, offset: int, leader_epoch: int) -> None:
    """VectorDiverged if the record at ``offset``, named as written in
    ``leader_epoch`` (a RecordRef's), cannot be the one named: checked as a
    position just past it is (the epoch of the last record it includes),
    so a ref is refused exactly when a vector ending with it would be."""
    check_position(leader, Position(offset + 1, leader_epoch))


def _cut(leader: Partition, at: int | None, committed: bool) -> Position:
    end = leader.last_stable_offset if committed else leader.high_watermark
    if at is not None:
        # The first record (or marker: a commit after T is not part of T)
        # whose timestamp is after T.
        found = leader.offset_for_timestamp(at + 1, include_control=True)
        if found is not None:
            end = min(end, found.offset)
    return Position(end, epoch_of(leader, end - 1), leader.topic_id)


def _partitions(host: ClientHost, topics: Iterable[str]) -> list[Partition]:
    """Every partition of ``topics``, each topic's from one look at it:
    never a partition looked up again by name, which a topic deleted and
    created again meanwhile answers from the new topic (another log, with
    maybe fewer partitions or more); a deletion after the look is the
    caller's ``deleted_under`` to find."""
    found: list[Partition] = []
    for name in dict.fromkeys(topics):
        leaders = host.topic_leaders(name)
        if leaders is None:
            raise UnknownTopic(name)
        found += leaders
    return found


def _tp(leader: Partition) -> TopicPartition:
    return TopicPartition(leader.topic, leader.index)


def _committed(isolation_level: str) -> bool:
    if isolation_level not in (READ_COMMITTED, READ_UNCOMMITTED):
        raise ValueError(
            f"isolation_level must be {READ_COMMITTED!r} or {READ_UNCOMMITTED!r}, "
            f"not {isolation_level!r}"
        )
    return isolation_level == READ_COMMITTED
