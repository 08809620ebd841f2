"""State as of a time or an offset vector, rebuilt from a compacted topic.

A "current state" topic (cleanup.policy=compact) holds one value per key;
the state as of a time T is, per key, the value of its last record (in
offset order, the order compaction keeps) whose timestamp is at or before
T; a tombstone (null value) there means the key is absent. Below an offset
vector, the same with the records below each partition's position. Only
committed records count: records above the last stable offset are not read,
and aborted transactions are skipped with the partition's aborted index, as
a read_committed consumer skips them. Records without a key are ignored
(a compacted topic refuses them).

Compaction removes superseded records, so such a state may no longer be
answerable. Each partition's answer says whether it is exact, from the
partition's compaction horizon (engine/compaction_horizon.py) and its log
start: when the cleaner removed records at or before T whose superseding
records are after T, or when retention or DeleteRecords removed a prefix,
it is not. Then the partition's answer is the exact state at the earliest
time (or offset) at or after the one asked for that the kept records still
answer — at least as new as asked, and said so — never a silent mix. A
time the log has not reached (the engine's clock, or for the object store's
copy the latest time a stored record carries) is not exact either: records
dated up to it may still be written, and the answer would change.

Memory is O(live keys): one dict of each key's latest record, filled from
a stream of fetched chunks.

The partitions read are those looked up when the call began, never looked
up again by name. A topic deleted before the call or while they are read
(and perhaps created again under its name) raises UnknownTopicId for a
vector naming the topic's id, else UnknownTopic: no state of part of a
deleted topic, nor of the new topic's records read as the old one's
(Engine.state_at; engine/memory/deleted_topics.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

import native
from engine.compaction_horizon import CompactionHorizon
from engine.errors import EngineError, OffsetOutOfRange, UnknownPartition, UnknownTopicId
from engine.isolation import committed_batches
from engine.memory.snapshot import check_position
from engine.memory.vector import OffsetVector, Position, RecordRef
from engine.partition import PartitionFetch
from engine.protocol.kafka_code import KafkaCode
from engine.topic_id import NO_TOPIC_ID
from native import TimestampType

CHUNK_BYTES = 4 * 1024 * 1024
"""The most one fetch of a state rebuild reads at once."""
_NO_TIME = -(2**63)
"""Before every time a record can carry: nothing read yet."""


class InvalidStateQuery(EngineError):
    """A state query named neither or both of a time and a vector, a
    vector without the topic, or a partition the vector names no position of."""

    code = KafkaCode.INVALID_REQUEST


class StateQuery(NamedTuple):
    partitions: list[int]
    at_ms: int | None
    below: dict[int, Position]
    """The vector's positions, by partition."""
    topic_id: bytes = NO_TOPIC_ID
    """The topic the vector's positions are places in (NO_TOPIC_ID: any of the name)."""


def state_query(
    topic: str,
    at: int | datetime | None,
    vector: OffsetVector | None,
    partitions: Sequence[int] | None,
    partition_count: int,
) -> StateQuery:
    """Checks a state query's arguments: exactly one of ``at`` (ms since the
    epoch, or an aware datetime) and ``vector``; ``partitions`` default to
    all of the topic's (the vector's for the vector form)."""
    if (at is None) == (vector is None):
        raise InvalidStateQuery(f"state of {topic}: give one of a time or an offset vector")
    for p in partitions or ():
        if not 0 <= p < partition_count:
            raise UnknownPartition(topic, p, partition_count)
    if vector is None:
        assert at is not None
        if isinstance(at, datetime):
            if at.tzinfo is None:
                raise InvalidStateQuery(f"state of {topic}: the time {at} has no time zone")
            at = round(at.timestamp() * 1000)
        chosen = list(partitions) if partitions is not None else list(range(partition_count))
        return StateQuery(chosen, at, {})
    below = {tp.partition: pos for tp, pos in vector.items() if tp.topic == topic}
    if not below:
        raise InvalidStateQuery(f"state of {topic}: the vector names none of its partitions")
    for p in below:
        if not 0 <= p < partition_count:
            raise UnknownPartition(topic, p, partition_count)
    unplaced = sorted(set(partitions or ()) - below.keys())
    if unplaced:
        # The state below no position: an empty answer would pass for an exact one.
        raise InvalidStateQuery(f"state of {topic}: the vector names no position of {unplaced}")
    chosen = sorted(below) if partitions is None else list(partitions)
    return StateQuery(chosen, None, below, vector.topic_id(topic))


class KeyState(NamedTuple):
    """A key's value as of the time asked, and the record that set it."""

    value: bytes
    ref: RecordRef
    timestamp: int


