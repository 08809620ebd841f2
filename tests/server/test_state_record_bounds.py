"""A record of the server's own state that a client grows past what one WAL
record holds is refused, with the code Kafka's coordinators answer for an
append their log refused as too large, and the server keeps serving: the
store is not failed, the coordinator's state is what its log holds, and a
restart loads it. A produce past the WAL's bound (a topic whose
max.message.bytes is above it) is RECORD_LIST_TOO_LARGE, as Kafka answers a
batch larger than a segment."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KafkaResourceType
from kafka.errors import KafkaError, RecordListTooLargeError
from kio.index import load_request_schema
from kio.schema.add_offsets_to_txn.v3.request import AddOffsetsToTxnRequest
from kio.schema.add_partitions_to_txn.v3.request import (
    AddPartitionsToTxnRequest,
    AddPartitionsToTxnTopic,
)
from kio.schema.consumer_group_heartbeat.v0.request import ConsumerGroupHeartbeatRequest
from kio.schema.end_txn.v3.request import EndTxnRequest
from kio.schema.init_producer_id.v2.request import InitProducerIdRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.offset_commit.v7.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.sync_group.v3.request import SyncGroupRequest, SyncGroupRequestAssignment
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.types import GroupId, ProducerId, TopicName, TransactionalId
from kio.static.primitive import i16, i32, i64

import engine
import engine.catalog
import native
from engine.engine import Engine
from engine.groups.records import txn_key
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition
from native.records import RecordSpec
from s3stream import AppendTooLarge, NoRoom
from tests.engine.conftest import FAST_STORE
from tests.server.in_process import ServedNode
from tests.server.wire import Wire, build

TIMEOUT = 30.0
SEGMENT = 64 * 1024
"""The WAL's segment: a state record past about this much is refused."""
GROUPS = engine.GroupConfig(
    group_initial_rebalance_delay_ms=0,
    group_min_session_timeout_ms=10,
    offset_metadata_max_bytes=16 * 1024,
)
LONG = "t" * 249
"""A topic name as long as Kafka allows: each partition of a transaction
carries it in the transaction's record."""


class Node(ServedNode):
    """An engine with small WAL segments, served on loopback; reopened on
    the same storage by ``reopen``."""

    def __init__(self, root: Path) -> None:
        config = engine.EngineConfig(
            store=replace(FAST_STORE, wal_segment_bytes=SEGMENT),
            cleaner_interval_s=3600,
            groups=GROUPS,
        )
        super().__init__(root, config)

    def request(self, request: Any) -> Any:
        with Wire(self.server.bootstrap, timeout=TIMEOUT) as wire:
            return wire.request(request)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    opened = Node(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def _serves(node: Node) -> None:
    """The store takes appends and the groups answer: the server serves."""
    e: Engine = node.engine
    assert not e.store.fenced_or_failed()
    if "served" not in e.list_topics():
        e.create_topic("served", 1)
    producer = KafkaProducer(bootstrap_servers=node.server.bootstrap, acks="all", retries=0)
    try:
        producer.send("served", b"still serving").get(TIMEOUT)
    finally:
        producer.close(TIMEOUT)
    assert _joined(node, "other", b"small").error_code == KafkaCode.NONE


def _join(node: Node, group: str, member_id: str, metadata: bytes) -> Any:
    return node.request(
        JoinGroupRequest(
            group_id=GroupId(group),
            session_timeout=timedelta(seconds=30),
            rebalance_timeout=timedelta(seconds=30),
            member_id=member_id,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=metadata),),
        )
    )


def _joined(node: Node, group: str, metadata: bytes) -> Any:
    """A join with the member id the first join is given (JoinGroup v4+)."""
    first = _join(node, group, "", metadata)
    assert first.error_code == KafkaCode.MEMBER_ID_REQUIRED
    return _join(node, group, first.member_id, metadata)


def _sync(node: Node, group: str, joined: Any, assignment: bytes) -> Any:
    return node.request(
        SyncGroupRequest(
            group_id=GroupId(group),
            generation_id=i32(joined.generation_id),
            member_id=joined.member_id,
            group_instance_id=None,
            assignments=(
                SyncGroupRequestAssignment(member_id=joined.member_id, assignment=assignment),
            ),
        )
    )


