"""confluent-kafka (librdkafka) against ``tidelog serve``.

Records go in and come back exactly as sent (keys, values, headers,
timestamps, offsets) for every codec librdkafka has; the idempotent
producer keeps order without duplicates; LogAppendTime topics stamp broker
time; offsets are found by timestamp. The AdminClient's topic, partition,
config, cluster, offset and record-deletion calls get Kafka's answers and
errors. A topic of 100 partitions, records at the size limit, and a
restarted server (with and without a producer that lives through it) keep
every record.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from engine.config import CONFIG_DEFS
from tests.server.conftest import ServerProcess, quiet_librdkafka

TIMEOUT = 30.0
"""Seconds any one client call may take before the test fails."""

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
"""librdkafka's codec names and their ids in a batch's attributes."""
BASE_TIMESTAMP = 1_600_000_000_000
DEFAULT_MAX_MESSAGE_BYTES = 1048588


# -- clients ---------------------------------------------------------------------------------


def make_producer(bootstrap: str, **conf: Any) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "delivery.timeout.ms": 60_000, **quiet_librdkafka()} | conf
    )


def make_consumer(bootstrap: str, **conf: Any) -> Consumer:
    """A consumer for assign(): the server has no group coordinator, so
    nothing is committed."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tidelog-tests",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **quiet_librdkafka(),
        }
        | conf
    )


def make_admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})


def consume_exactly(
    bootstrap: str,
    partitions: Iterable[TopicPartition],
    count: int | None,
    *,
    timeout: float = TIMEOUT,
    **conf: Any,
) -> list[Message]:
    """Assigns the partitions (at their given offsets) and reads until every
    one is at its end. With a count, fails unless exactly that many records
    came back; with None, returns whatever was there."""
    assignment = list(partitions)
    consumer = make_consumer(bootstrap, **{"enable.partition.eof": True} | conf)
    messages: list[Message] = []
    at_end: set[tuple[str, int]] = set()
    wanted = {(tp.topic, tp.partition) for tp in assignment}
    try:
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if at_end == wanted and (count is None or len(messages) >= count):
                break
            message = consumer.poll(0.2)
            if message is None:
                continue
            where = (message.topic(), message.partition())
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                at_end.add(where)
                continue
            at_end.discard(where)
            messages.append(message)
        else:
            missing = sorted(wanted - at_end)
            pytest.fail(f"{len(messages)} records after {timeout} s; not at the end of {missing}")
    finally:
        consumer.close()
    if count is not None:
        assert len(messages) == count
    return messages


def all_partitions(topic: str, count: int, offset: int = OFFSET_BEGINNING) -> list[TopicPartition]:
    return [TopicPartition(topic, p, offset) for p in range(count)]


def create_topic(
    admin: AdminClient, topic: str, partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, partitions, 1, config=config or {})], request_timeout=TIMEOUT
    )
    futures[topic].result(TIMEOUT)


