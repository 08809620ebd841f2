"""The embedded API: lifecycle, topic admin, typed errors, producer, consumer,
retention. Every error carries its Kafka code, and after every error the
engine keeps serving."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import engine
from engine import ConfigSource, TopicPartition
from engine.protocol.kafka_code import KafkaCode
from tests.engine.conftest import QUIET_STORE, EngineFactory
from tests.engine.helpers_records import batch, read_partition

T0 = 1_700_000_000_000


def code(name: str) -> int:
    return KafkaCode[name]


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_serving(e: engine.Engine) -> None:
    """A produce and a fetch still work (on a topic of their own)."""
    if "canary" not in e.list_topics():
        e.create_topic("canary", 1)
    end = e.offsets("canary", 0)[1]
    result = e.produce("canary", 0, batch([b"still here"]))
    assert result.base_offset == end
    assert read_partition(e, "canary", 0, end)[0].value == b"still here"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def configs_of(e: engine.Engine, topic: str) -> dict[str, tuple[str, ConfigSource]]:
    return {c.name: (c.value, c.source) for c in e.describe_topic(topic).configs}


def kafka_python_partition(key: bytes, partitions: int) -> int:
    """The partition kafka-python's DefaultPartitioner picks for ``key``."""
    from kafka.partitioner.default import DefaultPartitioner

    every = list(range(partitions))
    if not hasattr(DefaultPartitioner, "partition"):  # kafka-python 2.0
        return int(DefaultPartitioner()(key, every, every))

    class Cluster:
        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(every)

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(every)

    return int(DefaultPartitioner().partition("t", key, key, None, None, Cluster()))


# -- lifecycle ------------------------------------------------------------------