class PartitionExactness(NamedTuple):
    """How far one partition's part of the answer can be trusted."""

    partition: int
    exact: bool
    """Every record that could matter for the time or offset asked is kept."""
    as_of_ms: int | None
    """Time form: the time the partition's answer is exactly the state at
    (the time asked when exact, later when not)."""
    below_offset: int | None
    """Vector form: the offset the partition's answer is exactly the state below."""
    log_start_offset: int
    horizon: CompactionHorizon | None
    """What the log cleaner removed (None: nothing)."""
    pending: bool = False
    """Time form: the log has not reached the time asked (records dated at
    or before it may still be written), so the answer is not final."""

    def describe(self) -> str:
        where = (
            f"as of {self.as_of_ms} ms"
            if self.as_of_ms is not None
            else f"below {self.below_offset}"
        )
        if self.exact:
            return f"partition {self.partition}: exact ({where})"
        if self.pending:
            return (
                f"partition {self.partition}: inexact: the log has not reached {self.as_of_ms} "
                "ms, so records dated up to it may still be written; the state given is "
                "what is held so far"
            )
        if self.log_start_offset > 0:
            return (
                f"partition {self.partition}: inexact: offsets below {self.log_start_offset} "
                f"were deleted; kept records read {where}"
            )
        return (
            f"partition {self.partition}: inexact: history compacted away; "
            f"the state given is the state {where}, at least as new as asked"
        )


@dataclass(frozen=True)
class TopicState:
    """A topic's keys and values as of a time or below a vector."""

    topic: str
    values: dict[bytes, KeyState]
    """A key found in more than one partition keeps its latest record (by timestamp)."""
    partitions: tuple[PartitionExactness, ...]

    @property
    def exact(self) -> bool:
        return all(p.exact for p in self.partitions)


class StateSource(Protocol):
    """What a state rebuild reads from one partition (a Partition is one)."""

    topic: str
    topic_id: bytes
    index: int
    compaction_horizon: CompactionHorizon | None

    @property
    def log_start_offset(self) -> int: ...

    @property
    def high_watermark(self) -> int: ...

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]: ...

    def fetch(
        self, offset: int, max_bytes: int, read_committed: bool = False
    ) -> PartitionFetch: ...


def plan_at(source: StateSource, at_ms: int) -> PartitionExactness:
    """The time a partition's answer for ``at_ms`` is exact at, as far as
    its kept records go (:func:`with_reached` then checks the time)."""
    horizon = source.compaction_horizon
    start = source.log_start_offset
    kept_exact = horizon is None or horizon.exact_at(at_ms)
    as_of = at_ms if kept_exact or horizon is None else max(at_ms, horizon.max_ms)
    return PartitionExactness(source.index, kept_exact and start == 0, as_of, None, start, horizon)


def with_reached(plan: PartitionExactness, reached_ms: int) -> PartitionExactness:
    """``plan`` given that every record dated before ``reached_ms`` is
    readable: a time at or after it may still get records dated up to it
    (written later, or in a transaction still open), so its state is the
    latest one known, not final."""
    if plan.as_of_ms is None or plan.below_offset is not None or plan.as_of_ms < reached_ms:
        return plan
    return plan._replace(exact=False, pending=True)


def plan_below(source: StateSource, offset: int) -> PartitionExactness:
    """The offset a partition's answer below ``offset`` is exact below."""
    horizon = source.compaction_horizon
    start = source.log_start_offset
    kept_exact = horizon is None or horizon.exact_below(offset)
    below = offset if kept_exact or horizon is None else max(offset, horizon.end_offset)
    return PartitionExactness(source.index, kept_exact and start == 0, None, below, start, horizon)


