"""An object store that refuses the writes an admin change makes (the
manifest commit creating or deleting its streams; as denied access does):
the embedded API raises StoreWriteFailed, caused by the store's error and
naming what to check; over the wire the request is answered
KAFKA_STORAGE_ERROR on a connection that stays open; the change is in force
neither before nor after a restart, and the same request succeeds once the
store takes writes again. A deletion, in force once the catalog records it,
succeeds."""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

import engine
from engine.engine import Engine
from engine.errors import AdminTimedOut, Fenced, StoreWriteFailed
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers import common
from engine.store_errors import CHECK_THE_STORE
from engine.types import NewTopic as EngineNewTopic
from s3stream.manifest import load_state
from s3stream.store import LocalStore
from tests.engine.helpers_records import batch, read_partition
from tests.s3stream.faults import FaultyStore, InjectedFault
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_bad_input import batch as bad_input_batch
from tests.server.test_bad_input import produce
from tests.server.wire import Wire, build

Change = Callable[[Engine], object]
TIMEOUT = 30.0

_SMALL = engine.EngineConfig.small()
QUIET = replace(_SMALL, store=replace(_SMALL.store, upload_bytes=1 << 30, upload_interval_s=3600.0))
"""Nothing is uploaded but by a flush: an upload whose manifest commit the
store refuses for good stops the whole store (StorageError), which is not
what these tests are about."""


def shape(e: Engine) -> dict[str, int]:
    """What a client can see of the topics: their names and partition counts."""
    return {name: e.partition_count(name) for name in e.list_topics()}


CHANGES: dict[str, Change] = {
    "create_topic": lambda e: e.create_topic("created", 2),
    "create_partitions": lambda e: e.create_partitions("orders", 3),
    "fork": lambda e: e.fork("orders", name="forked"),
}


class Bucket:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.inner = LocalStore(root / "objects")
        self.faulty = FaultyStore(self.inner)

    def refuse_manifest_writes(self) -> None:
        self.faulty.fail("put", prefix="manifest/")
        self.faulty.transient = False
        self.faulty.misconfigured = True

    def open(self) -> Engine:
        return engine.open(self.root / "node", self.faulty, QUIET)

    def reopen(self) -> Engine:
        return engine.open(self.root / "node", self.inner, QUIET)


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[Bucket]:
    yield Bucket(tmp_path)


def _with_orders(e: Engine) -> None:
    e.create_topic("orders", 1)
    e.produce("orders", 0, batch([b"a", b"b"]))
    # Uploaded now: a fork waits for its parent's upload, and an upload
    # the store refuses for good fails the whole store (StorageError).
    assert e.flush(30)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_refused_manifest_write_raises_a_typed_error_and_changes_nothing(
    bucket: Bucket, change: str
) -> None:
    with bucket.open() as e:
        _with_orders(e)
        before = shape(e)
        bucket.refuse_manifest_writes()
        with pytest.raises(StoreWriteFailed) as refused:
            CHANGES[change](e)
        assert isinstance(refused.value.__cause__, InjectedFault)
        assert CHECK_THE_STORE in str(refused.value) and "fixed" in str(refused.value)
        assert not refused.value.transient
        assert shape(e) == before
        assert e.fetch("orders", 0, 0).high_watermark == 2  # the engine keeps serving
        bucket.faulty.heal()
        CHANGES[change](e)
        after = shape(e)
        assert after != before
    with bucket.reopen() as reopened:
        assert shape(reopened) == after


def test_a_deletion_whose_stream_deletion_is_refused_is_in_force(bucket: Bucket) -> None:
    """The catalog's record deletes the topic; the streams the refused
    manifest commit left are deleted at the next open, so the caller is told
    what a restart keeps: the topic is gone."""
    with bucket.open() as e:
        _with_orders(e)
        streams = {p.stream_id for p in e.all_partitions() if p.topic == "orders"}
        bucket.refuse_manifest_writes()
        e.delete_topic("orders")
        assert "orders" not in e.list_topics()
        bucket.faulty.heal()
    with bucket.reopen() as reopened:
        assert "orders" not in reopened.list_topics()
        assert not streams & set(reopened.store.streams())