def describe_topic_configs(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    result: dict[str, ConfigEntry] = admin.describe_configs([resource])[resource].result(TIMEOUT)
    return result


def kafka_error(future: Any) -> KafkaError:
    """The KafkaError a failed admin future carries."""
    with pytest.raises(KafkaException) as raised:
        future.result(TIMEOUT)
    error: KafkaError = raised.value.args[0]
    return error


def stored_batch_codecs(bootstrap: str, topic: str, partition: int) -> list[int]:
    """The compression of each batch the server returns from offset 0, read
    from a Fetch (v4) sent by hand: batches come back as the producer sent
    them, so this shows what librdkafka wrote."""
    host, port = bootstrap.rsplit(":", 1)

    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()

    request = struct.pack(">hhi", 1, 4, 1) + string("raw-fetch")
    request += struct.pack(">iiiibi", -1, 0, 0, 64 << 20, 0, 1) + string(topic)
    request += struct.pack(">iiqi", 1, partition, 0, 64 << 20)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        stream = sock.makefile("rb")
        (size,) = struct.unpack(">i", stream.read(4))
        response = stream.read(size)
    # correlation id, throttle time, one topic: name, one partition
    position = 12
    (name_size,) = struct.unpack_from(">h", response, position)
    position += 2 + name_size + 4
    _, error, _, _, aborted = struct.unpack_from(">ihqqi", response, position)
    assert error == 0
    position += 26 + max(aborted, 0) * 16
    (length,) = struct.unpack_from(">i", response, position)
    records = response[position + 4 : position + 4 + length]
    codecs = []
    position = 0
    while position + 12 <= len(records):
        (batch_length,) = struct.unpack_from(">i", records, position + 8)
        if position + 12 + batch_length > len(records):
            break  # a partial batch at the end of a fetch
        (attributes,) = struct.unpack_from(">h", records, position + 21)
        codecs.append(attributes & 0x7)
        position += 12 + batch_length
    return codecs


# -- records ---------------------------------------------------------------------------------


class Sent(NamedTuple):
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int


class Delivery(NamedTuple):
    error: KafkaError | None
    partition: int
    offset: int
    value: bytes | None
    timestamp: tuple[int, int]


def varied_records(partitions: int, count: int) -> list[Sent]:
    """Null and empty keys and values, binary bytes, repeated header keys and
    null header values, and timestamps that go backwards now and then."""
    keys: list[bytes | None] = [None, b"", b"key", b"\x00\n\xff"]
    header_sets: list[list[tuple[str, bytes | None]]] = [
        [],
        [("h", b"1"), ("h", b"2"), ("h", None)],
        [("empty", b""), ("null", None)],
        [("bin", bytes(range(256)))],
    ]
    records = []
    for i in range(count):
        value: bytes | None
        if i % 7 == 0:
            value = None
        elif i % 7 == 1:
            value = b""
        else:
            value = f"value {i} ".encode() * (i % 40) + bytes([i % 256]) + b"\n"
        key = keys[i % len(keys)]
        if key is not None and i % 3 == 0:
            key += str(i).encode()
        timestamp = BASE_TIMESTAMP + i * 1000 - (5000 if i % 5 == 0 else 0)
        records.append(Sent(i % partitions, key, value, header_sets[i % 4], timestamp))
    return records


def produce_all(
    producer: Producer, topic: str, records: Iterable[Sent], *, check: bool = True
) -> list[Delivery]:
    """Sends each record to its partition and returns every delivery report,
    in the order the reports came; with ``check``, fails unless every
    record was delivered."""
    deliveries: list[Delivery] = []

    def report(error: KafkaError | None, message: Message) -> None:
        deliveries.append(
            Delivery(
                error, message.partition(), message.offset(), message.value(), message.timestamp()
            )
        )

    sent = 0
    for record in records:
        producer.produce(
            topic,
            key=record.key,
            value=record.value,
            partition=record.partition,
            headers=record.headers,
            timestamp=record.timestamp,
            on_delivery=report,
        )
        sent += 1
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0, "records still queued after flush"
    assert len(deliveries) == sent
    if check:
        assert [d.error for d in deliveries if d.error is not None] == []
    return deliveries


def produce_each(producer: Producer, topic: str, records: Iterable[Sent]) -> list[Delivery]:
    """Sends the records one batch each (a broker accepts or rejects a
    whole batch), waiting for each before the next."""
    return [produce_all(producer, topic, [record], check=False)[0] for record in records]


def received(message: Message) -> Sent:
    return Sent(
        message.partition(),
        message.key(),
        message.value(),
        list(message.headers() or []),
        message.timestamp()[1],
    )


def by_partition(messages: Iterable[Message]) -> dict[int, list[Message]]:
    grouped: dict[int, list[Message]] = defaultdict(list)
    for message in messages:
        grouped[message.partition()].append(message)
    return grouped


def assert_dense_from(messages: dict[int, list[Message]], start: int = 0) -> None:
    for partition, listed in messages.items():
        offsets = [m.offset() for m in listed]
        assert offsets == list(range(start, start + len(listed))), partition


# -- produce and consume ---------------------------------------------------------------------


@pytest.mark.parametrize("codec", list(CODECS))
def test_records_round_trip_exactly_with_each_codec(
    kafka_server: ServerProcess, topic: str, codec: str
) -> None:
    create_topic(make_admin(kafka_server.bootstrap), topic, partitions=3)
    records = varied_records(3, 300)
    producer = make_producer(kafka_server.bootstrap, **{"compression.type": codec, "linger.ms": 20})
    deliveries = produce_all(producer, topic, records)
    for partition in range(3):
        offsets = sorted(d.offset for d in deliveries if d.partition == partition)
        assert offsets == list(range(100)), f"delivery offsets of partition {partition}"

    messages = consume_exactly(kafka_server.bootstrap, all_partitions(topic, 3), len(records))
    grouped = by_partition(messages)
    assert_dense_from(grouped)
    for partition in range(3):
        assert [received(m) for m in grouped[partition]] == [
            r for r in records if r.partition == partition
        ]
    assert {m.timestamp()[0] for m in messages} == {TIMESTAMP_CREATE_TIME}
    # librdkafka sends a batch uncompressed when compressing does not shrink
    # it (a lone short record, say); the others carry the codec.
    stored = stored_batch_codecs(kafka_server.bootstrap, topic, 0)
    assert CODECS[codec] in stored
    assert set(stored) <= {CODECS["none"], CODECS[codec]}


def test_idempotent_producer_writes_each_record_once_in_order(
    kafka_server: ServerProcess, topic: str
) -> None:
    partitions = 4
    create_topic(make_admin(kafka_server.bootstrap), topic, partitions=partitions)
    producer = make_producer(
        kafka_server.bootstrap,
        **{
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 50,
            "max.in.flight.requests.per.connection": 5,
        },
    )
    records = [
        Sent(i % partitions, str(i).encode(), f"record {i}".encode(), [], BASE_TIMESTAMP + i)
        for i in range(4000)
    ]
    produce_all(producer, topic, records)

    messages = consume_exactly(
        kafka_server.bootstrap, all_partitions(topic, partitions), len(records)
    )
    grouped = by_partition(messages)
    assert_dense_from(grouped)
    for partition in range(partitions):
        assert [m.value() for m in grouped[partition]] == [
            r.value for r in records if r.partition == partition
        ]


def test_log_append_time_topic_returns_broker_timestamps(
    kafka_server: ServerProcess, topic: str
) -> None:
    create_topic(
        make_admin(kafka_server.bootstrap),
        topic,
        config={"message.timestamp.type": "LogAppendTime"},
    )
    producer = make_producer(kafka_server.bootstrap, **{"enable.idempotence": True})
    records = [Sent(0, None, f"v{i}".encode(), [], BASE_TIMESTAMP + i) for i in range(20)]
    before = int(time.time() * 1000)
    deliveries = produce_all(producer, topic, records)
    after = int(time.time() * 1000)

    for delivery in deliveries:
        kind, stamp = delivery.timestamp
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before <= stamp <= after
    messages = consume_exactly(kafka_server.bootstrap, all_partitions(topic, 1), len(records))
    assert [m.value() for m in messages] == [r.value for r in records]
    for message in messages:
        kind, stamp = message.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before <= stamp <= after


def test_offsets_for_times_then_consume_from_there(kafka_server: ServerProcess, topic: str) -> None:
    create_topic(make_admin(kafka_server.bootstrap), topic, partitions=2)
    records = [Sent(i % 2, None, f"v{i}".encode(), [], BASE_TIMESTAMP + i * 100) for i in range(40)]
    produce_all(make_producer(kafka_server.bootstrap), topic, records)
    consumer = make_consumer(kafka_server.bootstrap)
    try:
        # Partition 0 holds even i (offset i/2), partition 1 odd i (offset (i-1)/2).
        found = consumer.offsets_for_times(
            [
                TopicPartition(topic, 0, BASE_TIMESTAMP + 1050),  # first at or after: i=12
                TopicPartition(topic, 1, BASE_TIMESTAMP + 100),  # exactly i=1
            ],
            timeout=TIMEOUT,
        )
        past_the_end = consumer.offsets_for_times(
            [TopicPartition(topic, 0, BASE_TIMESTAMP + 10**6)], timeout=TIMEOUT
        )
    finally:
        consumer.close()
    assert [(tp.partition, tp.offset, tp.error) for tp in found] == [(0, 6, None), (1, 0, None)]
    assert past_the_end[0].offset == -1  # no record that late: the end (OFFSET_END)

    messages = consume_exactly(kafka_server.bootstrap, found, 20 - 6 + 20)
    grouped = by_partition(messages)
    assert [m.value() for m in grouped[0]] == [f"v{i}".encode() for i in range(12, 40, 2)]
    assert [m.value() for m in grouped[1]] == [f"v{i}".encode() for i in range(1, 40, 2)]


# -- admin -----------------------------------------------------------------------------------


def topic_partitions(bootstrap: str, topic: str) -> int | None:
    """The partition count Metadata reports, or None if the topic is absent."""
    metadata = make_admin(bootstrap).list_topics(timeout=TIMEOUT)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        return None
    return len(described.partitions)


def test_admin_creates_and_deletes_a_topic(kafka_server: ServerProcess, topic: str) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic, partitions=3)
    assert topic_partitions(kafka_server.bootstrap, topic) == 3

    produce_all(
        make_producer(kafka_server.bootstrap), topic, [Sent(0, None, b"v", [], BASE_TIMESTAMP)]
    )

    admin.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(TIMEOUT)
    assert topic not in admin.list_topics(timeout=TIMEOUT).topics
    # The name is free again, and the new topic starts empty.
    create_topic(admin, topic, partitions=2)
    assert topic_partitions(kafka_server.bootstrap, topic) == 2
    assert consume_exactly(kafka_server.bootstrap, all_partitions(topic, 2), 0) == []


