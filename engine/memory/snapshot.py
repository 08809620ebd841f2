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
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable

from engine.client.host import ClientHost
from engine.errors import UnknownTopic
from engine.memory.vector import OffsetVector, Position
from engine.partition import Partition
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
    for tp in _partitions(host, topics):
        leader = host.partition(tp.topic, tp.partition)
        positions[tp] = _cut(leader, at, committed)
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
    for tp in _partitions(host, topics):
        leader = host.partition(tp.topic, tp.partition)
        start = leader.log_start_offset
        positions[tp] = Position(start, epoch_of(leader, start - 1), leader.topic_id)
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


def _cut(leader: Partition, at: int | None, committed: bool) -> Position:
    end = leader.last_stable_offset if committed else leader.high_watermark
    if at is not None:
        # The first record (or marker: a commit after T is not part of T)
        # whose timestamp is after T.
        found = leader.offset_for_timestamp(at + 1, include_control=True)
        if found is not None:
            end = min(end, found.offset)
    return Position(end, epoch_of(leader, end - 1), leader.topic_id)


def _partitions(host: ClientHost, topics: Iterable[str]) -> list[TopicPartition]:
    names = list(dict.fromkeys(topics))
    found = host.topic_partitions(names)
    known = {tp.topic for tp in found}
    for name in names:
        if name not in known:
            raise UnknownTopic(name)
    return found


def _committed(isolation_level: str) -> bool:
    if isolation_level not in (READ_COMMITTED, READ_UNCOMMITTED):
        raise ValueError(
            f"isolation_level must be {READ_COMMITTED!r} or {READ_UNCOMMITTED!r}, "
            f"not {isolation_level!r}"
        )
    return isolation_level == READ_COMMITTED