@pytest.mark.parametrize("prefix", ["objects/", "manifest/"])
def test_a_cleaning_whose_writes_are_refused_raises_a_typed_error(
    bucket: Bucket, prefix: str
) -> None:
    """The log cleaner writes a cleaned object and commits it in place of
    the range it read: either write refused, the caller is told so in the
    engine's terms, every record is still there, and a later pass cleans."""
    with bucket.open() as e:
        e.create_topic("compacted", 1, {"cleanup.policy": "compact", "segment.ms": "1"})
        for value in range(20):
            e.produce("compacted", 0, batch([b"v%d" % value]))
        assert e.flush(30)
        bucket.faulty.fail("put", prefix=prefix)
        bucket.faulty.transient = False
        bucket.faulty.misconfigured = True
        with pytest.raises(StoreWriteFailed) as refused:
            e.clean()
        assert isinstance(refused.value.__cause__, InjectedFault)
        assert len(read_partition(e, "compacted", 0)) == 20
        bucket.faulty.heal()
        # The pass right after a refused commit may find the ranges moved
        # (the refused write settled) and defer, as it does after a
        # compaction: the next one cleans.
        assert e.clean() + e.clean() == 1
        kept = [r.value for r in read_partition(e, "compacted", 0)]
        assert kept == [b"v19"]
    with bucket.reopen() as reopened:
        assert [r.value for r in read_partition(reopened, "compacted", 0)] == kept


def _admin_error(future: object) -> KafkaError:
    with pytest.raises(KafkaException) as failed:
        future.result(30)  # type: ignore[attr-defined]
    error = failed.value.args[0]
    assert isinstance(error, KafkaError)
    return error


def _user_topics(admin: AdminClient) -> dict[str, int]:
    topics = admin.list_topics(timeout=10).topics
    return {name: len(t.partitions) for name, t in topics.items() if not name.startswith("__")}


def test_admin_requests_the_store_refuses_are_answered_storage_error(bucket: Bucket) -> None:
    e = bucket.open()
    server = InProcessServer(e)
    try:
        _with_orders(e)
        e.create_topic("old", 1)
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        bucket.refuse_manifest_writes()
        # A deletion is in force once the catalog records it (its streams
        # go at the next open): answered as done.
        [deleted] = admin.delete_topics(["old"]).values()
        assert deleted.result(30) is None
        [created] = admin.create_topics([NewTopic("created", 2)]).values()
        error = _admin_error(created)
        assert error.code() == KafkaError.KAFKA_STORAGE_ERROR, error
        assert CHECK_THE_STORE in error.str()
        [grown] = admin.create_partitions([NewPartitions("orders", 3)]).values()
        assert _admin_error(grown).code() == KafkaError.KAFKA_STORAGE_ERROR
        # The same client's connection still serves.
        assert _user_topics(admin) == {"orders": 1}
        bucket.faulty.heal()
        [created] = admin.create_topics([NewTopic("created", 2)]).values()
        assert created.result(30) is None
        [grown] = admin.create_partitions([NewPartitions("orders", 3)]).values()
        assert grown.result(30) is None
        told = _user_topics(admin)
    finally:
        server.stop()
        e.close()
    with bucket.reopen() as reopened:
        assert shape(reopened) == told == {"orders": 3, "created": 2}


def test_a_deletion_by_a_fenced_engine_is_not_reported_done(tmp_path: Path) -> None:
    """Only a store refusing the streams' deletion leaves the deletion in
    force: once another engine has opened the bucket, the catalog record
    this one wrote is never replayed there, so the topic lives on and the
    caller is told the engine is fenced, not that the topic is gone."""
    store = LocalStore(tmp_path / "objects")
    fenced = engine.open(tmp_path / "first", store, QUIET)
    try:
        fenced.create_topic("orders", 1)
        assert fenced.flush(30)
        with engine.open(tmp_path / "second", store, QUIET) as owner:
            with pytest.raises(Fenced):
                fenced.delete_topic("orders")
            assert owner.list_topics() == ["orders"]
    finally:
        with contextlib.suppress(Exception):  # what it still holds goes nowhere
            fenced.close()
    with engine.open(tmp_path / "third", store, QUIET) as later:
        assert later.list_topics() == ["orders"]


