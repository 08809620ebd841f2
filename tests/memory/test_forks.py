"""Forks of topics (engine.fork): the fork reads the parent's stored batches
below the fork point byte for byte (offsets, timestamps, headers), its
transactions as the parent's readers see them (aborted ones filtered for
read_committed, open ones ended by an abort), takes its own records after
the fork point, and outlives the parent's deletion and a restart; a real
Kafka client consumes it over the wire like any topic."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition

import engine
import native
from engine.errors import (
    AdminTimedOut,
    OffsetOutOfRange,
    RecordListTooLarge,
    TopicExists,
    UnknownTopic,
)
from engine.memory import forks
from engine.memory.forks import ForkPointUnavailable
from engine.memory.stored_state import stored_state_at
from engine.memory.uploaded_lookup import lookup_uploaded
from engine.memory.vector import InvalidVector, OffsetVector, Position
from engine.partition import Partition
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition
from native.records import RecordSpec
from s3stream import NoRoom
from s3stream.append_options import Pacing
from s3stream.store.local import LocalStore
from tests.engine.conftest import FAST_STORE, QUIET_STORE, EngineFactory
from tests.engine.test_transactions import TxnClient, plain, values
from tests.server.in_process import InProcessServer

CID = (("cid", b"x"),)
"""The header an indexed fork's records carry."""


def stored(e: engine.Engine, topic: str, partition: int, end: int) -> list[bytes]:
    """The stored batches of the partition below ``end``, as fetched."""
    out: list[bytes] = []
    offset = e.offsets(topic, partition)[0]
    while offset < end:
        fetched = e.fetch(topic, partition, offset)
        out += [bytes(p) for p in fetched.records]
        offset = fetched.next_offset
    return out


def test_a_fork_reads_the_parents_batches_and_takes_only_its_own_records(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 2, {"retention.ms": "86400000"})
    for i in range(6):
        plain(e, "t", i % 2, b"p%d" % i, key=b"k%d" % i)
    ends = [e.offsets("t", p)[1] for p in range(2)]
    described = e.fork("t", name="eval")
    assert [p.partition for p in described.partitions] == [0, 1]
    assert e.topic_config("eval").retention_ms == 86400000  # the parent's overrides
    for p in range(2):
        assert e.offsets("eval", p) == (0, ends[p])
        assert stored(e, "eval", p, ends[p]) == stored(e, "t", p, ends[p])
    plain(e, "eval", 0, b"decision")
    plain(e, "t", 0, b"later")
    fork_values = [b"p0", b"p2", b"p4", b"decision", b"p1", b"p3", b"p5"]
    assert values(e, "eval", "read_uncommitted", 2) == fork_values
    assert values(e, "t", "read_committed", 1) == [b"p0", b"p2", b"p4", b"later"]