def test_admin_create_errors(kafka_server: ServerProcess, topic: str) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic)

    def create(name: str, replication: int = 1) -> KafkaError:
        futures = admin.create_topics([NewTopic(name, 1, replication)], request_timeout=TIMEOUT)
        return kafka_error(futures[name])

    assert create(topic).code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert create("bad/name").code() == KafkaError.TOPIC_EXCEPTION
    assert create("x" * 250).code() == KafkaError.TOPIC_EXCEPTION
    assert create(f"{topic}-rf3", replication=3).code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic_partitions(kafka_server.bootstrap, f"{topic}-rf3") is None


def test_admin_refuses_a_name_colliding_by_dot_and_underscore(
    kafka_server: ServerProcess, topic: str
) -> None:
    """Kafka's controller answers INVALID_TOPIC_EXCEPTION for a topic whose
    name differs from an existing one's only by '.' against '_', and so
    does a validate_only request."""
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, f"{topic}_agent")
    for validate_only in (True, False):
        name = f"{topic}.agent"
        futures = admin.create_topics(
            [NewTopic(name, 1)], request_timeout=TIMEOUT, validate_only=validate_only
        )
        assert kafka_error(futures[name]).code() == KafkaError.TOPIC_EXCEPTION
    assert topic_partitions(kafka_server.bootstrap, f"{topic}.agent") is None