def test_a_group_whose_subscription_passes_a_wal_record_is_unknown_server_error(
    node: Node,
) -> None:
    """A classic join writes nothing; the SyncGroup that writes the group,
    its members' subscriptions with it, is answered UNKNOWN_SERVER_ERROR,
    as Kafka's GroupMetadataManager answers a group record its log refused
    as too large; the group is left as its log holds it."""
    joined = _joined(node, "big", b"m" * SEGMENT)
    assert joined.error_code == KafkaCode.NONE
    assert _sync(node, "big", joined, b"a").error_code == KafkaCode.UNKNOWN_SERVER_ERROR
    _serves(node)
    # The group rebalances (as Kafka's after a failed SyncGroup write): its
    # member joins again, with a small subscription, and the group takes it.
    again = _join(node, "big", joined.member_id, b"small")
    assert again.error_code == KafkaCode.NONE
    assert _sync(node, "big", again, b"a").error_code == KafkaCode.NONE
    node.reopen()
    (described,) = node.engine.groups.describe_groups(["big"])
    assert [m.metadata for m in described.members] == [b"small"]
    _serves(node)


def test_a_sync_whose_assignment_passes_a_wal_record_is_unknown_server_error(
    node: Node,
) -> None:
    joined = _joined(node, "big", b"small")
    assert joined.error_code == KafkaCode.NONE
    assert _sync(node, "big", joined, b"a" * SEGMENT).error_code == (KafkaCode.UNKNOWN_SERVER_ERROR)
    _serves(node)
    again = _join(node, "big", joined.member_id, b"small")
    assert again.error_code == KafkaCode.NONE
    assert _sync(node, "big", again, b"assigned").error_code == KafkaCode.NONE
    node.reopen()
    (described,) = node.engine.groups.describe_groups(["big"])
    assert [m.assignment for m in described.members] == [b"assigned"]
    _serves(node)


def _commit(node: Node, partitions: int, metadata: str) -> Any:
    return node.request(
        OffsetCommitRequest(
            group_id=GroupId("committer"),
            generation_id_or_member_epoch=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=(
                OffsetCommitRequestTopic(
                    name=TopicName("c"),
                    partitions=tuple(
                        OffsetCommitRequestPartition(
                            partition_index=i32(p),
                            committed_offset=i64(7),
                            committed_leader_epoch=i32(-1),
                            committed_metadata=metadata,
                        )
                        for p in range(partitions)
                    ),
                ),
            ),
        )
    )


def test_a_commit_whose_record_passes_a_wal_record_is_unknown_server_error(
    node: Node,
) -> None:
    """Each partition's metadata is within offset.metadata.max.bytes; the
    commit's record of all of them is not: Kafka 4's group coordinator
    answers UNKNOWN_SERVER_ERROR for every partition (a write its log
    refused as too large, as for any other request; the Scala coordinator
    before it answered INVALID_COMMIT_OFFSET_SIZE)."""
    node.engine.create_topic("c", 8)
    answered = _commit(node, 8, "m" * (GROUPS.offset_metadata_max_bytes))
    codes = {p.error_code for t in answered.topics for p in t.partitions}
    assert codes == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert node.engine.groups.fetch_offsets("committer", None) == {}
    _serves(node)
    answered = _commit(node, 8, "small")
    assert {p.error_code for t in answered.topics for p in t.partitions} == {KafkaCode.NONE}
    node.reopen()
    committed = node.engine.groups.fetch_offsets("committer", None)
    assert sorted(
        (tp.partition, om.offset, om.metadata, code) for tp, (om, code) in committed.items() if om
    ) == [(p, 7, "small", KafkaCode.NONE) for p in range(8)]
    _serves(node)


def _init_txn(node: Node, transactional_id: str) -> Any:
    return node.request(
        InitProducerIdRequest(
            transactional_id=TransactionalId(transactional_id),
            transaction_timeout=timedelta(seconds=60),
        )
    )


def _end_txn(node: Node, transactional_id: str, pid: int, epoch: int, *, committed: bool) -> int:
    ended = node.request(
        EndTxnRequest(
            transactional_id=TransactionalId(transactional_id),
            producer_id=ProducerId(pid),
            producer_epoch=i16(epoch),
            committed=committed,
        )
    )
    return int(ended.error_code)


