"""Forks of topics for evaluation: a new topic whose partitions read the
parent's records below a fork point from the parent's own objects (shared,
not copied; s3stream/forking.py) and take new records after it.

Over the wire a fork is just a topic. Each fork partition gets a new, empty
state stream, so it rebuilds its producer state, leader epochs, time index
and transaction index by replaying the shared batches' headers, as a
partition does after a crash: aborted transactions below the fork point
stay aborted for read_committed readers. A transaction still open at the
fork point can never end in the fork (its coordinator serves the parent),
so the fork ends it with an abort marker, as Kafka's transaction timeout
would. The design is docs/design/0007-forks.md; users' guide docs/memory.md.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from engine.catalog import Catalog, TopicMeta
from engine.catalog_snapshot import waited_after
from engine.clock import Clock
from engine.errors import (
    AdminTimedOut,
    CoordinatorNotAvailable,
    EngineError,
    OffsetOutOfRange,
    RecordListTooLarge,
    TopicExists,
    UnknownTopic,
)
from engine.governance_gate import OWNER, Actor
from engine.memory.deleted_topics import gone
from engine.memory.snapshot import check_position
from engine.memory.vector import InvalidVector, OffsetVector
from engine.partition import Partition, inherited_checkpoint
from engine.protocol.kafka_code import KafkaCode
from engine.store_errors import store_writes
from engine.topics import Topic, TopicRegistry
from engine.types import NewTopic, TopicDescription
from s3stream import UNPACED, ForkPointInsideRange, NoRoom, StoreFailed, StreamStore

log = logging.getLogger("tidelog.engine")

_FORK_ATTEMPTS = 5
"""Forks at the high watermark retried when appends landed meanwhile."""
_MARKER_TIMEOUT_S = 30.0
"""How long a fork waits for its abort markers and first checkpoint to be durable."""
_UPLOAD_TIMEOUT_S = 30.0
"""How long a fork waits, before it takes the engine's lock, for what was
appended so far to be uploaded (a fork shares only committed objects)."""
_UPLOAD_UNDER_LOCK_S = 2.0
"""How long it waits under the lock for what was appended since: little,
uploaded at once, unless the object store failed in between, and the
server's event loop takes that lock (docs/design/0099)."""


class ForkHost(Protocol):
    """What a fork needs of topic administration (engine/topic_admin.py's
    TopicAdmin): the topics, the catalog and store, the engine's lock, and
    the checks and records a new topic goes through."""

    registry: TopicRegistry
    catalog: Catalog
    store: StreamStore
    lock: threading.RLock
    clock: Clock

    def check_open(self) -> None: ...

    def check_new_topic(self, topic: NewTopic) -> tuple[int, dict[str, str]]: ...

    def masking_key_records(
        self, name: str, configs: Mapping[str, str | None], *, new_topic: bool
    ) -> list[list[Any]]: ...

    def append_catalog_all(self, records: list[list[Any]]) -> None: ...

    def created_history(
        self, metas: Sequence[TopicMeta], actor: Actor, starts: Sequence[list[int]] | None = None
    ) -> list[Any]: ...