def test_admin_delete_unknown_topic(kafka_server: ServerProcess, topic: str) -> None:
    admin = make_admin(kafka_server.bootstrap)
    futures = admin.delete_topics([topic], request_timeout=TIMEOUT)
    assert kafka_error(futures[topic]).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_create_partitions(kafka_server: ServerProcess, topic: str) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic, partitions=1)
    futures = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT)
    futures[topic].result(TIMEOUT)
    assert topic_partitions(kafka_server.bootstrap, topic) == 4

    fewer = admin.create_partitions([NewPartitions(topic, 2)], request_timeout=TIMEOUT)
    assert kafka_error(fewer[topic]).code() == KafkaError.INVALID_PARTITIONS

    records = [Sent(p, None, f"p{p}".encode(), [], BASE_TIMESTAMP) for p in range(4)]
    deliveries = produce_all(make_producer(kafka_server.bootstrap), topic, records)
    assert sorted((d.partition, d.offset, d.error) for d in deliveries) == [
        (p, 0, None) for p in range(4)
    ]
    messages = consume_exactly(kafka_server.bootstrap, all_partitions(topic, 4), 4)
    assert sorted((m.partition(), m.value()) for m in messages) == [
        (p, f"p{p}".encode()) for p in range(4)
    ]


def test_describe_configs_lists_every_topic_config_with_its_source(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic, config={"retention.ms": "3600000", "cleanup.policy": "compact"})
    described = describe_topic_configs(admin, topic)

    assert set(described) == set(CONFIG_DEFS)
    overridden = {"retention.ms": "3600000", "cleanup.policy": "compact"}
    for name, entry in described.items():
        if name in overridden:
            assert entry.value == overridden[name]
            assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            assert not entry.is_default
        else:
            assert entry.value == CONFIG_DEFS[name].default, name
            assert entry.source == ConfigSource.DEFAULT_CONFIG.value, name
            assert entry.is_default, name


