"""A topic deleted and created again under its name is another topic (new
id, config and partitions): an embedded producer that wrote to the old one
sends to the new one as a first send would, never by what it kept of the
old one (its leaders, their config, the partition count). A send to a
deleted topic is refused UNKNOWN_TOPIC_OR_PARTITION, as a Kafka producer
sees it, unless produce may create topics: then the topic comes back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import engine
from engine.client.partitioner import partition_for_key
from engine.client.transactional_producer import TransactionalProducer
from engine.clock import ManualClock
from engine.partition import Partition
from engine.protocol.kafka_code import KafkaCode
from engine.provenance import PRINCIPAL
from tests.engine.conftest import EngineFactory
from tests.engine.helpers_records import batch

TIMEOUT = 30.0
TOPIC = "audit"
MAX_MESSAGE_BYTES = 64 * 1024
BATCH_SIZE = 48 * 1024
"""Small records in full batches: the stamp (more than doubling each record)
takes a batch sized without it past max.message.bytes."""
RECORDS = 3000
KEY = next(k for k in (b"k%d" % i for i in range(100)) if partition_for_key(k, 4) == 3)
"""A key of partition 3 of 4 (murmur2): no partition of a one-partition topic."""


def send_each(producer: engine.Producer, values: list[bytes]) -> None:
    futures = [producer.send(TOPIC, value, partition=0) for value in values]
    producer.flush(TIMEOUT)
    for future in futures:
        future.result(TIMEOUT)  # a batch stamped past max.message.bytes fails here


def send_many(producer: engine.Producer, values: list[bytes]) -> None:
    producer.send_many(TOPIC, values, partition=0).result(TIMEOUT)


def send_in_transaction(producer: engine.Producer, values: list[bytes]) -> None:
    assert isinstance(producer, TransactionalProducer)
    producer.begin_transaction()
    send_each(producer, values)
    producer.commit_transaction(TIMEOUT)


SENDS: dict[str, tuple[dict[str, Any], Callable[[engine.Producer, list[bytes]], None]]] = {
    "send": ({}, send_each),
    "send_many": ({}, send_many),
    "transactional send": ({"transactional_id": "recreating"}, send_in_transaction),
}


def read_all(e: engine.Engine, partition: int = 0) -> list[engine.ConsumerRecord]:
    consumer = e.consumer(auto_offset_reset="earliest", isolation_level="read_committed")
    consumer.assign([(TOPIC, partition)])
    end = e.offsets(TOPIC, partition)[1]
    records: list[engine.ConsumerRecord] = []
    for _ in range(100):
        records += consumer.poll(timeout=1.0, max_records=10_000)
        if records and records[-1].offset >= end - 2:  # a commit marker ends the log
            break
    consumer.close()
    return records


@pytest.mark.parametrize("options, send", SENDS.values(), ids=SENDS.keys())
def test_a_producer_sends_to_the_topic_created_again_with_its_config(
    engine_factory: EngineFactory,
    options: dict[str, Any],
    send: Callable[[engine.Producer, list[bytes]], None],
) -> None:
    e = engine_factory()
    e.create_topic(TOPIC, 1)
    with e.producer(batch_size=BATCH_SIZE, **options) as producer:
        if isinstance(producer, TransactionalProducer):
            producer.init_transactions(TIMEOUT)
        send(producer, [b"old"])
        e.delete_topic(TOPIC)
        e.create_topic(
            TOPIC,
            1,
            {"tidelog.provenance": "stamp", "max.message.bytes": str(MAX_MESSAGE_BYTES)},
        )
        values = [b"new%06d" % i for i in range(RECORDS)]
        send(producer, values)  # batches sized for the new topic's stamps
    records = [r for r in read_all(e) if r.value != b"old"]
    assert [r.value for r in records] == values
    assert all(dict(r.headers)[PRINCIPAL] == b"User:ANONYMOUS" for r in records)


@pytest.mark.parametrize("api", ["send", "send_many"])
def test_keyed_sends_follow_a_topic_created_again_with_fewer_partitions(
    engine_factory: EngineFactory, api: str
) -> None:
    # The clock stands still: the partition count a producer keeps for a
    # second is still fresh when the topic is created again.
    e = engine_factory(clock=ManualClock())
    e.create_topic(TOPIC, 4)
    with e.producer() as producer:

        def send_keyed(value: bytes) -> int:
            if api == "send":
                return producer.send(TOPIC, value, key=KEY).result(TIMEOUT).partition
            (sent,) = producer.send_many(TOPIC, [value], [KEY]).result(TIMEOUT)
            return sent.partition

        assert send_keyed(b"old") == 3
        e.delete_topic(TOPIC)
        e.create_topic(TOPIC, 1)
        assert send_keyed(b"new") == 0
    assert [r.value for r in read_all(e)] == [b"new"]


def test_a_send_to_a_deleted_topic_is_refused_unknown_topic(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic(TOPIC, 1)
    with e.producer() as producer:
        producer.send(TOPIC, b"before", partition=0).result(TIMEOUT)
        e.delete_topic(TOPIC)
        for send in (
            lambda: producer.send(TOPIC, b"after", partition=0),
            lambda: producer.send_many(TOPIC, [b"after"], partition=0),
        ):
            with pytest.raises(engine.UnknownTopic) as refused:
                send()
            assert refused.value.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert e.list_topics() == []


def test_a_send_to_a_deleted_topic_creates_it_again_where_produce_may(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(auto_create_topics=True)
    e.create_topic(TOPIC, 1)
    with e.producer() as producer:
        producer.send(TOPIC, b"before", partition=0).result(TIMEOUT)
        old_id = e.topic_id(TOPIC)
        e.delete_topic(TOPIC)
        written = producer.send(TOPIC, b"after", partition=0).result(TIMEOUT)
    assert (written.partition, written.offset) == (0, 0)
    assert e.topic_id(TOPIC) != old_id
    assert [r.value for r in read_all(e)] == [b"after"]


@pytest.mark.parametrize("api", ["poll", "poll_async"])
def test_a_consumer_waiting_on_a_topic_stops_waiting_when_it_is_deleted(
    engine_factory: EngineFactory, api: str
) -> None:
    # The clock stands still: only the deletion can end the poll's wait.
    e = engine_factory(clock=ManualClock())
    e.create_topic(TOPIC, 1)
    consumer = e.consumer(auto_offset_reset="latest")
    consumer.assign([(TOPIC, 0)])
    assert consumer.poll() == []  # at the end: the next poll waits

    async def poll_across_the_deletion() -> None:
        if api == "poll":
            waiting = asyncio.ensure_future(asyncio.to_thread(consumer.poll, 3600.0))
        else:
            waiting = asyncio.ensure_future(consumer.poll_async(3600.0))
        while not (e._waiters.sync_waiters or e._waiters.async_waiters):
            await asyncio.sleep(0.01)
        e.delete_topic(TOPIC)
        with pytest.raises(engine.UnknownTopic):
            await asyncio.wait_for(waiting, TIMEOUT)

    asyncio.run(poll_across_the_deletion())


def test_a_retry_waiting_for_its_original_fails_when_the_topic_is_deleted(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic(TOPIC, 1)
    leader = e.partition(TOPIC, 0)
    outcomes: list[BaseException | None] = []
    e._waiters.when_durable(leader, 10, outcomes.append)  # an offset not yet durable
    e.delete_topic(TOPIC)
    assert [type(o) for o in outcomes] == [engine.UnknownTopic]
    e._waiters.when_durable(leader, 10, outcomes.append)  # a leader already deleted
    assert [type(o) for o in outcomes] == [engine.UnknownTopic] * 2


def test_a_read_committed_consumer_reads_a_topic_created_again_without_waiting(
    engine_factory: EngineFactory,
) -> None:
    """Its position past the new log's end is reset (earliest); the end it
    last saw belongs to the old log and is not waited past."""
    # The clock stands still: a poll that waits for the old end never ends.
    e = engine_factory(clock=ManualClock())
    e.create_topic(TOPIC, 1)
    consumer = e.consumer(auto_offset_reset="earliest", isolation_level="read_committed")
    consumer.assign([(TOPIC, 0)])
    with e.producer() as producer:
        for value in (b"old-0", b"old-1", b"old-2"):
            producer.send(TOPIC, value, partition=0).result(TIMEOUT)
        assert [r.value for r in consumer.poll(timeout=0.0)] == [b"old-0", b"old-1", b"old-2"]
        e.delete_topic(TOPIC)
        e.create_topic(TOPIC, 1)
        producer.send(TOPIC, b"new", partition=0).result(TIMEOUT)

    polled: list[engine.ConsumerRecord] = []
    polling = threading.Thread(target=lambda: polled.extend(consumer.poll(3600.0)), daemon=True)
    polling.start()
    polling.join(TIMEOUT)
    assert not polling.is_alive(), "the poll waited for the old log's end"
    assert [(r.offset, r.value) for r in polled] == [(0, b"new")]


@pytest.mark.parametrize("api", ["poll", "poll_async"])
def test_a_consumer_waits_on_the_partition_it_read_not_the_topic_created_again(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    """The topic is deleted and created again, with one record, between a
    poll's read (at the old log's end, 3) and its wait: the wait, on the
    partition read, ends at once, and the poll reads the new topic as a
    poll after the deletion would (its position past the new log's end is
    reset: earliest). A wait by name watched the new topic past 3, where
    its one record is not, for the whole poll."""
    # The clock stands still: only a wake-up can end the poll's wait.
    e = engine_factory(clock=ManualClock())
    e.create_topic(TOPIC, 1)
    consumer = e.consumer(auto_offset_reset="earliest")
    consumer.assign([(TOPIC, 0)])
    with e.producer() as producer:
        for value in (b"old-0", b"old-1", b"old-2"):
            producer.send(TOPIC, value, partition=0).result(TIMEOUT)
    assert [r.value for r in consumer.poll()] == [b"old-0", b"old-1", b"old-2"]

    recreated = threading.Event()

    def recreate_after(read: Any) -> Any:
        if read.next_offset == 3 and not recreated.is_set():
            recreated.set()
            e.delete_topic(TOPIC)
            e.create_topic(TOPIC, 1)
            e.produce(TOPIC, 0, batch([b"new"]))
        return read

    fetch_bounded = Partition.fetch_bounded
    fetch_async = Partition.fetch_async

    def fetch_bounded_then_recreate(self: Partition, *args: Any, **kwargs: Any) -> Any:
        return recreate_after(fetch_bounded(self, *args, **kwargs))

    async def fetch_async_then_recreate(self: Partition, *args: Any, **kwargs: Any) -> Any:
        return recreate_after(await fetch_async(self, *args, **kwargs))

    monkeypatch.setattr(Partition, "fetch_bounded", fetch_bounded_then_recreate)
    monkeypatch.setattr(Partition, "fetch_async", fetch_async_then_recreate)

    polled: list[engine.ConsumerRecord] = []
    if api == "poll":
        target = lambda: polled.extend(consumer.poll(3600.0))  # noqa: E731
    else:
        target = lambda: polled.extend(asyncio.run(consumer.poll_async(3600.0)))  # noqa: E731
    polling = threading.Thread(target=target, daemon=True)
    polling.start()
    polling.join(TIMEOUT)
    assert recreated.is_set()
    assert not polling.is_alive(), "the poll waited on the topic created again"
    assert [(r.offset, r.value) for r in polled] == [(0, b"new")]