def test_transactions_below_the_fork_point_read_as_in_the_parent(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    aborted, committed, open_ = TxnClient(e, "a"), TxnClient(e, "c"), TxnClient(e, "o")
    plain(e, "t", 0, b"plain")
    aborted.begin(("t", 0))
    aborted.send("t", 0, b"aborted")
    aborted.abort()
    committed.begin(("t", 0))
    committed.send("t", 0, b"committed")
    committed.commit()
    open_.begin(("t", 0))
    open_.send("t", 0, b"open")
    e.fork("t", name="eval")
    fork = e.partition("eval", 0)
    # The transaction open at the fork point cannot end in the fork: it was aborted there.
    assert fork.txns.ongoing == {}
    assert fork.last_stable_offset == fork.high_watermark
    assert values(e, "eval", "read_committed") == [b"plain", b"committed"]
    assert values(e, "eval", "read_uncommitted") == [b"plain", b"aborted", b"committed", b"open"]
    # In the parent it goes on, and commits there only.
    open_.commit()
    assert values(e, "t", "read_committed") == [b"plain", b"committed", b"open"]
    assert values(e, "eval", "read_committed") == [b"plain", b"committed"]


def test_fork_points_from_a_vector(engine_factory: EngineFactory) -> None:
    e = engine_factory(store=QUIET_STORE)
    e.create_topic("t", 2)
    for i in range(3):
        plain(e, "t", 0, b"a%d" % i)
        plain(e, "t", 1, b"b%d" % i)
        assert e.flush(timeout=30)  # one stored range per round
    plain(e, "t", 1, b"b3")
    at = OffsetVector({TopicPartition("t", 0): Position(2)})  # partition 1: its end
    e.fork("t", at, name="eval")
    assert values(e, "eval", "read_committed", 1) == [b"a0", b"a1"]
    assert e.offsets("eval", 1) == (0, 4)
    with pytest.raises(OffsetOutOfRange):
        e.fork("t", OffsetVector({TopicPartition("t", 0): Position(9)}), name="past")
    with pytest.raises(OffsetOutOfRange):
        e.fork("t", OffsetVector({TopicPartition("t", 5): Position(0)}), name="nopart")
    # Another topic's vector, or an empty one, names no point of this topic.
    for elsewhere in (OffsetVector({TopicPartition("u", 0): Position(0)}), OffsetVector()):
        with pytest.raises(InvalidVector):
            e.fork("t", elsewhere, name="elsewhere")
        assert "elsewhere" not in e.list_topics()
    with pytest.raises(UnknownTopic):
        e.fork("missing", name="x")
    with pytest.raises(TopicExists):
        e.fork("t", name="eval")
    assert "past" not in e.list_topics() and "nopart" not in e.list_topics()


def test_a_fork_point_inside_a_stored_range_copies_and_inside_a_batch_is_refused(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(store=QUIET_STORE)
    e.create_topic("t", 1)
    for i in range(3):
        plain(e, "t", 0, b"a%d" % i)
    plain(e, "t", 0, b"b0", b"b1", b"b2")  # one batch, offsets 3 to 5
    assert e.flush(timeout=30)  # one stored range [0, 6)
    e.fork("t", OffsetVector({TopicPartition("t", 0): Position(2)}), name="eval")
    assert values(e, "eval", "read_committed") == [b"a0", b"a1"]
    plain(e, "eval", 0, b"decision")
    assert values(e, "eval", "read_committed") == [b"a0", b"a1", b"decision"]
    with pytest.raises(ForkPointUnavailable) as refused:
        e.fork("t", OffsetVector({TopicPartition("t", 0): Position(4)}), name="split")
    assert (refused.value.range_start, refused.value.range_end) == (3, 6)
    assert refused.value.code is KafkaCode.OFFSET_OUT_OF_RANGE
    assert "split" not in e.list_topics()
    assert sorted(e.store.streams()) == sorted(e.catalog.state.stream_ids() | {1})


def test_a_fork_outlives_its_parent_and_a_restart_and_verifies(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    for i in range(4):
        plain(e, "t", 0, b"p%d" % i)
    e.fork("t", name="first")
    plain(e, "first", 0, b"f")
    e.fork("first", name="second")
    plain(e, "second", 0, b"s")
    e.delete_topic("t")
    e.delete_topic("first")
    e.store.compact()
    assert e.flush(timeout=30)
    e.close()
    e = engine_factory()
    assert values(e, "second", "read_committed") == [b"p0", b"p1", b"p2", b"p3", b"f", b"s"]
    plain(e, "second", 0, b"after")
    assert e.flush(timeout=30)
    report = e.verify("second")
    assert report.ok, report


def test_a_kafka_client_consumes_a_fork_from_offset_zero(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    for i in range(5):
        plain(e, "t", 0, b"p%d" % i)
    e.fork("t", name="eval")
    plain(e, "eval", 0, b"decision")
    server = InProcessServer(e)
    try:
        consumer = Consumer(
            {
                "bootstrap.servers": server.bootstrap,
                "group.id": "fork-reader",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.assign([KafkaTopicPartition("eval", 0, 0)])
            got: list[tuple[int, bytes | None]] = []
            for _ in range(50):
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    got.append((message.offset(), message.value()))
                if len(got) == 6:
                    break
        finally:
            consumer.close()
    finally:
        server.stop()
    assert got == [(i, b"p%d" % i) for i in range(5)] + [(5, b"decision")]


def test_a_producer_of_the_parent_writes_to_the_fork_from_sequence_zero(
    engine_factory: EngineFactory,
) -> None:
    """An idempotent producer numbers each partition's batches from 0: the
    fork is a new partition to it, though the fork's replayed producer
    table knows its sequences in the parent. Before and after a restart."""
    e = engine_factory()
    e.create_topic("t", 1)
    with e.producer() as producer:
        for i in range(3):
            producer.send("t", b"p%d" % i, partition=0).result(10)
        e.fork("t", name="eval")
        producer.send("eval", b"decision", partition=0).result(10)
        producer.send("t", b"p3", partition=0).result(10)
    e.close()
    e = engine_factory()
    with e.producer() as producer:
        producer.send("t", b"p4", partition=0).result(10)
    e.fork("t", name="second")
    e.close()
    e = engine_factory()
    with e.producer() as producer:
        producer.send("second", b"s", partition=0).result(10)
    assert values(e, "eval", "read_committed") == [b"p0", b"p1", b"p2", b"decision"]
    assert values(e, "second", "read_committed") == [b"p0", b"p1", b"p2", b"p3", b"p4", b"s"]


def test_the_object_store_readers_see_a_forks_shared_records(tmp_path: Path) -> None:
    # tidelog lookup and tidelog state read the bucket alone: a fork's shared
    # ranges are in the blocks of the stream that wrote them, not the fork's.
    bucket = LocalStore(tmp_path / "bucket")
    config = engine.EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600.0)
    with engine.Engine.open(tmp_path / "node", bucket, config) as e:
        e.create_topic("t", 1, {"cleanup.policy": "compact", "tidelog.index.headers": "cid"})
        for i in range(3):
            e.produce("t", 0, native.encode_batch([RecordSpec(i, b"k%d" % i, b"p%d" % i, CID)]))
        e.fork("t", name="first")
        e.produce("first", 0, native.encode_batch([RecordSpec(3, b"k3", b"f", CID)]))
        e.fork("first", name="second")
        e.delete_topic("first")
        assert e.flush(timeout=30)
        found = lookup_uploaded(bucket, ["second"], "cid", b"x")
        assert [(str(r.ref), r.value) for r in found] == [
            (str(r.ref), r.value) for r in e.lookup("second", "cid", "x")
        ]
        assert [r.value for r in found] == [b"p0", b"p1", b"p2", b"f"]
        state = stored_state_at(bucket, "second", 10)
        assert {k: s.value for k, s in state.values.items()} == {
            b"k0": b"p0",
            b"k1": b"p1",
            b"k2": b"p2",
            b"k3": b"f",
        }


@pytest.mark.parametrize("refused", ["abort marker", "first checkpoint", "catalog record"])
def test_a_forks_own_state_refused_for_room_undoes_the_fork(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    """The fork's abort markers and first checkpoint are written under the
    engine's lock, which the server's event loop takes: they never wait for
    room, and refused past the headroom (the object store down; injected
    here, as the store's headroom check refuses) the fork is undone with a
    retriable error, never recorded without them."""
    e = engine_factory()
    e.create_topic("t", 1)
    open_ = TxnClient(e, "o")
    plain(e, "t", 0, b"plain")
    open_.begin(("t", 0))
    open_.send("t", 0, b"open")
    first_new = e.store.manifest.state.next_stream_id
    # One partition: its data stream is forked first, its state stream made next.
    target = {
        "abort marker": first_new,
        "first checkpoint": first_new + 1,
        "catalog record": e.catalog.stream_id,
    }[refused]
    submit = e.store.submit

    def refusing(stream_id: int, *args: Any, **kwargs: Any) -> Any:
        options = args[3] if len(args) > 3 else kwargs.get("options")
        if stream_id == target and options is not None and options.pacing is Pacing.NEVER:
            raise NoRoom(stream_id, 1 << 30, 1 << 29)
        return submit(stream_id, *args, **kwargs)

    monkeypatch.setattr(e.store, "submit", refusing)
    with pytest.raises(AdminTimedOut) as error:
        e.fork("t", name="eval")
    assert error.value.error_code.retriable
    assert "eval" not in e.list_topics()
    assert "eval" not in e.catalog.state.topics
    assert set(e.store.streams()) < set(range(first_new))  # the fork's streams deleted
    monkeypatch.undo()
    e.fork("t", name="eval")  # once there is room
    fork = e.partition("eval", 0)
    assert fork.txns.ongoing == {}
    assert values(e, "eval", "read_committed") == [b"plain"]
    e.close()
    e = engine_factory()  # and from what is durable
    assert e.partition("eval", 0).txns.ongoing == {}
    assert values(e, "eval", "read_committed") == [b"plain"]


MASKED = json.dumps([{"path": "/card", "action": "hash"}])


def test_a_fork_refused_as_too_large_leaves_no_masking_key_and_forks_again(
    engine_factory: EngineFactory,
) -> None:
    """A masked topic's fork gets a hashing key of its own, in the catalog
    write that records the fork: a record too large for the WAL (its
    configs: many long rules) is refused whole, so the name keeps no key
    for a later fork of it to find, and the same fork with configs that fit
    is made, with a key of its own."""
    e = engine_factory(store=replace(FAST_STORE, wal_segment_bytes=64 * 1024))
    e.create_topic("t", 1, {"tidelog.masking.rules": MASKED})
    plain(e, "t", 0, b'{"card": "4111"}')
    long_rules = [{"path": f"/f{i}{'x' * 300}", "action": "hash"} for i in range(256)]
    assert len(json.dumps(long_rules)) > e.store.max_append_bytes
    first_new = e.store.manifest.state.next_stream_id
    with pytest.raises(RecordListTooLarge):
        e.fork("t", name="eval", configs={"tidelog.masking.rules": json.dumps(long_rules)})
    assert "eval" not in e.catalog.state.topics
    assert "eval" not in e.catalog.state.masking_keys
    assert set(e.store.streams()) < set(range(first_new))  # the fork's streams deleted
    e.fork("t", name="eval")
    key = e.catalog.state.masking_keys["eval"]
    assert len(key) == 32 and key != e.catalog.state.masking_keys["t"]
    e.close()
    e = engine_factory(store=replace(FAST_STORE, wal_segment_bytes=64 * 1024))
    assert e.catalog.state.masking_keys["eval"] == key  # and from what is durable


def test_a_fork_never_takes_a_key_no_topic_holds(engine_factory: EngineFactory) -> None:
    """A key under a name no topic has (its creation's record lost after
    the key, as a crash between the two records of one write can) is no
    fork's: the fork of that name gets a new one, so its hashes are not
    those of values hashed under the old."""
    e = engine_factory()
    e.create_topic("t", 1, {"tidelog.masking.rules": MASKED})
    orphan = b"o" * 32
    e.catalog.append(["masking_key", "eval", orphan])
    e.fork("t", name="eval")
    key = e.catalog.state.masking_keys["eval"]
    assert len(key) == 32 and key not in (orphan, e.catalog.state.masking_keys["t"])


def test_a_fork_rebuilds_each_partitions_state_once(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fork partition replays the shared batches' headers once, and
    the partition that did serves the fork: none is opened again to read
    back the checkpoint it just wrote. The fork then grows and restarts as
    any topic (its meta is the catalog's)."""
    e = engine_factory()
    e.create_topic("t", 3)
    for i in range(30):
        plain(e, "t", i % 3, b"p%d" % i)
    recovered: list[tuple[Partition, int]] = []
    recover = Partition.recover

    def counted(partition: Partition) -> int:
        replayed = recover(partition)
        recovered.append((partition, replayed))
        return replayed

    monkeypatch.setattr(Partition, "recover", counted)
    e.fork("t", name="eval")
    assert [replayed for _, replayed in recovered] == [10, 10, 10]
    assert [id(partition) for partition, _ in recovered] == [
        id(e.partition("eval", p)) for p in range(3)
    ]
    monkeypatch.undo()
    plain(e, "eval", 0, b"own")
    e.create_partitions("eval", 4)
    plain(e, "eval", 3, b"new")
    assert e.offsets("eval", 0) == (0, 11) and e.offsets("eval", 3) == (0, 1)
    e.close()
    e = engine_factory()
    assert [e.offsets("eval", p) for p in range(4)] == [(0, 11), (0, 10), (0, 10), (0, 1)]


def test_a_forks_first_checkpoint_not_durable_in_time_undoes_the_fork(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork's first checkpoint holds its producer table (its producers'
    sequences forgotten): one that is not durable within the fork's wait
    (the WAL's sync stalled; injected here as an append whose future never
    resolves) undoes the fork with a retriable error when that wait ends,
    rather than holding the engine's lock until the sync returns."""
    e = engine_factory()
    e.create_topic("t", 1)
    plain(e, "t", 0, b"plain")
    state = e.store.manifest.state.next_stream_id + 1  # the fork's state stream
    submit = e.store.submit
    stalled: list[Future[int]] = []

    def stalling(stream_id: int, *args: Any, **kwargs: Any) -> Any:
        if stream_id != state:
            return submit(stream_id, *args, **kwargs)
        submit(stream_id, *args, **kwargs)  # appended; its sync never answers
        never: Future[int] = Future()
        never.set_running_or_notify_cancel()
        stalled.append(never)
        return never

    monkeypatch.setattr(e.store, "submit", stalling)
    monkeypatch.setattr(forks, "_MARKER_TIMEOUT_S", 0.5)
    outcome: list[BaseException | None] = []

    def fork() -> None:
        try:
            e.fork("t", name="eval")
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    forking = threading.Thread(target=fork, daemon=True)
    forking.start()
    forking.join(20)
    try:
        assert outcome, "the fork still waits for its first checkpoint"
        assert isinstance(outcome[0], AdminTimedOut), outcome
        assert outcome[0].error_code.retriable
        assert "eval" not in e.list_topics()
    finally:
        for never in stalled:  # let a fork still waiting end
            if not never.done():
                never.set_exception(TimeoutError("stalled"))
        forking.join(20)
    monkeypatch.undo()
    e.fork("t", name="eval")
    assert values(e, "eval", "read_uncommitted") == [b"plain"]