def test_describe_configs_of_an_unknown_topic_fails(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    error = kafka_error(admin.describe_configs([resource])[resource])
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_alter_configs_replaces_the_overrides_and_is_enforced(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic, config={"retention.ms": "3600000"})
    resource = ConfigResource(
        ResourceType.TOPIC, topic, set_config={"max.message.bytes": "1000", "segment.ms": "60000"}
    )
    admin.alter_configs([resource], request_timeout=TIMEOUT)[resource].result(TIMEOUT)

    described = describe_topic_configs(admin, topic)
    assert described["max.message.bytes"].value == "1000"
    assert described["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert described["segment.ms"].value == "60000"
    # AlterConfigs replaces the whole set: retention.ms is back to its default.
    assert described["retention.ms"].value == CONFIG_DEFS["retention.ms"].default
    assert described["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    deliveries = produce_each(
        make_producer(kafka_server.bootstrap),
        topic,
        [
            Sent(0, None, b"x" * 5000, [], BASE_TIMESTAMP),
            Sent(0, None, b"small", [], BASE_TIMESTAMP),
        ],
    )
    errors = {d.value: d.error.code() if d.error else None for d in deliveries}
    assert errors == {b"x" * 5000: KafkaError.MSG_SIZE_TOO_LARGE, b"small": None}

    invalid = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "soon"})
    error = kafka_error(admin.alter_configs([invalid], request_timeout=TIMEOUT)[invalid])
    assert error.code() == KafkaError.INVALID_CONFIG
    assert describe_topic_configs(admin, topic)["max.message.bytes"].value == "1000"