METADATA_VERSIONS = (0, 1, 4, 9, 12)
"""Below v4 auto-creation is always asked for; v9 is the first flexible
version; v12 the highest a client sends before topic ids by name."""


def test_an_auto_creation_the_store_refuses_is_answered_unknown_topic(bucket: Bucket) -> None:
    """Kafka 4 answers UNKNOWN_TOPIC_OR_PARTITION for a topic whose
    auto-creation it asked for, in every Metadata version, whatever the
    controller made of it (DefaultAutoTopicCreationManager): a failed
    creation is the client's cue to ask again, never a storage error. Once
    the store takes writes, the next request creates the topic."""
    e = engine.open(bucket.root / "node", bucket.faulty, replace(QUIET, auto_create_topics=True))
    server = InProcessServer(e)
    try:
        bucket.refuse_manifest_writes()
        with Wire(server.bootstrap) as wire:
            for version in METADATA_VERSIONS:
                request = build(
                    request_schema(ApiKey.METADATA, version),
                    topics=[{"name": "auto"}],
                    allow_auto_topic_creation=True,
                )
                (topic,) = wire.request(request).topics
                assert (version, topic.error_code) == (
                    version,
                    KafkaCode.UNKNOWN_TOPIC_OR_PARTITION,
                )
                assert topic.partitions == ()
            produced = wire.request(produce({"auto-produced": bad_input_batch()}))
            assert produced.responses[0].partition_responses[0].error_code == (
                KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
            )
            assert e.list_topics() == []
            bucket.faulty.heal()
            request = build(
                request_schema(ApiKey.METADATA, 12),
                topics=[{"name": "auto"}],
                allow_auto_topic_creation=True,
            )
            (topic,) = wire.request(request).topics
            assert topic.error_code == KafkaCode.NONE
            assert len(topic.partitions) == 1
    finally:
        server.stop()
        e.close()
    with bucket.reopen() as reopened:
        assert reopened.list_topics() == ["auto"]


def _transient_manifest_outage(bucket: Bucket) -> None:
    bucket.faulty.fail("put", prefix="manifest/")
    bucket.faulty.transient = True
    bucket.faulty.misconfigured = False


def test_an_admin_write_through_an_outage_is_refused_at_its_timeout(bucket: Bucket) -> None:
    """A transient outage is retried for the caller's timeout_ms at most:
    AdminTimedOut (REQUEST_TIMED_OUT), and nothing changed, then or after a
    restart; the same change succeeds once the store answers."""
    with bucket.open() as e:
        _with_orders(e)
        _transient_manifest_outage(bucket)
        began = time.monotonic()
        with pytest.raises(AdminTimedOut) as timed_out:
            e.create_topics([EngineNewTopic("created", 2)], timeout_ms=300)
        with pytest.raises(AdminTimedOut):
            e.create_partitions_many([("orders", 3)], timeout_ms=300)
        assert time.monotonic() - began < TIMEOUT
        assert timed_out.value.code == KafkaCode.REQUEST_TIMED_OUT
        assert shape(e) == {"orders": 1}
        bucket.faulty.heal()
    with bucket.reopen() as reopened:
        assert shape(reopened) == {"orders": 1}
        reopened.create_topic("created", 2)
        reopened.create_partitions("orders", 3)
        assert shape(reopened) == {"orders": 3, "created": 2}