def test_context_manager_closes_the_engine(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as e:
        e.create_topic("t", 1)
        e.produce("t", 0, batch([b"x"]))
        was_open = not e.closed
    assert was_open and e.closed
    with engine.open(tmp_path / "node") as again:
        assert [r.value for r in read_partition(again, "t", 0)] == [b"x"]


def test_async_context_manager_closes_the_engine(tmp_path: Path) -> None:
    async def main() -> engine.Engine:
        async with engine.open(tmp_path / "node") as e:
            e.create_topic("t", 1)
            result = await e.produce_async("t", 0, batch([b"x"]))
            assert result.base_offset == 0
            assert not e.closed
        return e

    assert asyncio.run(main()).closed


def test_a_closed_engine_raises_engine_closed(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    producer = e.producer()
    consumer = e.consumer("t")
    e.close()
    e.close()  # a second close is harmless
    calls: list[Callable[[], object]] = [
        lambda: e.create_topic("u", 1),
        lambda: e.delete_topic("t"),
        lambda: e.produce("t", 0, batch([b"x"])),
        lambda: e.fetch("t", 0, 0),
        lambda: e.delete_records("t", 0, 0),
        e.init_producer_id,
        lambda: producer.send("t", b"x").result(),
        consumer.poll,
    ]
    for call in calls:
        with pytest.raises(engine.EngineClosed) as caught:
            call()
        assert caught.value.error_code == code("NOT_LEADER_OR_FOLLOWER")
        assert "closed" in str(caught.value)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_commit_that_meets_the_engine_closing_raises_engine_closed(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch, asynchronous: bool
) -> None:
    """The engine closes after a consumer's commit found it open and before
    the group coordinator took the commit (its answer COORDINATOR_NOT_AVAILABLE
    per partition, the wire's retriable code): the caller is told the engine
    closed, as every other call is, not a GroupError it would retry."""
    e = engine_factory()
    e.create_topic("t", 1)
    consumer = e.consumer(group_id="g", enable_auto_commit=False)
    consumer.assign([TopicPartition("t", 0)])
    commit_offsets = e.groups.commit_offsets

    def closing_first(*args: Any, **kwargs: Any) -> Any:
        e.close()
        return commit_offsets(*args, **kwargs)

    monkeypatch.setattr(e.groups, "commit_offsets", closing_first)
    with pytest.raises(engine.EngineClosed) as caught:
        if asynchronous:
            consumer.commit({TopicPartition("t", 0): 1}, asynchronous=True).result(30)
        else:
            consumer.commit({TopicPartition("t", 0): 1})
    assert caught.value.error_code == code("COORDINATOR_NOT_AVAILABLE")
    assert "closed" in str(caught.value)


# -- topics ----------------------------------------------------------------------


def test_create_list_describe_and_delete_topics(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    assert e.list_topics() == []
    created = e.create_topic("tool-calls", 3, {"retention.ms": 60_000})
    e.create_topic("approvals", 1)
    assert e.list_topics() == ["approvals", "tool-calls"]
    described = e.describe_topic("tool-calls")
    assert described == created
    assert described.name == "tool-calls"
    assert len(described.topic_id) == 16 and described.topic_id != bytes(16)
    assert [(p.partition, p.log_start_offset, p.high_watermark) for p in described.partitions] == [
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 0),
    ]
    assert configs_of(e, "tool-calls")["retention.ms"] == ("60000", ConfigSource.TOPIC)
    assert configs_of(e, "approvals")["retention.ms"] == ("604800000", ConfigSource.DEFAULT)

    e.produce("tool-calls", 1, batch([b"a", b"b"]))
    assert e.describe_topic("tool-calls").partitions[1].high_watermark == 2

    e.delete_topic("tool-calls")
    assert e.list_topics() == ["approvals"]
    with pytest.raises(engine.UnknownTopic):
        e.describe_topic("tool-calls")
    again = e.create_topic("tool-calls", 1)
    assert again.topic_id != created.topic_id
    assert e.offsets("tool-calls", 0) == (0, 0)


def test_validate_only_creates_nothing(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    described = e.create_topic("t", 4, {"retention.ms": 5}, validate_only=True)
    assert len(described.partitions) == 4
    assert e.list_topics() == []
    e.create_topic("t", 1)
    e.create_partitions("t", 5, validate_only=True)
    e.alter_configs("t", {"retention.ms": 5}, validate_only=True)
    assert e.partition_count("t") == 1
    assert configs_of(e, "t")["retention.ms"][1] == ConfigSource.DEFAULT


def test_creating_an_existing_topic_raises_topic_exists(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    with pytest.raises(engine.TopicExists) as caught:
        e.create_topic("t", 1)
    assert caught.value.error_code == code("TOPIC_ALREADY_EXISTS")
    assert caught.value.topic == "t"
    assert e.partition_count("t") == 2
    assert_serving(e)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "with space", "naïve", "x" * 250, "a\n"])
def test_bad_topic_names_raise_invalid_topic(engine_factory: EngineFactory, name: str) -> None:
    e = engine_factory()
    with pytest.raises(engine.InvalidTopic) as caught:
        e.create_topic(name, 1)
    assert caught.value.error_code == code("INVALID_TOPIC_EXCEPTION")
    assert e.list_topics() == []
    assert_serving(e)


def test_names_kafka_allows_are_accepted(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    for name in ("a", "A.b_c-9", "x" * 249, "...", "_internal"):
        e.create_topic(name, 1)
    assert len(e.list_topics()) == 5


def test_a_name_colliding_by_dot_and_underscore_raises_invalid_topic(
    engine_factory: EngineFactory,
) -> None:
    """As Kafka's ReplicationControlManager: 'a.b' and 'a_b' would share
    their metrics' names, so the second is refused, whether created, asked
    for with it, forked or named like an internal topic; once the first is
    deleted the name is free again."""
    e = engine_factory()
    e.create_topic("a_b", 1)
    for taken in ("a.b", "__consumer.offsets", "__transaction.state"):
        with pytest.raises(engine.InvalidTopic) as caught:
            e.create_topic(taken, 1)
        assert caught.value.error_code == code("INVALID_TOPIC_EXCEPTION")
    with pytest.raises(engine.InvalidTopic):
        e.fork("a_b", name="a.b")
    together = e.create_topics([engine.NewTopic("x.y", 1), engine.NewTopic("x_y", 1)])
    assert isinstance(together[0], engine.TopicDescription)
    assert isinstance(together[1], engine.InvalidTopic)
    with pytest.raises(engine.TopicExists):
        e.create_topic("a_b", 1)  # the name itself: it exists, as Kafka answers it
    assert sorted(e.list_topics()) == ["a_b", "x.y"]
    e.delete_topic("a_b")
    e.create_topic("a.b", 1)
    assert sorted(e.list_topics()) == ["a.b", "x.y"]
    assert_serving(e)


def test_bad_partition_counts_raise_invalid_partitions(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    for bad in (0, -5):
        with pytest.raises(engine.InvalidPartitions) as caught:
            e.create_topic("t", bad)
        assert caught.value.error_code == code("INVALID_PARTITIONS")
    e.create_topic("t", 2)
    for total in (2, 1, 0):
        with pytest.raises(engine.InvalidPartitions) as caught:
            e.create_partitions("t", total)
        assert caught.value.error_code == code("INVALID_PARTITIONS")
    assert e.partition_count("t") == 2
    with pytest.raises(engine.InvalidReplicationFactor) as replication:
        e.create_topic("u", 1, replication_factor=3)
    assert replication.value.error_code == code("INVALID_REPLICATION_FACTOR")
    assert_serving(e)


def test_create_partitions_grows_a_topic(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    e.produce("t", 0, batch([b"old"]))
    e.create_partitions("t", 3)
    assert e.partition_count("t") == 3
    assert [p.partition for p in e.describe_topic("t").partitions] == [0, 1, 2]
    assert e.produce("t", 2, batch([b"new"])).base_offset == 0
    assert [r.value for r in read_partition(e, "t", 0)] == [b"old"]
    assert [r.value for r in read_partition(e, "t", 2)] == [b"new"]


@pytest.mark.parametrize(
    "configs",
    [
        {"no.such.config": "1"},
        {"retention.ms": "soon"},
        {"retention.ms": -7},
        {"cleanup.policy": "keep"},
        {"message.timestamp.type": "WallClock"},
        {"max.message.bytes": 2**40},
        {"min.cleanable.dirty.ratio": 2},
    ],
)
def test_bad_configs_raise_invalid_config(
    engine_factory: EngineFactory, configs: dict[str, object]
) -> None:
    e = engine_factory()
    with pytest.raises(engine.InvalidConfig) as caught:
        e.create_topic("t", 1, configs)
    assert caught.value.error_code == code("INVALID_CONFIG")
    assert caught.value.name in configs
    assert e.list_topics() == []
    e.create_topic("t", 1, {"retention.ms": 1000})
    with pytest.raises(engine.InvalidConfig):
        e.alter_configs("t", configs)
    assert configs_of(e, "t")["retention.ms"] == ("1000", ConfigSource.TOPIC)
    assert_serving(e)


def test_unknown_topics_and_partitions_raise_unknown_topic(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    calls: list[Callable[[], object]] = [
        lambda: e.describe_topic("nope"),
        lambda: e.delete_topic("nope"),
        lambda: e.alter_configs("nope", {"retention.ms": 1}),
        lambda: e.create_partitions("nope", 3),
        lambda: e.produce("nope", 0, batch([b"x"])),
        lambda: e.fetch("nope", 0, 0),
        lambda: e.producer().send("nope", b"x"),
        lambda: e.consumer().assign([("nope", 0)]),
    ]
    for call in calls:
        with pytest.raises(engine.UnknownTopic) as caught:
            call()
        assert caught.value.error_code == code("UNKNOWN_TOPIC_OR_PARTITION")
        assert caught.value.topic == "nope"
    for call in (
        lambda: e.produce("t", 2, batch([b"x"])),
        lambda: e.fetch("t", -1, 0),
        lambda: e.producer().send("t", b"x", partition=5),
    ):
        with pytest.raises(engine.UnknownPartition) as unknown:
            call()
        assert unknown.value.error_code == code("UNKNOWN_TOPIC_OR_PARTITION")
    assert e.list_topics() == ["t"]
    assert_serving(e)


def test_alter_configs_incrementally_sets_and_removes_overrides(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(topic_defaults={"retention.bytes": "123456"})
    e.create_topic("t", 1, {"max.message.bytes": 5000})
    e.alter_configs("t", {"retention.ms": 1000, "cleanup.policy": ["delete", "compact"]})
    configs = configs_of(e, "t")
    assert configs["retention.ms"] == ("1000", ConfigSource.TOPIC)
    assert configs["cleanup.policy"] == ("delete,compact", ConfigSource.TOPIC)
    assert configs["max.message.bytes"] == ("5000", ConfigSource.TOPIC)
    assert configs["retention.bytes"] == ("123456", ConfigSource.STATIC_BROKER)
    e.alter_configs("t", {"cleanup.policy": None})
    configs = configs_of(e, "t")
    assert configs["cleanup.policy"] == ("delete", ConfigSource.DEFAULT)
    assert configs["retention.ms"] == ("1000", ConfigSource.TOPIC)


def test_alter_configs_not_incremental_replaces_every_override(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1, {"max.message.bytes": 5000, "retention.ms": 1000})
    e.alter_configs("t", {"retention.ms": 2000}, incremental=False)
    configs = configs_of(e, "t")
    assert configs["retention.ms"] == ("2000", ConfigSource.TOPIC)
    assert configs["max.message.bytes"] == ("1048588", ConfigSource.DEFAULT)


def test_altered_configs_take_effect_at_once(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    e.produce("t", 0, batch([b"x" * 3000]))
    e.alter_configs("t", {"max.message.bytes": 1000})
    with pytest.raises(engine.RecordTooLarge):
        e.produce("t", 0, batch([b"x" * 3000]))
    e.alter_configs("t", {"message.timestamp.type": "LogAppendTime"})
    before = now_ms()
    result = e.produce("t", 0, batch([b"y"], timestamp=1))
    assert before <= result.log_append_time <= now_ms()


# -- producing: bad batches --------------------------------------------------------


def test_a_batch_over_max_message_bytes_raises_record_too_large(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("small", 1, {"max.message.bytes": 1000})
    big = batch([b"x" * 2000])
    with pytest.raises(engine.RecordTooLarge) as caught:
        e.produce("small", 0, big)
    assert caught.value.error_code == code("MESSAGE_TOO_LARGE")
    assert (caught.value.size, caught.value.limit) == (len(big), 1000)
    with e.producer() as producer:
        with pytest.raises(engine.RecordTooLarge):
            producer.send("small", b"x" * 2000).result()
        assert producer.send("small", b"fits").result() == (0, 0)
    assert e.offsets("small", 0) == (0, 1)
    assert_serving(e)


def test_a_flipped_byte_raises_corrupt_record(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    good = batch([b"hello", b"world"])
    for position in (30, len(good) - 1):  # an attribute byte, a record byte
        corrupt = bytearray(good)
        corrupt[position] ^= 0x40
        with pytest.raises(engine.CorruptRecord) as caught:
            e.produce("t", 0, bytes(corrupt))
        assert caught.value.error_code == code("CORRUPT_MESSAGE")
    assert e.offsets("t", 0) == (0, 0)
    assert e.produce("t", 0, good).base_offset == 0
    assert_serving(e)


def test_one_batch_refuses_a_second_batch_with_kafkas_words(
    engine_factory: EngineFactory,
) -> None:
    """A Produce partition's data (``one_batch``) may hold one batch, as
    Kafka's ProduceRequest.validateRecords says; the embedded API's own
    appends may hold many."""
    e = engine_factory()
    e.create_topic("t", 1)
    two = batch([b"a"]) + batch([b"b"])
    with pytest.raises(engine.InvalidRecord, match="exactly one record batch") as caught:
        e.submit("t", 0, two, one_batch=True)
    assert caught.value.error_code == code("INVALID_RECORD")
    assert e.offsets("t", 0) == (0, 0)
    assert e.submit("t", 0, two).result().last_offset == 1
    assert_serving(e)


def test_one_batch_refuses_a_base_offset_other_than_0_with_kafkas_words(
    engine_factory: EngineFactory,
) -> None:
    """Kafka refuses a client's batch that does not start at offset 0
    (UnifiedLog.analyzeAndValidateRecords); the embedded API's own appends
    keep theirs unread, as its spec says: the broker writes the base offset."""
    e = engine_factory()
    e.create_topic("t", 1)
    based = bytearray(batch([b"a"]))
    struct.pack_into(">q", based, 0, 41)
    with pytest.raises(engine.InvalidRecord) as caught:
        e.submit("t", 0, bytes(based), one_batch=True)
    assert str(caught.value) == (
        "The baseOffset of the record batch in the append to t-0 should be 0, but it is 41"
    )
    assert caught.value.error_code == code("INVALID_RECORD")
    assert e.offsets("t", 0) == (0, 0)
    assert e.submit("t", 0, bytes(based)).result().base_offset == 0
    assert_serving(e)


def test_a_control_batch_from_a_client_raises_invalid_record(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    control = batch([b"\x00\x00\x00\x00"], key=b"\x00\x00\x00\x00", is_control=True)
    with pytest.raises(engine.InvalidRecord) as caught:
        e.produce("t", 0, control)
    assert type(caught.value) is engine.InvalidRecord
    assert caught.value.error_code == code("INVALID_RECORD")
    assert e.offsets("t", 0) == (0, 0)
    assert_serving(e)


def test_a_record_without_key_on_a_compacted_topic_raises_invalid_record(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("state", 1, {"cleanup.policy": "compact"})
    with pytest.raises(engine.InvalidRecord) as caught:
        e.produce("state", 0, batch([b"v"], key=None))
    assert caught.value.error_code == code("INVALID_RECORD")
    with e.producer() as producer:
        with pytest.raises(engine.InvalidRecord):
            producer.send("state", b"v").result()
        assert producer.send("state", b"v", key=b"k").result() == (0, 0)
    assert_serving(e)


def test_a_transactional_batch_raises_invalid_txn_state(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    transactional = batch(
        [b"v"],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=0,
        is_transactional=True,
    )
    with pytest.raises(engine.InvalidTxnState) as caught:
        e.produce("t", 0, transactional)
    assert caught.value.error_code == code("INVALID_TXN_STATE")
    assert e.offsets("t", 0) == (0, 0)
    assert_serving(e)


def test_idempotent_batches_are_deduplicated_and_ordered(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()

    def sequenced(base_sequence: int, count: int = 2) -> bytes:
        values = [b"%d" % (base_sequence + i) for i in range(count)]
        return batch(
            values, producer_id=producer_id, producer_epoch=epoch, base_sequence=base_sequence
        )

    first = e.produce("t", 0, sequenced(0))
    assert not first.duplicate
    assert e.produce("t", 0, sequenced(0)) == first._replace(duplicate=True)
    with pytest.raises(engine.OutOfOrderSequence) as caught:
        e.produce("t", 0, sequenced(5))
    assert caught.value.error_code == code("OUT_OF_ORDER_SEQUENCE_NUMBER")
    assert e.produce("t", 0, sequenced(2)).base_offset == 2
    with pytest.raises(engine.InvalidProducerEpoch):
        e.produce(
            "t", 0, batch([b"x"], producer_id=producer_id, producer_epoch=-1, base_sequence=4)
        )
    assert [r.value for r in read_partition(e, "t", 0)] == [b"0", b"1", b"2", b"3"]


def test_every_public_error_carries_a_kafka_code() -> None:
    for name in engine.__all__:
        error = getattr(engine, name)
        if isinstance(error, type) and issubclass(error, engine.EngineError):
            assert isinstance(error.code, KafkaCode), name


# -- auto creation -----------------------------------------------------------------


def test_producing_to_a_missing_topic_raises_unknown_topic_by_default(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    with pytest.raises(engine.UnknownTopic):
        e.produce("fresh", 0, batch([b"x"]))
    with e.producer() as producer, pytest.raises(engine.UnknownTopic):
        producer.send("fresh", b"x")
    assert e.list_topics() == []
    assert_serving(e)


def test_auto_create_topics_creates_a_topic_on_its_first_produce(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(auto_create_topics=True, default_partitions=3)
    assert e.produce("raw", 0, batch([b"x"])).base_offset == 0
    assert e.partition_count("raw") == 3
    with e.producer() as producer:
        metadata = producer.send("fresh", b"x", key=b"k").result()
    assert "fresh" in e.list_topics()
    assert e.partition_count("fresh") == 3
    assert metadata == (kafka_python_partition(b"k", 3), 0)
    with pytest.raises(engine.InvalidTopic):
        e.produce("bad name", 0, batch([b"x"]))


# -- the producer ----------------------------------------------------------------


def test_send_resolves_to_partition_and_offset(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    with e.producer() as producer:
        futures = [producer.send("t", b"%d" % i, partition=i % 2) for i in range(10)]
        results = [f.result() for f in futures]
    assert all(isinstance(r, engine.RecordMetadata) for r in results)
    assert results == [(i % 2, i // 2) for i in range(10)]
    assert [r.value for r in read_partition(e, "t", 1)] == [b"%d" % i for i in range(1, 10, 2)]


def test_keyed_records_land_where_kafka_python_would_put_them(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 7)
    keys = [b"agent-%d" % i for i in range(60)] + [b"", b"\xff" * 3, "ключ".encode()]
    with e.producer() as producer:
        futures = {key: producer.send("t", b"v", key=key) for key in keys}
        for key, future in futures.items():
            assert future.result().partition == kafka_python_partition(key, 7), key
    used = {f.result().partition for f in futures.values()}
    assert len(used) > 1


def test_headers_keys_and_timestamps_round_trip(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    headers = [("trace", b"abc"), ("empty", b""), ("none", None), ("trace", b"again")]
    with e.producer() as producer:
        producer.send("t", b"v1", key=b"k1", headers=headers, timestamp=T0 + 5)
        producer.send("t", None, key="text key", timestamp=T0 + 6)
        producer.send("t", "text value", timestamp=T0 + 7)
        producer.flush()
    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 0)])
        records = consumer.poll(timeout=10)
    assert [
        (r.offset, r.key, r.value, r.headers, r.timestamp, r.timestamp_type) for r in records
    ] == [
        (0, b"k1", b"v1", tuple(headers), T0 + 5, 0),
        (1, b"text key", None, (), T0 + 6, 0),
        (2, None, b"text value", (), T0 + 7, 0),
    ]


def test_send_async_resolves_in_asyncio(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)

    async def main() -> list[engine.RecordMetadata]:
        async with e.producer() as producer:
            return list(
                await asyncio.gather(*(producer.send_async("t", b"%d" % i) for i in range(20)))
            )

    results = asyncio.run(main())
    assert sorted(results) == [(0, i) for i in range(20)]
    assert len({r.offset for r in results}) == 20


def test_flush_waits_until_every_queued_record_is_durable(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 3)
    producer = e.producer(linger_ms=60_000, batch_size=1 << 20)
    futures = [producer.send("t", b"%d" % i, key=b"%d" % i) for i in range(100)]
    assert producer.flush(timeout=60)
    assert all(f.done() and f.exception() is None for f in futures)
    assert sum(e.offsets("t", p)[1] for p in range(3)) == 100
    producer.close()
    with pytest.raises(engine.EngineClosed):
        producer.send("t", b"late")


def test_a_flush_from_a_delivery_callback_is_refused_at_once(engine_factory: EngineFactory) -> None:
    """A delivery callback runs on the thread that settles records (the
    WAL's group commit): a flush there would wait for records only that
    thread settles, stalling every producer until its timeout. Refused,
    as Kafka's KafkaProducer.flush refuses one from its I/O thread; a
    close there closes without waiting, as Kafka's close(0)."""
    e = engine_factory()
    e.create_topic("t", 1)
    # Nothing is sent before a flush: each callback is added before its
    # record is settled, so it runs on the thread that settles it.
    producer = e.producer(linger_ms=60_000)
    refused: list[BaseException] = []
    flushed: list[bool] = []

    def flush_in_callback(_: object) -> None:
        try:
            flushed.append(producer.flush(timeout=60))
        except engine.FlushInCallback as error:
            refused.append(error)

    first = producer.send("t", b"first")
    first.add_done_callback(flush_in_callback)
    second = producer.send("t", b"second")
    assert producer.flush(timeout=60)
    assert flushed == []
    assert len(refused) == 1 and "deadlock" in str(refused[0])
    assert (first.result(0), second.result(0)) == ((0, 0), (0, 1))
    many = producer.send_many("t", [b"m0", b"m1"])
    many.add_done_callback(flush_in_callback)
    assert producer.flush(timeout=60)
    assert flushed == [] and len(refused) == 2  # send_many's callbacks alike

    closed = threading.Event()

    def close_in_callback(_: object) -> None:
        producer.close(timeout=60)
        closed.set()

    third = producer.send("t", b"third")
    third.add_done_callback(close_in_callback)
    fourth = producer.send("t", b"fourth")
    assert producer.flush(timeout=60)
    assert closed.wait(30)
    assert fourth.result(timeout=30) == (0, 5)
    with pytest.raises(engine.EngineClosed):
        producer.send("t", b"after the close")
    assert producer.flush(timeout=0)  # from outside a callback, allowed as ever


def test_a_flush_sends_at_once_until_it_returns_while_another_returns_first(
    engine_factory: EngineFactory,
) -> None:
    # A remote-durability topic whose uploads wait an hour unless the engine
    # is flushed holds the first flush's batch in flight: that flush keeps
    # waiting while a second one gives up and returns.
    e = engine_factory(store=replace(QUIET_STORE, remote_linger_s=3600))
    e.create_topic("held", 1, {"tidelog.ack.durability": "remote"})
    e.create_topic("t", 1)
    producer = e.producer(linger_ms=60_000)
    held = producer.send("held", b"held")
    first: list[bool] = []
    flushing = threading.Thread(target=lambda: first.append(producer.flush(timeout=60)))
    flushing.start()
    wait_until(lambda: e.partition("held", 0).log_end_offset == 1, "the held batch in flight")
    assert not producer.flush(timeout=0)  # the second flush returns first
    # Sent while the first flush still waits: sent at once, not after linger_ms.
    sent = producer.send("t", b"during the first flush")
    assert sent.result(timeout=30) == (0, 0)
    assert not held.done() and flushing.is_alive()
    e.flush()
    flushing.join(60)
    assert first == [True]
    assert held.result(timeout=0) == (0, 0)
    producer.close()


def test_log_append_time_topics_get_the_engine_s_timestamps(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("logged", 1, {"message.timestamp.type": "LogAppendTime"})
    e.create_topic("created", 1)
    before = now_ms()
    result = e.produce("logged", 0, batch([b"a", b"b"], timestamp=1))
    with e.producer() as producer:
        producer.send("logged", b"c", timestamp=2).result()
    after = now_ms()
    assert before <= result.log_append_time <= after
    assert e.produce("created", 0, batch([b"x"])).log_append_time == -1
    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([("logged", 0)])
        records = consumer.poll(timeout=10)
    assert [r.value for r in records] == [b"a", b"b", b"c"]
    assert all(r.timestamp_type == 1 and before <= r.timestamp <= after for r in records)
    assert records[0].timestamp == records[1].timestamp == result.log_append_time


# -- the consumer ------------------------------------------------------------------


def produce_values(
    e: engine.Engine, topic: str, partition: int, count: int, start: int = 0
) -> None:
    for i in range(start, start + count):
        e.produce(topic, partition, batch([b"%d" % i], timestamp=T0 + 10 * i))


def test_assign_and_poll_read_the_assigned_partitions(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 3)
    for p in range(3):
        produce_values(e, "t", p, 4)
    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("t", 0), ("t", 2)])
        assert consumer.assignment() == {("t", 0), ("t", 2)}
        records: list[engine.ConsumerRecord] = []
        while len(records) < 8:
            got = consumer.poll(timeout=10)
            assert got
            records += got
        assert consumer.poll() == []
    assert sorted((r.partition, r.offset, r.value) for r in records) == [
        (p, i, b"%d" % i) for p in (0, 2) for i in range(4)
    ]


def test_max_records_limits_a_poll(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    produce_values(e, "t", 0, 10)
    with e.consumer(auto_offset_reset="earliest", max_poll_records=3) as consumer:
        consumer.assign([("t", 0)])
        assert [r.offset for r in consumer.poll(timeout=10)] == [0, 1, 2]
        assert [r.offset for r in consumer.poll(timeout=10, max_records=5)] == [3, 4, 5, 6, 7]
        assert consumer.position(("t", 0)) == 8
        # None taken would hand nothing out ever; a negative count, a wrong number.
        for bad in (0, -1):
            with pytest.raises(ValueError):
                consumer.poll(timeout=10, max_records=bad)
        assert [r.offset for r in consumer.poll(timeout=10)] == [8, 9]
    for bad in (0, -2):
        with pytest.raises(ValueError):
            e.consumer(max_poll_records=bad)


def test_subscribe_follows_partitions_added_later(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("grow", 1)
    with e.consumer("grow", auto_offset_reset="earliest") as consumer:
        produce_values(e, "grow", 0, 1)
        assert [(r.partition, r.offset) for r in consumer.poll(timeout=10)] == [(0, 0)]
        e.create_partitions("grow", 3)
        e.produce("grow", 2, batch([b"new"]))
        records = consumer.poll(timeout=10)
        assert [(r.partition, r.offset, r.value) for r in records] == [(2, 0, b"new")]
        assert consumer.assignment() == {("grow", 0), ("grow", 1), ("grow", 2)}


def test_seek_and_position(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    produce_values(e, "t", 0, 10)
    tp = TopicPartition("t", 0)
    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        assert consumer.position(tp) == 0
        consumer.seek(tp, 7)
        assert consumer.position(tp) == 7
        assert [r.offset for r in consumer.poll(timeout=10)] == [7, 8, 9]
        assert consumer.position(tp) == 10
        consumer.seek_to_beginning()
        assert consumer.position(tp) == 0
        assert consumer.poll(timeout=10, max_records=2)[0].offset == 0
        assert consumer.position(tp) == 2
        consumer.seek_to_end(tp)
        assert consumer.position(tp) == 10
        assert consumer.poll() == []
        with pytest.raises(ValueError, match="not assigned"):
            consumer.seek(("t", 1), 0)


def test_seek_to_timestamp_finds_the_first_record_at_or_after_it(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    produce_values(e, "t", 0, 10)  # record i at T0 + 10 * i
    tp = TopicPartition("t", 0)
    with e.consumer() as consumer:
        consumer.assign([tp])
        consumer.seek_to_timestamp(T0 + 35)
        assert consumer.position(tp) == 4
        assert consumer.poll(timeout=10)[0].timestamp == T0 + 40
        consumer.seek_to_timestamp(T0 + 40, tp)
        assert consumer.position(tp) == 4
        consumer.seek_to_timestamp(T0 - 1)
        assert consumer.position(tp) == 0
        consumer.seek_to_timestamp(T0 + 1000)
        assert consumer.position(tp) == 10
        assert consumer.offsets_for_times({tp: T0 + 35}) == {tp: (4, T0 + 40)}
        assert consumer.offsets_for_times({tp: T0 + 1000}) == {tp: None}


def test_poll_with_a_timeout_returns_when_data_arrives(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("live", 1)

    def produce_once_the_consumer_waits() -> None:
        wait_until(lambda: e._waiters.sync_waiters > 0, "the consumer to wait")
        e.produce("live", 0, batch([b"hello"]))

    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([("live", 0)])
        producer = threading.Thread(target=produce_once_the_consumer_waits)
        producer.start()
        records = consumer.poll(timeout=30)
        producer.join()
    assert [(r.offset, r.value) for r in records] == [(0, b"hello")]


def test_async_iteration_waits_for_data_produced_later(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("live", 1)

    async def main() -> list[engine.ConsumerRecord]:
        consumer = e.consumer(auto_offset_reset="earliest")
        consumer.assign([("live", 0)])

        async def produce_once_the_consumer_waits() -> None:
            # The consumer parks a future on the engine, woken by the write.
            while not any(e._waiters.async_waiters.values()):
                await asyncio.sleep(0.005)
            async with e.producer() as producer:
                for i in range(3):
                    await producer.send_async("live", b"%d" % i)

        task = asyncio.create_task(produce_once_the_consumer_waits())
        records = []
        async for record in consumer:
            records.append(record)
            if len(records) == 3:
                break
        await asyncio.wait_for(task, 30)
        return records

    records = asyncio.run(asyncio.wait_for(main(), 60))
    assert [(r.offset, r.value) for r in records] == [(0, b"0"), (1, b"1"), (2, b"2")]


def test_iteration_with_iter_timeout_ends(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    produce_values(e, "t", 0, 3)
    produce_values(e, "t", 1, 2)
    with e.consumer("t", auto_offset_reset="earliest", iter_timeout=0.2) as consumer:
        assert sorted((r.partition, r.offset) for r in consumer) == [
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 1),
        ]

    async def consume() -> list[tuple[int, int]]:
        consumer = e.consumer("t", auto_offset_reset="earliest", iter_timeout=0.2)
        return sorted([(r.partition, r.offset) async for r in consumer])

    assert len(asyncio.run(consume())) == 5


def test_auto_offset_reset_earliest_latest_and_none(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    produce_values(e, "t", 0, 3)
    tp = TopicPartition("t", 0)
    earliest = e.consumer(auto_offset_reset="earliest")
    earliest.assign([tp])
    assert [r.offset for r in earliest.poll(timeout=10)] == [0, 1, 2]

    latest = e.consumer(auto_offset_reset="latest")
    latest.assign([tp])
    assert latest.position(tp) == 3
    assert latest.poll() == []
    produce_values(e, "t", 0, 1, start=3)
    assert [r.offset for r in latest.poll(timeout=10)] == [3]

    none = e.consumer(auto_offset_reset="none")
    none.assign([tp])
    with pytest.raises(engine.NoOffsetForPartition) as caught:
        none.position(tp)
    assert caught.value.error_code == code("OFFSET_OUT_OF_RANGE")
    with pytest.raises(engine.NoOffsetForPartition):
        none.poll()
    none.seek(tp, 1)
    assert [r.offset for r in none.poll(timeout=10)] == [1, 2, 3]
    with pytest.raises(ValueError):
        e.consumer(auto_offset_reset="sometimes")


@pytest.mark.parametrize("policy", ["earliest", "latest", "none"])
def test_a_position_below_the_log_start_resets_per_policy(
    engine_factory: EngineFactory, policy: str
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    produce_values(e, "t", 0, 10)
    assert e.delete_records("t", 0, 6) == 6
    assert e.offsets("t", 0) == (6, 10)
    with pytest.raises(engine.OffsetOutOfRange) as below:
        e.fetch("t", 0, 5)
    assert (below.value.log_start_offset, below.value.high_watermark) == (6, 10)
    tp = TopicPartition("t", 0)
    with e.consumer(auto_offset_reset=policy) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        if policy == "earliest":
            assert [r.offset for r in consumer.poll(timeout=10)] == [6, 7, 8, 9]
        elif policy == "latest":
            assert consumer.poll() == []
            assert consumer.position(tp) == 10
            produce_values(e, "t", 0, 1, start=10)
            assert [r.offset for r in consumer.poll(timeout=10)] == [10]
        else:
            with pytest.raises(engine.NoOffsetForPartition) as caught:
                consumer.poll()
            error = caught.value
            assert error.error_code == code("OFFSET_OUT_OF_RANGE")
            assert (error.offset, error.log_start_offset, error.high_watermark) == (0, 6, 10)
    assert_serving(e)


def test_delete_records_moves_the_log_start(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    produce_values(e, "t", 0, 10)
    assert e.delete_records("t", 0, 4) == 4
    assert e.delete_records("t", 0, 2) == 4  # the log start never goes back
    assert e.describe_topic("t").partitions[0].log_start_offset == 4
    assert [r.offset for r in read_partition(e, "t", 0)] == list(range(4, 10))
    with pytest.raises(engine.OffsetOutOfRange) as caught:
        e.delete_records("t", 0, 11)
    assert caught.value.error_code == code("OFFSET_OUT_OF_RANGE")
    assert e.delete_records("t", 0, -1) == 10
    assert e.offsets("t", 0) == (10, 10)
    assert e.produce("t", 0, batch([b"next"])).base_offset == 10
    assert_serving(e)


# -- retention -------------------------------------------------------------------


def test_retention_bytes_drops_old_data_after_uploads_and_compaction(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("short", 1, {"retention.bytes": 4096})
    e.create_topic("long", 1)
    for i in range(12):
        for topic in ("short", "long"):
            e.produce(topic, 0, batch([b"%d:" % i + b"x" * 1000]))
        assert e.flush(30)  # one uploaded object per round
    assert e.offsets("short", 0) == (0, 12)
    e.store.compact()
    start, end = e.offsets("short", 0)
    assert 0 < start < end == 12
    assert e.describe_topic("short").partitions[0].log_start_offset == start
    assert e.offsets("long", 0) == (0, 12)
    with pytest.raises(engine.OffsetOutOfRange) as caught:
        e.fetch("short", 0, 0)
    assert caught.value.error_code == code("OFFSET_OUT_OF_RANGE")
    assert caught.value.log_start_offset == start
    assert [r.offset for r in read_partition(e, "short", 0)] == list(range(start, 12))
    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([("short", 0)])
        assert consumer.poll(timeout=10)[0].offset == start
    assert_serving(e)