def test_incremental_alter_configs_set_delete_append_subtract(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic, config={"retention.ms": "3600000"})

    def alter(operation: AlterConfigOpType, name: str, value: str | None) -> ConfigEntry:
        entry = ConfigEntry(name, value, incremental_operation=operation)
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
        futures = admin.incremental_alter_configs([resource], request_timeout=TIMEOUT)
        futures[resource].result(TIMEOUT)
        return describe_topic_configs(admin, topic)[name]

    assert alter(AlterConfigOpType.SET, "cleanup.policy", "compact").value == "compact"
    assert alter(AlterConfigOpType.APPEND, "cleanup.policy", "delete").value == "compact,delete"
    assert alter(AlterConfigOpType.APPEND, "cleanup.policy", "delete").value == "compact,delete"
    assert alter(AlterConfigOpType.SUBTRACT, "cleanup.policy", "compact").value == "delete"
    restored = alter(AlterConfigOpType.DELETE, "cleanup.policy", None)
    assert (restored.value, restored.source) == ("delete", ConfigSource.DEFAULT_CONFIG.value)
    # Incremental changes leave other overrides alone.
    assert describe_topic_configs(admin, topic)["retention.ms"].value == "3600000"

    alter(AlterConfigOpType.SET, "cleanup.policy", "compact")
    # A compacted topic takes only keyed records: the new policy is enforced.
    deliveries = produce_each(
        make_producer(kafka_server.bootstrap),
        topic,
        [Sent(0, None, b"no key", [], BASE_TIMESTAMP), Sent(0, b"k", b"keyed", [], BASE_TIMESTAMP)],
    )
    errors = {d.value: d.error.code() if d.error else None for d in deliveries}
    assert errors == {b"no key": KafkaError.INVALID_RECORD, b"keyed": None}

    not_a_list = ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[not_a_list])
    futures = admin.incremental_alter_configs([resource], request_timeout=TIMEOUT)
    assert kafka_error(futures[resource]).code() == KafkaError.INVALID_CONFIG


def test_describe_cluster_names_this_broker(kafka_server: ServerProcess) -> None:
    admin = make_admin(kafka_server.bootstrap)
    described = admin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT)
    assert len(described.cluster_id) == 22
    assert [(n.id, n.host, n.port) for n in described.nodes] == [
        (1, "127.0.0.1", kafka_server.port)
    ]
    assert described.controller.id == 1


def test_admin_list_offsets_earliest_latest_and_by_timestamp(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic)
    records = [Sent(0, None, f"v{i}".encode(), [], BASE_TIMESTAMP + i * 10) for i in range(10)]
    produce_all(make_producer(kafka_server.bootstrap), topic, records)

    def offset(spec: OffsetSpec) -> int:
        where = TopicPartition(topic, 0)
        result = admin.list_offsets({where: spec}, request_timeout=TIMEOUT)[where].result(TIMEOUT)
        found: int = result.offset
        return found

    assert offset(OffsetSpec.earliest()) == 0
    assert offset(OffsetSpec.latest()) == 10
    assert offset(OffsetSpec.for_timestamp(BASE_TIMESTAMP + 35)) == 4
    assert offset(OffsetSpec.for_timestamp(BASE_TIMESTAMP + 90)) == 9
    assert offset(OffsetSpec.for_timestamp(BASE_TIMESTAMP + 91)) == -1

    where = TopicPartition(topic, 0, 3)
    admin.delete_records([where], request_timeout=TIMEOUT)[where].result(TIMEOUT)
    assert offset(OffsetSpec.earliest()) == 3


def test_delete_records_then_consume_from_zero_resets_to_log_start(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    create_topic(admin, topic, partitions=2)
    records = [Sent(i % 2, None, f"v{i}".encode(), [], BASE_TIMESTAMP + i) for i in range(40)]
    produce_all(make_producer(kafka_server.bootstrap), topic, records)

    cut = [TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 20)]
    futures = admin.delete_records(cut, request_timeout=TIMEOUT)
    low = {tp.partition: futures[tp].result(TIMEOUT).low_watermark for tp in cut}
    assert low == {0: 7, 1: 20}

    consumer = make_consumer(kafka_server.bootstrap)
    try:
        watermarks = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
    finally:
        consumer.close()
    assert watermarks == (7, 20)

    messages = consume_exactly(kafka_server.bootstrap, all_partitions(topic, 2, offset=0), 13)
    grouped = by_partition(messages)
    assert [m.offset() for m in grouped[0]] == list(range(7, 20))
    assert [m.value() for m in grouped[0]] == [f"v{i}".encode() for i in range(14, 40, 2)]
    assert grouped[1] == []

    past_the_end = TopicPartition(topic, 1, 21)
    future = admin.delete_records([past_the_end], request_timeout=TIMEOUT)[past_the_end]
    assert kafka_error(future).code() == KafkaError.OFFSET_OUT_OF_RANGE