def test_admin_requests_through_an_outage_are_answered_at_their_timeout(bucket: Bucket) -> None:
    """Over the wire: CreateTopics and CreatePartitions are answered
    REQUEST_TIMED_OUT at the request's timeout_ms, as Kafka's controller
    answers them, with nothing created; DeleteTopics is answered done (the
    deletion is in force once the catalog records it; its streams go at the
    next open); the connection keeps serving, and after a restart the
    cluster is what the answers said."""
    e = bucket.open()
    server = InProcessServer(e)
    try:
        _with_orders(e)
        e.create_topic("old", 1)
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        _transient_manifest_outage(bucket)
        [created] = admin.create_topics([NewTopic("created", 2)], operation_timeout=0.5).values()
        assert _admin_error(created).code() == KafkaError.REQUEST_TIMED_OUT
        [grown] = admin.create_partitions(
            [NewPartitions("orders", 3)], operation_timeout=0.5
        ).values()
        assert _admin_error(grown).code() == KafkaError.REQUEST_TIMED_OUT
        [deleted] = admin.delete_topics(["old"], operation_timeout=0.5).values()
        assert deleted.result(TIMEOUT) is None
        assert _user_topics(admin) == {"orders": 1}
        bucket.faulty.heal()
        [created] = admin.create_topics([NewTopic("created", 2)]).values()
        assert created.result(TIMEOUT) is None
        told = _user_topics(admin)
    finally:
        server.stop()
        e.close()
    with bucket.reopen() as reopened:
        assert shape(reopened) == told == {"orders": 1, "created": 2}


def _lost_then_unreadable(bucket: Bucket) -> None:
    """The next manifest write lands but its answer is lost, and the
    manifest cannot be read back to settle it until healed."""
    bucket.faulty.lose_put_responses = True
    bucket.faulty.fail("get", "head", "list", prefix="manifest/")
    bucket.faulty.transient = True


TIMED_OUT: dict[str, Change] = {
    "create": lambda e: e.create_topics([EngineNewTopic("created", 2)], timeout_ms=300),
    "grow": lambda e: e.create_partitions_many([("orders", 3)], timeout_ms=300),
}


@pytest.mark.parametrize("second", ["restart", "second engine"])
@pytest.mark.parametrize("change", sorted(TIMED_OUT))
def test_a_timed_out_creation_whose_write_landed_never_completes(
    bucket: Bucket, change: str, second: str
) -> None:
    """The streams' commit lands, its answer is lost and the store stays
    unreadable past the timeout: AdminTimedOut. The engine, a restart and a
    second engine opening the bucket meanwhile all agree the topic does not
    exist (or did not grow: no partition half-added), and a topic created
    later under its name holds only what is written to it, its stream none
    of the abandoned ones."""
    first = bucket.open()
    try:
        _with_orders(first)
        before = set(first.store.streams())
        _lost_then_unreadable(bucket)
        with pytest.raises(AdminTimedOut):
            TIMED_OUT[change](first)
        assert shape(first) == {"orders": 1}
        bucket.faulty.heal()
        landed = set(bucket_streams(bucket)) - before
        assert landed  # the writes did land: the case under test
        if second == "second engine":
            other = engine.open(bucket.root / "other", bucket.inner, QUIET)
        else:
            assert shape(first) == {"orders": 1}
            first.create_topic("created", 1)  # settles, and drops what landed
            first.produce("created", 0, batch([b"new"]))
            assert first.flush(30)
            first.close()
            other = bucket.reopen()
        with other:
            assert not landed & set(other.store.streams())
            if second == "second engine":
                assert shape(other) == {"orders": 1}
                other.create_topic("created", 1)
                other.produce("created", 0, batch([b"new"]))
            assert shape(other) == {"orders": 1, "created": 1}
            assert [r.value for r in read_partition(other, "created", 0)] == [b"new"]
            assert [r.value for r in read_partition(other, "orders", 0)] == [b"a", b"b"]
    finally:
        first.close()


def bucket_streams(bucket: Bucket) -> list[int]:
    """The streams the bucket's newest manifest holds, read as a new opener would."""
    return list(load_state(bucket.inner).streams)