class PartitionFold:
    """Folds a partition's committed records into each key's latest record,
    as of a time (``as_of_ms``) or below an offset (``below_offset``)."""

    def __init__(self, source: StateSource, plan: PartitionExactness) -> None:
        self.topic = source.topic
        self.topic_id = source.topic_id
        self.partition = source.index
        self.as_of_ms = plan.as_of_ms
        self.below_offset = plan.below_offset
        self.offset = plan.log_start_offset
        self.latest: dict[bytes, KeyState] = {}
        self.done = self.below_offset is not None and self.offset >= self.below_offset
        self.read_ms = _NO_TIME
        """The latest time a batch read carries (markers and aborted
        transactions' too): with LogAppendTime, a record dated before it
        was appended before that batch, so it was read as well."""

    def feed(self, fetched: PartitionFetch) -> None:
        """Applies one fetched chunk (read_committed, from ``self.offset``)."""
        if fetched.next_offset <= self.offset or not fetched.records:
            self.done = True
            return
        for chunk in fetched.records:
            for header in native.scan_batches(chunk):
                self.read_ms = max(self.read_ms, header.max_timestamp)
        aborted = fetched.aborted_transactions or []
        for batch in committed_batches(fetched.records, aborted):
            self._apply(batch, fetched.max_inflated)
        self.offset = fetched.next_offset
        if self.below_offset is not None and self.offset >= self.below_offset:
            self.done = True

    def _apply(self, batch: memoryview, max_inflated: int) -> None:
        header = native.scan_batches(batch)[0]
        if header.last_offset < self.offset:
            return
        below = self.below_offset
        if below is not None and header.base_offset >= below:
            return
        at = self.as_of_ms
        log_append = header.timestamp_type == TimestampType.LOG_APPEND_TIME
        for record in native.decode_records(batch, max_inflated=max_inflated):
            if record.key is None or record.offset < self.offset:
                continue
            if below is not None and record.offset >= below:
                break
            timestamp = header.max_timestamp if log_append else record.timestamp
            if at is not None and timestamp > at:
                continue
            if record.value is None:
                self.latest.pop(record.key, None)
            else:
                epoch = header.partition_leader_epoch
                ref = RecordRef(self.topic, self.partition, record.offset, epoch, self.topic_id)
                self.latest[record.key] = KeyState(record.value, ref, timestamp)


def merge(
    topic: str, folds: Iterable[PartitionFold], plans: Iterable[PartitionExactness]
) -> TopicState:
    values: dict[bytes, KeyState] = {}
    for fold in folds:
        for key, state in fold.latest.items():
            known = values.get(key)
            if known is None or state.timestamp > known.timestamp:
                values[key] = state
    return TopicState(topic, values, tuple(plans))


Reached = Callable[[int, int], int]
"""Given a partition's index and the latest time a batch its rebuild read
carries, the time its log has reached: every record dated before it is
readable (LogAppendTime; for CreateTime as far as producers' clocks
agree)."""


def _plan(source: StateSource, query: StateQuery) -> PartitionExactness:
    if query.topic_id not in (NO_TOPIC_ID, source.topic_id):
        # The vector's positions are places in a topic deleted since.
        raise UnknownTopicId(source.topic, query.topic_id)
    if query.at_ms is not None:
        return plan_at(source, query.at_ms)
    below = query.below[source.index]
    end = source.high_watermark
    if below.offset > end:
        # Records below it are not written yet (or the vector is another
        # log's): the state below it is not known, as a replay refuses it.
        raise OffsetOutOfRange(
            source.topic, source.index, below.offset, source.log_start_offset, end
        )
    check_position(source, below)  # the records below it are still those it named
    return plan_below(source, below.offset)


ReadGuard = Callable[[str, int], contextlib.AbstractContextManager[None]]
"""What a partition's reads run inside, given its topic and index (the
engine's: its store's errors raised naming the partition)."""


def _unguarded(topic: str, partition: int) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def rebuild(
    topic: str,
    sources: Iterable[StateSource],
    query: StateQuery,
    reached: Reached,
    reads: ReadGuard = _unguarded,
) -> TopicState:
    """The state of ``sources`` (the topic's partitions the query names)."""
    plans: list[PartitionExactness] = []
    folds: list[PartitionFold] = []
    for source in sources:
        plan = _plan(source, query)
        fold = PartitionFold(source, plan)
        while not fold.done:
            with reads(source.topic, source.index):
                fetched = source.fetch(fold.offset, CHUNK_BYTES, read_committed=True)
            fold.feed(fetched)
        plans.append(with_reached(plan, reached(source.index, fold.read_ms)))
        folds.append(fold)
    return merge(topic, folds, plans)


class AsyncStateSource(StateSource, Protocol):
    async def fetch_async(
        self, offset: int, max_bytes: int, read_committed: bool = False
    ) -> PartitionFetch: ...


async def rebuild_async(
    topic: str,
    sources: Iterable[AsyncStateSource],
    query: StateQuery,
    reached: Reached,
    reads: ReadGuard = _unguarded,
) -> TopicState:
    """:func:`rebuild`, reading through the store's asynchronous fetch."""
    plans: list[PartitionExactness] = []
    folds: list[PartitionFold] = []
    for source in sources:
        plan = _plan(source, query)
        fold = PartitionFold(source, plan)
        while not fold.done:
            with reads(source.topic, source.index):
                fetched = await source.fetch_async(fold.offset, CHUNK_BYTES, read_committed=True)
            if fetched.read_pending:
                # The store's read outlasted a Fetch's wait and goes on: no
                # records, yet not the end. Asking again waits on that read.
                continue
            fold.feed(fetched)
        plans.append(with_reached(plan, reached(source.index, fold.read_ms)))
        folds.append(fold)
    return merge(topic, folds, plans)