def test_a_hundred_partitions(kafka_server: ServerProcess, topic: str) -> None:
    partitions = 100
    create_topic(make_admin(kafka_server.bootstrap), topic, partitions=partitions)
    assert topic_partitions(kafka_server.bootstrap, topic) == partitions
    records = [
        Sent(i % partitions, str(i).encode(), f"v{i}".encode(), [], BASE_TIMESTAMP + i)
        for i in range(partitions * 3)
    ]
    produce_all(make_producer(kafka_server.bootstrap, **{"linger.ms": 5}), topic, records)
    messages = consume_exactly(
        kafka_server.bootstrap, all_partitions(topic, partitions), len(records)
    )
    grouped = by_partition(messages)
    assert_dense_from(grouped)
    assert {p: [received(m) for m in listed] for p, listed in grouped.items()} == {
        p: [r for r in records if r.partition == p] for p in range(partitions)
    }


# -- the size limit ----------------------------------------------------------------------------


def varint_size(value: int) -> int:
    """Bytes of a zigzag varint, as record fields are encoded."""
    zigzag = (value << 1) ^ (value >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def single_record_batch_size(value_size: int) -> int:
    """Bytes of a v2 batch holding one uncompressed record with no key and
    no headers, counting the 12-byte offset and length prefix, as Kafka
    compares with max.message.bytes."""
    body = 1 + 1 + 1 + varint_size(-1) + varint_size(value_size) + value_size + 1
    return 61 + varint_size(body) + body


def value_size_for_batch(batch_size: int) -> int:
    size = batch_size - 61
    while single_record_batch_size(size) > batch_size:
        size -= 1
    assert single_record_batch_size(size) == batch_size
    return size


def test_records_at_the_size_limit(kafka_server: ServerProcess, topic: str) -> None:
    create_topic(make_admin(kafka_server.bootstrap), topic)
    producer = make_producer(
        kafka_server.bootstrap,
        **{"message.max.bytes": 4_000_000, "batch.size": 4_000_000, "compression.type": "none"},
    )
    at_limit = value_size_for_batch(DEFAULT_MAX_MESSAGE_BYTES)
    fits = bytes(i % 251 for i in range(at_limit))
    over = b"o" * (at_limit + 1)
    sizes = [Sent(0, None, value, [], BASE_TIMESTAMP) for value in (fits, over, b"after")]
    results = produce_each(producer, topic, sizes)
    assert [r.error.code() if r.error else None for r in results] == [
        None,
        KafkaError.MSG_SIZE_TOO_LARGE,
        None,
    ]
    assert (results[0].offset, results[2].offset) == (0, 1)
    messages = consume_exactly(
        kafka_server.bootstrap, all_partitions(topic, 1), 2, **{"fetch.max.bytes": 2_000_000}
    )
    assert [m.value() for m in messages] == [fits, b"after"]


# -- restarts ------------------------------------------------------------------------------


def test_restart_between_produce_and_consume_keeps_everything(
    own_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(own_server.bootstrap)
    create_topic(admin, topic, partitions=3, config={"retention.ms": "7200000"})
    records = varied_records(3, 90)
    produce_all(make_producer(own_server.bootstrap, **{"compression.type": "lz4"}), topic, records)

    own_server.restart()

    messages = consume_exactly(own_server.bootstrap, all_partitions(topic, 3), len(records))
    grouped = by_partition(messages)
    assert_dense_from(grouped)
    for partition in range(3):
        assert [received(m) for m in grouped[partition]] == [
            r for r in records if r.partition == partition
        ]
    described = describe_topic_configs(make_admin(own_server.bootstrap), topic)
    assert (described["retention.ms"].value, described["retention.ms"].source) == (
        "7200000",
        ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
    )
    more = produce_all(
        make_producer(own_server.bootstrap), topic, [Sent(1, None, b"next", [], BASE_TIMESTAMP)]
    )
    assert (more[0].error, more[0].offset) == (None, 30)


class SteadyProducer:
    """Produces unique values to a topic's partitions from a thread until
    stopped, recording every delivery report."""

    pause_every = 10
    """A millisecond's pause after this many records: a steady stream, not a flood."""

    def __init__(self, producer: Producer, topic: str, partitions: int) -> None:
        self.producer = producer
        self.topic = topic
        self.partitions = partitions
        self.deliveries: list[Delivery] = []
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, error: KafkaError | None, message: Message) -> None:
        self.deliveries.append(
            Delivery(
                error, message.partition(), message.offset(), message.value(), message.timestamp()
            )
        )

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.producer.produce(
                    self.topic,
                    value=f"{self.sent:08d}".encode(),
                    partition=self.sent % self.partitions,
                    on_delivery=self._report,
                )
            except BufferError:
                self.producer.poll(0.05)
                continue
            self.sent += 1
            self.producer.poll(0)
            if self.sent % self.pause_every == 0:
                time.sleep(0.001)

    def delivered(self, count: int, timeout: float = TIMEOUT) -> None:
        """Waits until at least ``count`` records were reported delivered."""
        deadline = time.monotonic() + timeout
        while self.ok_count() < count:
            assert time.monotonic() < deadline, f"{self.ok_count()} of {count} delivered"
            assert self.thread.is_alive()
            time.sleep(0.01)

    def ok_count(self) -> int:
        return sum(1 for d in list(self.deliveries) if d.error is None)

    def __enter__(self) -> SteadyProducer:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.stopping.set()
        self.thread.join(TIMEOUT)
        if kind is None:  # else the test has failed already: that error is the one to see
            assert self.producer.flush(90) == 0, "records still queued after flush"


def check_delivered_once_in_order(
    bootstrap: str, topic: str, partitions: int, deliveries: list[Delivery]
) -> list[Message]:
    """Every delivered record is in the log once, at the offset its report
    gave, in the order sent; failed ones are there at most once."""
    messages = consume_exactly(bootstrap, all_partitions(topic, partitions), None)
    values = [m.value() for m in messages]
    assert len(values) == len(set(values)), "a record is in the log twice"
    at = {(m.partition(), m.offset()): m.value() for m in messages}
    for delivery in deliveries:
        if delivery.error is None:
            assert at.get((delivery.partition, delivery.offset)) == delivery.value
    delivered = {d.value for d in deliveries if d.error is None}
    failed = {d.value for d in deliveries if d.error is not None}
    assert set(values) <= delivered | failed
    for partition, listed in by_partition(messages).items():
        assert_dense_from({partition: listed})
        sent_order = [m.value() for m in listed]
        assert sent_order == sorted(sent_order), f"partition {partition} out of order"
    return messages


def test_restart_with_a_producer_still_running(own_server: ServerProcess, topic: str) -> None:
    create_topic(make_admin(own_server.bootstrap), topic, partitions=2)
    producer = make_producer(own_server.bootstrap, **{"enable.idempotence": True, "linger.ms": 5})
    with SteadyProducer(producer, topic, 2) as steady:
        steady.delivered(500)
        own_server.restart()
        restarted_at = steady.ok_count()
        steady.delivered(restarted_at + 500)
    deliveries = steady.deliveries
    assert len(deliveries) == steady.sent
    assert [d.error for d in deliveries if d.error is not None] == []
    messages = check_delivered_once_in_order(own_server.bootstrap, topic, 2, deliveries)
    assert len(messages) == steady.sent
