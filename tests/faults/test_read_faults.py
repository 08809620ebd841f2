"""A read of history the object store cannot answer now (a timeout, a 5xx,
a dropped connection: a transient ObjectStoreError) or refuses (denied
access: docs/design/0059) is answered as Kafka answers a partition whose
log dir failed: KAFKA_STORAGE_ERROR for that partition alone, the other
partitions of the same Fetch answered as usual, the connection kept.
Consumers retry it, and get every record once, in order, when the store
answers again. In the embedded API it is ``engine.StoreUnavailable``, from
fetches, polls, replays, snapshots and state rebuilds alike; either way it
is counted in ``tidelog_object_store_errors_total{source="read"}``. Damage
is another answer (CORRUPT_MESSAGE: test_damaged_block.py).

The faults come from the tests' fault store (tests/s3stream/faults.py)
around a local bucket; the log cache holds nothing, so every read goes to
the objects, each partition's in an object of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition as KafkaPartition
from kafka import TopicPartition as KafkaPythonPartition
from prometheus_client.parser import text_string_to_metric_families

import engine
import native
from engine.offset_lookup import MAX_TIMESTAMP
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.faults.two_objects import RECORDS, TIMEOUT, TOPIC, two_objects, values
from tests.s3stream.faults import FaultyStore
from tests.server.in_process import InProcessServer
from tests.server.server_closes import server_closes
from tests.server.test_confluent import make_consumer
from tests.server.test_kafka_python import consumer as kafka_python_consumer
from tests.server.wire import Wire, build, fetch_each

RETRIES_SEEN = 3
"""Fault answers a consumer retries past before the store heals."""


@dataclass
class Faulted:
    engine: engine.Engine
    store: FaultyStore
    keys: list[str]
    """The object holding each partition's records, by partition."""

    def fail_reads_of(self, partition: int) -> None:
        self.store.fail("get", prefix=self.keys[partition])


@pytest.fixture
def faulted(tmp_path: Path) -> Iterator[Faulted]:
    with two_objects(tmp_path) as (opened, store, keys):
        yield Faulted(opened, store, keys)


def read_errors(opened: engine.Engine) -> float:
    """``tidelog_object_store_errors_total{source="read"}`` as the engine shows it."""
    for family in text_string_to_metric_families(opened.metrics().text()):
        for sample in family.samples:
            if sample.name == "tidelog_object_store_errors_total" and sample.labels == {
                "source": "read"
            }:
                return sample.value
    raise AssertionError("no read errors counted")


def record_values(records: bytes) -> list[bytes | None]:
    return [record.value for record in native.decode_records(records)]


def test_the_embedded_api_raises_store_unavailable_for_the_faulted_partition_only(
    faulted: Faulted,
) -> None:
    opened = faulted.engine
    faulted.fail_reads_of(0)
    with pytest.raises(engine.StoreUnavailable) as raised:
        opened.fetch(TOPIC, 0, 0)
    error = raised.value
    assert (error.topic, error.partition) == (TOPIC, 0)
    assert error.error_code == KafkaCode.KAFKA_STORAGE_ERROR
    assert "injected fault" in str(error) and f"{TOPIC}-0" in str(error)
    with pytest.raises(engine.StoreUnavailable):
        asyncio.run(opened.fetch_async(TOPIC, 0, 0))
    with pytest.raises(engine.StoreUnavailable):  # a lookup by time reads the objects too
        opened.list_offset(TOPIC, 0, MAX_TIMESTAMP)
    consumer = opened.consumer(auto_offset_reset="earliest")
    consumer.assign([engine.TopicPartition(TOPIC, 0)])
    with pytest.raises(engine.StoreUnavailable):
        consumer.poll(timeout=5)
    assert faulted.store.failures >= 4
    assert read_errors(opened) >= 2  # the fetches' (a lookup's own reads count too)
    assert record_values_of(opened.fetch(TOPIC, 1, 0)) == values(1)
    faulted.store.heal()
    assert record_values_of(opened.fetch(TOPIC, 0, 0)) == values(0)
    assert [r.value for r in consumer.poll(timeout=5)] == values(0)  # from where it was


def record_values_of(fetched: engine.PartitionFetch) -> list[bytes | None]:
    return [value for batch in fetched.records for value in record_values(bytes(batch))]