def _begin_offsets_txn(node: Node) -> tuple[int, int]:
    """A transaction of "committer" that commits offsets of "txn-group":
    its producer id and epoch."""
    init = _init_txn(node, "committer")
    pid, epoch = init.producer_id, init.producer_epoch
    added = node.request(
        AddOffsetsToTxnRequest(
            transactional_id=TransactionalId("committer"),
            producer_id=ProducerId(pid),
            producer_epoch=i16(epoch),
            group_id=GroupId("txn-group"),
        )
    )
    assert added.error_code == KafkaCode.NONE
    return pid, epoch


def _txn_group_offsets(node: Node) -> list[tuple[int, int, str]]:
    found = node.engine.groups.fetch_offsets("txn-group", None)
    return sorted((tp.partition, om.offset, om.metadata) for tp, (om, _) in found.items() if om)


def test_a_transaction_grown_past_a_wal_record_is_refused_and_can_end(node: Node) -> None:
    """Each AddPartitionsToTxn adds to the transaction's partition set, all
    of it in one record: the add that takes it past one WAL record is
    UNKNOWN_SERVER_ERROR (Kafka's TransactionStateManager), the transaction
    keeps the partitions added before it, ends, and the next one begins."""
    partitions = 2 * SEGMENT // (len(LONG) + 8)
    node.engine.create_topic(LONG, partitions)
    init = _init_txn(node, "grower")
    assert init.error_code == KafkaCode.NONE
    pid, epoch = init.producer_id, init.producer_epoch

    def add(first: int, last: int) -> Any:
        return node.request(
            AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=TransactionalId("grower"),
                v3_and_below_producer_id=ProducerId(pid),
                v3_and_below_producer_epoch=i16(epoch),
                v3_and_below_topics=(
                    AddPartitionsToTxnTopic(
                        name=TopicName(LONG), partitions=tuple(i32(p) for p in range(first, last))
                    ),
                ),
            )
        )

    def codes(answer: Any) -> set[int]:
        return {
            p.partition_error_code for t in answer.results_by_topic_v3_and_below
            for p in t.results_by_partition
        }  # fmt: skip

    half = partitions // 4
    assert codes(add(0, half)) == {KafkaCode.NONE}
    assert codes(add(half, partitions)) == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert len(node.engine.transactions.describe("grower").partitions) == half
    _serves(node)
    assert _end_txn(node, "grower", pid, epoch, committed=False) == KafkaCode.NONE
    node.reopen()
    assert codes(add(0, half)) == {KafkaCode.NONE}
    _serves(node)


def test_a_produce_past_a_wal_record_is_record_list_too_large(node: Node) -> None:
    """A topic's max.message.bytes may be set above what one WAL record
    holds: a batch between the two is refused as Kafka refuses one larger
    than a segment (RecordBatchTooLargeException), and the store serves on."""
    node.engine.create_topic("wide", 1, configs={"max.message.bytes": str(4 * SEGMENT)})
    producer = KafkaProducer(
        bootstrap_servers=node.server.bootstrap,
        acks="all",
        retries=0,
        max_request_size=8 * SEGMENT,
        compression_type=None,
    )
    try:
        with pytest.raises(KafkaError) as refused:
            producer.send("wide", b"w" * 2 * SEGMENT).get(TIMEOUT)
        assert getattr(refused.value, "errno", None) == KafkaCode.RECORD_LIST_TOO_LARGE
        assert producer.send("wide", b"fits").get(TIMEOUT).offset == 0
    finally:
        producer.close(TIMEOUT)
    _serves(node)


def _txn_commit(node: Node, pid: int, epoch: int, partitions: range, metadata: str) -> set[int]:
    answer = node.request(
        TxnOffsetCommitRequest(
            transactional_id=TransactionalId("committer"),
            group_id=GroupId("txn-group"),
            producer_id=ProducerId(pid),
            producer_epoch=i16(epoch),
            generation_id=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=(
                TxnOffsetCommitRequestTopic(
                    name=TopicName("c"),
                    partitions=tuple(
                        TxnOffsetCommitRequestPartition(
                            partition_index=i32(p),
                            committed_offset=i64(p + 1),
                            committed_leader_epoch=i32(-1),
                            committed_metadata=metadata,
                        )
                        for p in partitions
                    ),
                ),
            ),
        )
    )
    return {p.error_code for t in answer.topics for p in t.partitions}