class ForkPointUnavailable(EngineError):
    """The fork point would split a stored batch (a fork shares or copies
    whole batches), or a range the log cleaner rewrote. ``range_start`` and
    ``range_end``, that batch's or range's bounds, are fork points that work."""

    code = KafkaCode.OFFSET_OUT_OF_RANGE

    def __init__(
        self, topic: str, partition: int, offset: int, range_start: int, range_end: int
    ) -> None:
        super().__init__(
            f"{topic}-{partition}: offset {offset} is inside the stored batch or cleaned "
            f"range [{range_start}, {range_end}); fork at {range_start} or {range_end}"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.range_start = range_start
        self.range_end = range_end


def fork_topic(
    admin: ForkHost,
    topic: str,
    name: str,
    at: OffsetVector | None = None,
    configs: Mapping[str, object] | None = None,
) -> TopicDescription:
    """Creates topic ``name`` as a fork of ``topic`` at ``at`` (each of the
    topic's partitions at its position there; a partition the vector leaves
    out, or every partition when ``at`` is None, at its high watermark).
    The fork has the parent's config overrides, then ``configs``.

    Raises UnknownTopic (UnknownTopicId for a vector naming the id of a
    topic deleted since, even one of the name created again), TopicExists,
    InvalidTopic (the name, or one that collides with a topic's by "."
    against "_"), OffsetOutOfRange
    (a position outside a partition's log, or a vector naming a partition
    the topic does not have; VectorDiverged, a position whose records the
    log no longer holds), InvalidVector (a vector naming none of the
    topic's partitions), ForkPointUnavailable, AdminTimedOut (the object
    store did not take the parent's records, or the WAL had no room for the
    fork's own state, in time: nothing was forked; fork again once the
    store answers)."""
    registry = admin.registry
    # Uploaded first, without the engine's lock: the server's event loop
    # takes it (AddPartitionsToTxn, implicit adds, auto-creation), and an
    # object store that is down would hold it for the whole wait.
    with store_writes():
        uploaded = admin.store.flush(_UPLOAD_TIMEOUT_S)
    if not uploaded:
        raise AdminTimedOut(
            f"forking {topic}: its records were not uploaded within {_UPLOAD_TIMEOUT_S:g} s"
        )
    with waited_after(), admin.lock:
        admin.check_open()
        source = registry.topics.get(topic)
        if source is None:
            # A vector naming the id of a topic deleted since is refused as
            # by a replay or a state below it (docs/memory.md).
            raise UnknownTopic(topic) if at is None else gone(topic, at.topic_id(topic))
        if name in registry.topics:
            raise TopicExists(name)
        registry.check_no_collision(name)
        overrides = {**source.meta.configs, **(configs or {})}
        count = len(source.partitions)
        _, checked = admin.check_new_topic(NewTopic(name, count, overrides))
        if at is not None:
            at.check_topic_id(topic, source.meta.topic_id)
        points = _fork_points(topic, source.partitions, at)
        data_ids: list[int] = []
        state_ids: list[int] = []
        try:
            for partition, point in zip(source.partitions, points, strict=True):
                data_ids.append(_fork_partition(admin, partition, point))
            with store_writes():
                state_ids = admin.store.create_streams(count)
            for parent, data_id, state_id in zip(
                source.partitions, data_ids, state_ids, strict=True
            ):
                _inherit_compaction_horizon(admin.store, parent, data_id, state_id)
            meta = TopicMeta(
                name, uuid.uuid4().bytes, checked,
                list(zip(data_ids, state_ids, strict=True)), admin.clock.time_ms(),
            )  # fmt: skip
            # Durable before the catalog records the fork, as its horizon is:
            # a fork is never named without them, and one refused is undone.
            opened = registry.open_topic(meta)
            _end_what_it_inherits(opened)
        except BaseException:
            with store_writes():
                admin.store.delete_streams([*data_ids, *state_ids])
            raise
        # A fork holding governance configs is a creation in the governance
        # history; its records below the fork points are the parent's, so
        # its own configs (its stamping) hold from there.
        starts = [admin.store.next_offset(data_id) for data_id in data_ids]
        record = ["create_topic", meta.to_wire(), *admin.created_history([meta], OWNER, [starts])]
        try:
            # The fork's own masking key (a masked parent's configs ask for
            # one) in the same write: refused, neither is written.
            admin.append_catalog_all(
                [*admin.masking_key_records(name, checked, new_topic=True), record]
            )
        except (CoordinatorNotAvailable, RecordListTooLarge) as error:
            if isinstance(error, CoordinatorNotAvailable) and not isinstance(
                error.__cause__, NoRoom
            ):
                raise
            # Refused whole, nothing written, its masking key neither
            # (docs/design/0099; too large for a record, 0107): undone as a
            # refusal before it is.
            with store_writes():
                admin.store.delete_streams([*data_ids, *state_ids])
            if isinstance(error, RecordListTooLarge):
                raise
            raise AdminTimedOut(
                f"forking {topic}: no room for its record in the catalog while the "
                f"object store takes no uploads ({error})"
            ) from error
        # The partitions that rebuilt the fork's state serve it: opened
        # again, each would read back the checkpoint just written. Their
        # meta is the catalog's, whose streams a CreatePartitions extends.
        opened.meta = admin.catalog.state.topics[name]
        forked = registry.add_topic(opened)
        log.info("forked topic %s from %s at %s", name, topic, points)
        return registry.describe(forked)


def _fork_points(
    topic: str, partitions: list[Partition], at: OffsetVector | None
) -> list[int | None]:
    """Each partition's fork point (None: its high watermark at the fork)."""
    points: list[int | None] = [None] * len(partitions)
    if at is not None:
        if topic not in at.topics:
            # Another topic's vector (or an empty one): forking every
            # partition at its high watermark would ignore the point asked for.
            raise InvalidVector(f"the fork point of {topic} names none of its partitions: {at}")
        for tp, position in at.items():
            if tp.topic != topic:
                continue
            if not 0 <= tp.partition < len(partitions):
                raise OffsetOutOfRange(topic, tp.partition, position.offset, 0, 0)
            check_position(partitions[tp.partition], position)
            points[tp.partition] = position.offset
    for partition, point in zip(partitions, points, strict=True):
        start, end = partition.log_start_offset, partition.high_watermark
        if point is not None and not start <= point <= end:
            raise OffsetOutOfRange(topic, partition.index, point, start, end)
    return points


def _fork_partition(admin: ForkHost, partition: Partition, point: int | None) -> int:
    """The fork's data stream for the partition, sharing its data below ``point``."""
    with store_writes():
        attempt = 0
        while True:
            try:
                return admin.store.fork_stream(partition.stream_id, point, _UPLOAD_UNDER_LOCK_S)
            except StoreFailed as error:
                if not isinstance(error.cause, TimeoutError):
                    raise
                # The store did not stop: it failed to upload in time.
                raise AdminTimedOut(
                    f"forking {partition.topic}-{partition.index}: its records were not "
                    f"uploaded within {_UPLOAD_UNDER_LOCK_S:g} s"
                ) from error
            except ForkPointInsideRange as error:
                attempt += 1
                if point is None and attempt < _FORK_ATTEMPTS:
                    continue  # appends landed after the high watermark was read
                raise ForkPointUnavailable(
                    partition.topic,
                    partition.index,
                    error.offset,
                    error.range_start,
                    error.range_end,
                ) from error


def _inherit_compaction_horizon(
    store: StreamStore, parent: Partition, data_id: int, state_id: int
) -> None:
    """Gives the fork's partition the parent's compaction horizon when it
    shares records a cleaning pass removed from (below its fork point): its
    shared history lacks them as the parent's does, and a state as of a
    time they mattered to is no more exact in the fork. A fork point never
    splits a cleaned range, and every range starts at the log start, so
    each range is wholly shared or not at all. A pass the parent makes
    after the fork's streams were made removes nothing from what they share,
    and one committed before had its horizon durable before its rewrite
    (engine/compaction_horizon.py), so the parent's horizon, read now, is
    at least what the fork shares lacks.

    The horizon is durable in the fork's state stream before the catalog
    records the fork: a crash in between leaves streams no topic names,
    never a fork without its horizon (docs/design/0069). Written without
    waiting for room, as a checkpoint is (under the engine's lock, which
    the event loop takes): refused past the headroom, the fork is undone."""
    horizon = parent.compaction_horizon
    if horizon is None or horizon.first_removed_offset >= store.next_offset(data_id):
        return
    with store_writes():
        store.open_stream(state_id, 0)
        try:
            written = store.submit(state_id, 0, 0, inherited_checkpoint(horizon), UNPACED)
        except NoRoom as error:
            raise AdminTimedOut(
                f"forking {parent.topic}-{parent.index}: no room for its compaction "
                f"horizon while the object store takes no uploads ({error})"
            ) from error
        written.result(_MARKER_TIMEOUT_S)


def _end_what_it_inherits(fork: Topic) -> None:
    """Ends, in each of the fork's partitions (listed nowhere yet), what it
    inherits but cannot go on with, and checkpoints that: the transactions
    open at the fork point, and its producers' sequences.

    The markers and checkpoints never wait for room (under the engine's
    lock, which the event loop takes): refused past the headroom, or not
    durable in time, the fork is refused with AdminTimedOut, to be undone
    (docs/design/0099)."""
    try:
        for partition in fork.partitions:
            partition.recover()
            _abort_open_transactions(partition)
            _forget_sequences(partition)
    except NoRoom as error:
        raise AdminTimedOut(
            f"forking into {fork.name}: no room for its abort markers or checkpoint "
            f"while the object store takes no uploads ({error})"
        ) from error
    except TimeoutError as error:  # a future's wait, concurrent.futures.TimeoutError
        raise AdminTimedOut(
            f"forking into {fork.name}: its abort markers or checkpoint were not "
            f"durable within {_MARKER_TIMEOUT_S:g} s"
        ) from error


def _forget_sequences(partition: Partition) -> None:
    """Forgets the sequences the replay gave the fork's producers, and
    checkpoints that: to a producer the fork is a new partition, whose
    batches it numbers from 0, so a sequence it used in the parent must be
    neither a duplicate (its record would be dropped as already written) nor
    out of order in the fork. Epochs stay, so fencing still holds."""
    with partition.lock:
        partition.forget_sequences()
    # Full (it holds the table the forgotten sequences left): its wait for
    # durability before the trim is the fork's, bounded as the markers' is.
    written = partition.checkpoint(wait_s=_MARKER_TIMEOUT_S)
    if written is not None:
        written.result(_MARKER_TIMEOUT_S)


def _abort_open_transactions(partition: Partition) -> None:
    """Ends each transaction open at the fork point with an abort marker."""
    with partition.lock:
        open_ = [
            (producer_id, partition.producers.producers[producer_id].epoch)
            for producer_id in partition.txns.ongoing
            if producer_id in partition.producers.producers
        ]
    for producer_id, epoch in open_:
        partition.write_marker(producer_id, epoch, -1, commit=False).result(_MARKER_TIMEOUT_S)