def test_the_memory_apis_readers_raise_store_unavailable_and_go_on_once_healed(
    faulted: Faulted,
) -> None:
    """A state rebuild and a cut by time read objects as a fetch does: the
    same typed error, naming the partition, not the store's own; a replay
    is left where it was, and goes on once the store answers."""
    opened = faulted.engine
    now = opened.snapshot([TOPIC])
    replay = opened.replay(now)
    faulted.fail_reads_of(0)
    reads: list[Callable[[], object]] = [
        lambda: opened.state_at(TOPIC, 2**62),
        lambda: asyncio.run(opened.state_at_async(TOPIC, 2**62)),
        lambda: opened.snapshot([TOPIC], at=1),
        lambda: asyncio.run(opened.snapshot_async([TOPIC], at=1)),
        replay.poll,
    ]
    for read in reads:
        with pytest.raises(engine.StoreUnavailable) as raised:
            read()
        assert (raised.value.topic, raised.value.partition) == (TOPIC, 0)
    faulted.store.heal()
    replayed: list[bytes | None] = []
    while not replay.at_end():
        replayed += [record.value for record in replay.poll()]
    assert sorted(v for v in replayed if v is not None) == sorted(values(0) + values(1))
    assert sorted(opened.state_at(TOPIC, 2**62).values) == sorted(values(0) + values(1))


def deny_reads_of(faulted: Faulted, partition: int) -> None:
    """Reads of the partition's object refused as denied access is: no
    retry of the store's own gets past it, only the operator's fix."""
    faulted.fail_reads_of(partition)
    faulted.store.transient = False
    faulted.store.misconfigured = True