def test_a_transaction_s_offsets_are_bounded_by_what_its_completion_writes(
    node: Node,
) -> None:
    """Each TxnOffsetCommit's record fits; the transaction's completion
    writes all its offsets in one record. A TxnOffsetCommit that would take
    that record past one WAL record is refused (UNKNOWN_SERVER_ERROR, as
    Kafka 4 answers a commit whose record is too large), so the
    transaction always completes and its partitions' offsets are committed."""
    node.engine.create_topic("c", 8)
    pid, epoch = _begin_offsets_txn(node)
    metadata = "m" * (SEGMENT // 5)
    assert _txn_commit(node, pid, epoch, range(0, 2), metadata) == {KafkaCode.NONE}
    assert _txn_commit(node, pid, epoch, range(2, 4), metadata) == {KafkaCode.NONE}
    assert _txn_commit(node, pid, epoch, range(4, 6), metadata) == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert _txn_commit(node, pid, epoch, range(4, 6), "small") == {KafkaCode.NONE}
    assert _end_txn(node, "committer", pid, epoch, committed=True) == KafkaCode.NONE
    expected = [(p, p + 1, metadata) for p in range(4)] + [(4, 5, "small"), (5, 6, "small")]

    assert _txn_group_offsets(node) == expected
    _serves(node)
    node.reopen()
    assert _txn_group_offsets(node) == expected


def test_a_transaction_s_offsets_stay_bounded_across_a_restart(node: Node) -> None:
    """The offsets a transaction committed before a restart are pending
    after it, and its completion will write them: they count towards the
    bound as they did before, so a TxnOffsetCommit after the restart that
    would take the completion past one WAL record is refused and the
    transaction still completes."""
    node.engine.create_topic("c", 8)
    pid, epoch = _begin_offsets_txn(node)
    metadata = "m" * (SEGMENT // 5)
    assert _txn_commit(node, pid, epoch, range(0, 2), metadata) == {KafkaCode.NONE}
    assert _txn_commit(node, pid, epoch, range(2, 4), metadata) == {KafkaCode.NONE}
    node.reopen()
    assert _txn_commit(node, pid, epoch, range(4, 6), metadata) == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert _end_txn(node, "committer", pid, epoch, committed=True) == KafkaCode.NONE
    expected = [(p, p + 1, metadata) for p in range(4)]

    assert _txn_group_offsets(node) == expected
    _serves(node)


def _refuse_commits_of(
    monkeypatch: pytest.MonkeyPatch, node: Node, pid: int, partition: int
) -> list[BaseException]:
    """The groups state log refuses every TxnOffsetCommit of ``pid`` to
    ``partition`` with what each entry of the returned list says, once,
    in turn (nothing accepted); other writes go through."""
    state_log = node.engine.groups._run.state_log
    update = state_log.update
    refusals: list[BaseException] = []
    held = txn_key(pid, "txn-group", TopicPartition("c", partition))

    def refusing(puts: Any = None, deletes: Any = None) -> Future[int]:
        if refusals and puts and held in puts:
            raise refusals.pop(0)
        return update(puts=puts, deletes=deletes)

    monkeypatch.setattr(state_log, "update", refusing)
    return refusals


@pytest.mark.parametrize("reopened", [False, True], ids=["running", "reopened"])
def test_a_txn_offset_commit_the_store_refused_is_not_counted_in_the_completion(
    monkeypatch: pytest.MonkeyPatch, node: Node, reopened: bool
) -> None:
    """A TxnOffsetCommit refused for room (COORDINATOR_NOT_AVAILABLE) or
    as too large (UNKNOWN_SERVER_ERROR) wrote nothing: its offsets are not
    among what the completion writes, so a commit that fits with the ones
    written is taken, before and after a restart (which counts what the
    state log holds), and the transaction commits exactly those."""
    node.engine.create_topic("c", 8)
    pid, epoch = _begin_offsets_txn(node)
    metadata = "m" * (SEGMENT // 5)
    assert _txn_commit(node, pid, epoch, range(0, 2), metadata) == {KafkaCode.NONE}
    refusals = _refuse_commits_of(monkeypatch, node, pid, 2)
    refusals += [
        NoRoom(node.engine.groups._run.state_log.stream_id, 1 << 30, 1 << 20),
        AppendTooLarge(node.engine.groups._run.state_log.stream_id, 1 << 20, 1 << 16),
    ]
    assert _txn_commit(node, pid, epoch, range(2, 4), metadata) == {
        KafkaCode.COORDINATOR_NOT_AVAILABLE
    }
    assert _txn_commit(node, pid, epoch, range(2, 4), metadata) == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert not refusals
    if reopened:
        monkeypatch.undo()
        node.reopen()
    assert _txn_commit(node, pid, epoch, range(4, 6), metadata) == {KafkaCode.NONE}
    assert _txn_commit(node, pid, epoch, range(6, 8), metadata) == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert _end_txn(node, "committer", pid, epoch, committed=True) == KafkaCode.NONE
    expected = [(p, p + 1, metadata) for p in (0, 1, 4, 5)]

    assert _txn_group_offsets(node) == expected
    _serves(node)
    node.reopen()
    assert _txn_group_offsets(node) == expected


def test_a_txn_offset_commit_whose_write_failed_after_the_store_took_it_stays_counted(
    monkeypatch: pytest.MonkeyPatch, node: Node
) -> None:
    """A TxnOffsetCommit the WAL failed once the store had taken it
    (NOT_COORDINATOR) has an unknown outcome: a restart may read it and
    make it pending, so it stays in the completion's count and a commit
    that fits only without it is refused."""
    node.engine.create_topic("c", 8)
    pid, epoch = _begin_offsets_txn(node)
    metadata = "m" * (SEGMENT // 5)
    assert _txn_commit(node, pid, epoch, range(0, 2), metadata) == {KafkaCode.NONE}
    state_log = node.engine.groups._run.state_log
    update = state_log.update
    held = txn_key(pid, "txn-group", TopicPartition("c", 2))

    def failing(puts: Any = None, deletes: Any = None) -> Future[int]:
        written = update(puts=puts, deletes=deletes)
        if not (puts and held in puts):
            return written
        written.result(TIMEOUT)  # taken and durable; its answer says it failed
        lost: Future[int] = Future()
        lost.set_exception(OSError(5, "Input/output error"))
        return lost

    monkeypatch.setattr(state_log, "update", failing)
    assert _txn_commit(node, pid, epoch, range(2, 4), metadata) == {KafkaCode.NOT_COORDINATOR}
    assert _txn_commit(node, pid, epoch, range(4, 6), metadata) == {KafkaCode.UNKNOWN_SERVER_ERROR}


def _produce_one(wire: Wire, topic: str, key: bytes | None, pid: int, sequence: int) -> Any:
    """A batch of one record of idempotent producer ``pid`` at ``sequence``
    to partition 0 of ``topic``: the partition's answer."""
    records = native.encode_batch(
        [RecordSpec(1_700_000_000_000, key, b"v", ())],
        producer_id=pid,
        producer_epoch=0,
        base_sequence=sequence,
    )
    data = [{"name": topic, "partition_data": [{"index": 0, "records": bytes(records)}]}]
    produce = load_request_schema(ApiKey.PRODUCE, 9)
    request = build(produce, acks=-1, timeout=timedelta(seconds=10), topic_data=data)
    (answer,) = wire.request(request).responses[0].partition_responses
    return answer


def test_a_partition_checkpoint_past_a_wal_record_is_written_in_parts(
    node: Node,
) -> None:
    """A partition's checkpoint holds every producer that wrote to it: a
    client that makes producers without end grows it past one record. It
    is then written in parts (docs/design/0112), beside the other
    partitions' checkpoints."""
    e: Engine = node.engine
    e.create_topic("crowded", 1)
    e.create_topic("calm", 1)

    def send(wire: Wire, topic: str, pid: int) -> tuple[int, int]:
        answer = _produce_one(wire, topic, None, pid, 0)
        return answer.error_code, answer.base_offset

    pids: list[int] = []
    with Wire(node.server.bootstrap, timeout=TIMEOUT) as wire:
        while len(pids) * 40 < SEGMENT:
            init = wire.request(
                InitProducerIdRequest(transactional_id=None, transaction_timeout=timedelta(0))
            )
            pids.append(init.producer_id)
            assert send(wire, "crowded", init.producer_id) == (KafkaCode.NONE, len(pids) - 1)
        assert send(wire, "calm", pids[0]) == (KafkaCode.NONE, 0)
    e.flush()
    assert not e.store.fenced_or_failed()
    crowded, calm = e.partition("crowded", 0), e.partition("calm", 0)
    assert crowded.durable_checkpoint_end == crowded.high_watermark == len(pids)
    assert calm.durable_checkpoint_end == calm.high_watermark == 1
    _serves(node)
    node.reopen()
    # The crowded partition's producers came back from the checkpoint: a
    # retry of one's batch is answered with its offset, not appended again.
    with Wire(node.server.bootstrap, timeout=TIMEOUT) as wire:
        assert send(wire, "crowded", pids[5]) == (KafkaCode.NONE, 5)
    _serves(node)


def test_a_compacted_partition_whose_checkpoint_passes_a_wal_record_is_cleaned(
    node: Node,
) -> None:
    """Cleaning a compacted partition checkpoints its widened compaction
    horizon first: one whose producers outgrew one record checkpoints it
    in parts and is cleaned, as the partitions after it in the pass are."""
    e: Engine = node.engine
    e.create_topic("crowded", 1, configs={"cleanup.policy": "compact"})
    e.create_topic("calm", 1, configs={"cleanup.policy": "compact"})

    def send(wire: Wire, topic: str, pid: int, sequence: int) -> int:
        return int(_produce_one(wire, topic, b"k", pid, sequence).error_code)

    def idempotent(wire: Wire) -> int:
        init = wire.request(
            InitProducerIdRequest(transactional_id=None, transaction_timeout=timedelta(0))
        )
        return int(init.producer_id)

    with Wire(node.server.bootstrap, timeout=TIMEOUT) as wire:
        first = idempotent(wire)
        for topic in ("crowded", "calm"):
            # Two records of one key: the first is the cleaner's to remove.
            assert [send(wire, topic, first, s) for s in (0, 1)] == [KafkaCode.NONE] * 2
        e.flush()
        crowded, calm = e.partition("crowded", 0), e.partition("calm", 0)
        assert crowded.durable_checkpoint_end == calm.durable_checkpoint_end == 2
        for _ in range(SEGMENT // 40):
            assert send(wire, "crowded", idempotent(wire), 0) == KafkaCode.NONE
    e.flush()
    assert crowded.durable_checkpoint_end == crowded.high_watermark
    assert e.clean() == 2
    assert calm.cleaned_offset == 2
    assert crowded.cleaned_offset == crowded.high_watermark
    assert not e.store.fenced_or_failed()
    _serves(node)


def _catalog_opening(e: Engine) -> list[Any]:
    """The catalog stream's first record, from where it was trimmed to."""
    first = next(engine.catalog.read_payloads(e.store, e.catalog.stream_id))
    opening: list[Any] = msgpack.unpackb(first, raw=False)
    return opening


def test_a_catalog_grown_past_a_wal_record_is_snapshotted_in_parts_and_loads(
    node: Node,
) -> None:
    """A CreateAcls whose record passes one WAL record is refused, nothing
    changed. ACLs created one request at a time, and topics, grow the
    catalog past one WAL record: its snapshot is written in parts and the
    catalog trimmed to it (docs/engine-format.md, "Snapshots in parts"),
    every ACL and topic is kept, and a restart loads them all."""
    principal = "User:" + "p" * (SEGMENT // 64)
    count = engine.catalog.SNAPSHOT_EVERY + 8
    assert count * len(principal) > SEGMENT
    topics = [f"{i:03d}" + "t" * 246 for i in range(8)]
    client = KafkaAdminClient(bootstrap_servers=node.server.bootstrap)

    def acl(i: int) -> ACL:
        return ACL(
            principal=principal, host="*", operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                KafkaResourceType.TOPIC, f"topic-{i}", ACLResourcePatternType.LITERAL
            ),
        )  # fmt: skip

    def found() -> list[str]:
        everything = ACLFilter(
            principal=None, host=None, operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(
                KafkaResourceType.ANY, None, ACLResourcePatternType.ANY
            ),
        )  # fmt: skip
        acls, _ = client.describe_acls(everything)
        return sorted(a.resource_pattern.resource_name for a in acls)

    try:
        # One request whose record passes one WAL record: refused whole, as
        # Kafka's controller refuses records its log cannot take in a batch
        # (RecordBatchTooLargeException); the catalog writes on.
        refused = client.create_acls([acl(i) for i in range(count)])
        assert refused["failed"] == [RecordListTooLargeError] * count
        assert not refused["succeeded"]
        assert found() == []
        for i in range(count):
            created = client.create_acls([acl(i)])
            assert created["succeeded"] == [acl(i)] and not created["failed"]
        for name in topics:
            client.create_topics([NewTopic(name, 2, 1)], timeout_ms=int(TIMEOUT * 1000))
        assert found() == sorted(f"topic-{i}" for i in range(count))
        assert node.engine.store.start_offset(node.engine.catalog.stream_id) > 0
        opening = _catalog_opening(node.engine)
        assert opening[:2] == ["catalog", engine.catalog.PARTS_FORMAT_VERSION]
        _serves(node)
    finally:
        client.close()
    node.reopen()
    assert _catalog_opening(node.engine) == opening
    client = KafkaAdminClient(bootstrap_servers=node.server.bootstrap)
    try:
        assert found() == sorted(f"topic-{i}" for i in range(count))
        assert set(topics) <= set(client.list_topics())
    finally:
        client.close()
    _serves(node)


def test_a_consumer_group_member_whose_subscription_passes_a_wal_record_is_refused(
    node: Node,
) -> None:
    """KIP-848: a heartbeat's subscription is written with its member; one
    past a WAL record is answered UNKNOWN_SERVER_ERROR (as Kafka's group
    coordinator answers an append refused as too large), the group is
    left as its log holds it, and the member joins with a smaller one."""

    def heartbeat(member_id: str, topics: list[str]) -> Any:
        return node.request(
            ConsumerGroupHeartbeatRequest(
                group_id=GroupId("kip848"),
                member_id=member_id,
                member_epoch=i32(0),
                instance_id=None,
                rack_id=None,
                rebalance_timeout=timedelta(seconds=30),
                subscribed_topic_names=tuple(TopicName(t) for t in topics),
                server_assignor=None,
                topic_partitions=(),
            )
        )

    many = [f"{i:05d}" + "s" * 244 for i in range(SEGMENT // 240)]
    answered = heartbeat("member-one-000000000001", many)
    assert answered.error_code == KafkaCode.UNKNOWN_SERVER_ERROR
    assert node.engine.groups.describe_groups(["kip848"])[0].members == []
    _serves(node)
    answered = heartbeat("member-one-000000000001", ["served"])
    assert answered.error_code == KafkaCode.NONE
    node.reopen()
    assert len(node.engine.groups.consumer_group_describe(["kip848"])[0].members) == 1
    _serves(node)


def test_a_refused_commit_of_a_partition_leaves_its_durable_offset_counted(
    monkeypatch: pytest.MonkeyPatch, node: Node
) -> None:
    """A TxnOffsetCommit refused for room after one of the same partitions
    was written: the written offsets are still pending, and the
    completion still writes them, so they stay counted (the refusal
    uncounts only its own) and a commit that fits only without them is
    refused."""
    node.engine.create_topic("c", 8)
    pid, epoch = _begin_offsets_txn(node)
    metadata = "m" * (SEGMENT // 5)
    assert _txn_commit(node, pid, epoch, range(0, 2), metadata) == {KafkaCode.NONE}
    refusals = _refuse_commits_of(monkeypatch, node, pid, 0)
    refusals.append(NoRoom(node.engine.groups._run.state_log.stream_id, 1 << 30, 1 << 20))
    assert _txn_commit(node, pid, epoch, range(0, 2), "m") == {KafkaCode.COORDINATOR_NOT_AVAILABLE}
    assert not refusals
    assert _txn_commit(node, pid, epoch, range(2, 4), metadata) == {KafkaCode.NONE}
    assert _txn_commit(node, pid, epoch, range(4, 6), metadata) == {KafkaCode.UNKNOWN_SERVER_ERROR}
    assert _end_txn(node, "committer", pid, epoch, committed=True) == KafkaCode.NONE
    expected = [(p, p + 1, metadata) for p in range(4)]

    assert _txn_group_offsets(node) == expected
    _serves(node)