def _metadata(name: str, auto_create: bool) -> object:
    return build(
        request_schema(ApiKey.METADATA, 12),
        topics=[{"name": name}],
        allow_auto_topic_creation=auto_create,
    )


@pytest.mark.parametrize("creating", ["metadata", "produce"])
def test_an_auto_creation_through_an_outage_holds_up_nobody(bucket: Bucket, creating: str) -> None:
    """A Metadata or a Produce asking to create a topic while the object
    store fails transiently: as Kafka's broker answers such a request at
    once (the creation is the controller's), it holds up neither the other
    connections' requests nor admin requests, which are answered at their
    timeout_ms; the creation is answered UNKNOWN_TOPIC_OR_PARTITION, and the
    client's next request after the outage creates the topic."""
    e = engine.open(bucket.root / "node", bucket.faulty, replace(QUIET, auto_create_topics=True))
    server = InProcessServer(e)
    try:
        _with_orders(e)
        _transient_manifest_outage(bucket)
        with ThreadPoolExecutor(1) as asker, Wire(server.bootstrap, timeout=TIMEOUT) as other:
            with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
                if creating == "metadata":
                    asked = asker.submit(wire.request, _metadata("auto", True))
                else:
                    asked = asker.submit(wire.request, produce({"auto": bad_input_batch()}))
                (orders,) = other.request(_metadata("orders", False)).topics
                assert orders.error_code == KafkaCode.NONE
                created = other.request(
                    build(
                        request_schema(ApiKey.CREATE_TOPICS, 7),
                        topics=[{"name": "created", "num_partitions": 1, "replication_factor": 1}],
                        timeout=datetime.timedelta(milliseconds=300),
                    )
                )
                assert created.topics[0].error_code == KafkaCode.REQUEST_TIMED_OUT
                answer = asked.result(TIMEOUT)
                if creating == "metadata":
                    code = answer.topics[0].error_code
                else:
                    code = answer.responses[0].partition_responses[0].error_code
                assert code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
                assert e.list_topics() == ["orders"]
            bucket.faulty.heal()
            (auto,) = other.request(_metadata("auto", True)).topics
            assert auto.error_code == KafkaCode.NONE
    finally:
        server.stop()
        e.close()
    with bucket.reopen() as reopened:
        assert sorted(reopened.list_topics()) == ["auto", "orders"]


def test_a_produce_creating_its_topic_through_an_outage_leaves_the_event_loop_free(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The creation a Produce asks for runs off the event loop: however long
    it waits for the store (here, until the outage ends), the other
    connections are served meanwhile; then the Produce is answered as if the
    topic had been there."""
    monkeypatch.setattr(common, "AUTO_CREATE_TIMEOUT_MS", 3_600_000)
    e = engine.open(bucket.root / "node", bucket.faulty, replace(QUIET, auto_create_topics=True))
    server = InProcessServer(e)
    try:
        _with_orders(e)
        _transient_manifest_outage(bucket)
        failures = bucket.faulty.failures
        with (
            ThreadPoolExecutor(1) as asker,
            Wire(server.bootstrap, timeout=TIMEOUT) as wire,
            Wire(server.bootstrap, timeout=TIMEOUT) as other,
        ):
            asked = asker.submit(wire.request, produce({"auto": bad_input_batch()}))
            deadline = time.monotonic() + TIMEOUT
            while bucket.faulty.failures == failures:  # the creation is retrying
                assert time.monotonic() < deadline and not asked.done()
                time.sleep(0.01)
            (orders,) = other.request(_metadata("orders", False)).topics
            assert orders.error_code == KafkaCode.NONE
            assert not asked.done()
            bucket.faulty.heal()
            answer = asked.result(TIMEOUT)
            assert answer.responses[0].partition_responses[0].error_code == KafkaCode.NONE
        assert [r.value for r in read_partition(e, "auto", 0)] == [b"v" * 50]
    finally:
        server.stop()
        e.close()