def test_a_read_the_store_refuses_is_store_unavailable_with_the_advice(
    faulted: Faulted, caplog: pytest.LogCaptureFixture
) -> None:
    """As Kafka answers a log dir that failed: KAFKA_STORAGE_ERROR for the
    partition, the error saying what to check, and nothing lost. The
    refusal is logged for the operator, once however often it is met."""
    deny_reads_of(faulted, 0)
    for _ in range(3):
        with pytest.raises(engine.StoreUnavailable) as raised:
            faulted.engine.fetch(TOPIC, 0, 0)
    error = raised.value
    assert (error.topic, error.partition, error.transient) == (TOPIC, 0, False)
    assert error.error_code == KafkaCode.KAFKA_STORAGE_ERROR
    assert "credentials" in str(error) and "injected fault" in str(error)
    assert read_errors(faulted.engine) == 3
    refusals = [r for r in caplog.records if "refuses reads" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelname == "ERROR"
    faulted.store.heal()
    assert record_values_of(faulted.engine.fetch(TOPIC, 0, 0)) == values(0)


def list_offsets_by_time(partitions: list[int]) -> object:
    return build(
        request_schema(ApiKey.LIST_OFFSETS, 7),
        replica_id=-1,
        isolation_level=0,
        topics=[
            {
                "name": TOPIC,
                "partitions": [
                    {"partition_index": p, "current_leader_epoch": -1, "timestamp": 0}
                    for p in partitions
                ],
            }
        ],
    )


def test_a_fetch_of_two_partitions_answers_the_faulted_one_storage_error_on_a_kept_connection(
    faulted: Faulted,
) -> None:
    server = InProcessServer(faulted.engine)
    try:
        with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            faulted.fail_reads_of(0)
            fetch = fetch_each(12, [(TOPIC, 0, 0), (TOPIC, 1, 0)])
            faulted_answer, healthy = [
                p for t in wire.request(fetch).responses for p in t.partitions
            ]
            assert (faulted_answer.partition_index, healthy.partition_index) == (0, 1)
            assert faulted_answer.error_code == KafkaCode.KAFKA_STORAGE_ERROR
            assert not faulted_answer.records
            assert healthy.error_code == KafkaCode.NONE
            assert record_values(healthy.records) == values(1)

            # ListOffsets by time reads the objects: the same answer, per partition.
            (topic,) = wire.request(list_offsets_by_time([0, 1])).topics
            by_time = {p.partition_index: p for p in topic.partitions}
            assert by_time[0].error_code == KafkaCode.KAFKA_STORAGE_ERROR
            assert (by_time[1].error_code, by_time[1].offset) == (KafkaCode.NONE, 0)

            # The same connection, once the store answers: the records.
            faulted.store.heal()
            answer, _ = [p for t in wire.request(fetch).responses for p in t.partitions]
            assert answer.error_code == KafkaCode.NONE
            assert record_values(answer.records) == values(0)
            assert not wire.closed_by_server(timeout=0.2)
        assert server.server.stats.connections == 1
    finally:
        server.stop()


def test_a_read_the_store_refuses_is_storage_error_on_a_kept_connection(
    faulted: Faulted,
) -> None:
    """Denied access is answered as a timeout is, per partition: closing
    the connection would fail every other partition of the request, and
    the client would only connect again and ask again."""
    server = InProcessServer(faulted.engine)
    try:
        with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
            deny_reads_of(faulted, 0)
            fetch = fetch_each(12, [(TOPIC, 0, 0), (TOPIC, 1, 0)])
            for _ in range(2):  # asked again on the same connection: answered again
                refused, healthy = [p for t in wire.request(fetch).responses for p in t.partitions]
                assert refused.error_code == KafkaCode.KAFKA_STORAGE_ERROR
                assert (healthy.error_code, record_values(healthy.records)) == (
                    KafkaCode.NONE,
                    values(1),
                )
            (topic,) = wire.request(list_offsets_by_time([0, 1])).topics
            by_time = {p.partition_index: p.error_code for p in topic.partitions}
            assert by_time == {0: KafkaCode.KAFKA_STORAGE_ERROR, 1: KafkaCode.NONE}
            faulted.store.heal()
            answer, _ = [p for t in wire.request(fetch).responses for p in t.partitions]
            assert record_values(answer.records) == values(0)
            assert not wire.closed_by_server(timeout=0.2)
        assert server.server.stats.connections == 1
    finally:
        server.stop()


def test_a_confluent_consumer_keeps_its_connection_and_reads_every_record_once_healed(
    faulted: Faulted,
) -> None:
    server = InProcessServer(faulted.engine)
    consumer = make_consumer(server.bootstrap, **{"fetch.error.backoff.ms": 50})
    try:
        faulted.fail_reads_of(0)
        consumer.assign([KafkaPartition(TOPIC, 0, 0), KafkaPartition(TOPIC, 1, 0)])

        def poll(received: dict[int, list[bytes]]) -> None:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                received[message.partition()].append(message.value())

        read_through_the_fault(faulted, server, poll)
    finally:
        consumer.close()
        server.stop()


def read_through_the_fault(
    faulted: Faulted, server: InProcessServer, poll: Callable[[dict[int, list[bytes]]], None]
) -> None:
    """Polls (``poll`` adds what it gets to the values by partition) while
    partition 0's reads fail: the healthy partition is read meanwhile, and
    the faulted one retried without the server closing any connection (a
    client may still open one of its own accord: librdkafka reconnects its
    bootstrap connection for a metadata refresh now and then, so the count
    of connections is not the measure); then heals the store, after which
    every record arrives, once, in order."""
    received: dict[int, list[bytes]] = {0: [], 1: []}
    deadline = time.monotonic() + TIMEOUT

    def step() -> None:
        assert time.monotonic() < deadline, received
        poll(received)

    with server_closes() as closes:
        while len(received[1]) < RECORDS or faulted.store.failures < 1:
            step()
        retried_from = faulted.store.failures
        while faulted.store.failures < retried_from + RETRIES_SEEN:
            step()
        assert received[0] == []
        assert closes.closes == []
        faulted.store.heal()
        while len(received[0]) < RECORDS:
            step()
        for _ in range(5):  # nothing more arrives: no record twice
            step()
    assert received == {0: values(0), 1: values(1)}
    assert closes.closes == []


@pytest.mark.parametrize("fault", ["transient", "denied"])
def test_a_kafka_python_consumer_retries_from_where_it_was_and_reads_every_record_once(
    faulted: Faulted, fault: str
) -> None:
    """kafka-python takes KAFKA_STORAGE_ERROR as librdkafka does: it asks
    for metadata and fetches again from the same offset, whether the store
    timed out or refused, on the connections it has, and keeps the healthy
    partition's records coming."""
    server = InProcessServer(faulted.engine)
    consumer = kafka_python_consumer(server.bootstrap, retry_backoff_ms=50)
    try:
        if fault == "denied":
            deny_reads_of(faulted, 0)
        else:
            faulted.fail_reads_of(0)
        consumer.assign([KafkaPythonPartition(TOPIC, 0), KafkaPythonPartition(TOPIC, 1)])

        def poll(received: dict[int, list[bytes]]) -> None:
            for records in consumer.poll(timeout_ms=100).values():
                for record in records:
                    received[record.partition].append(record.value)

        read_through_the_fault(faulted, server, poll)
    finally:
        consumer.close()
        server.stop()
