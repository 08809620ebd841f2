"""kafka-python against ``tidelog serve``: records come back exactly as sent
(keys, values, headers, timestamps, offsets) with every compression codec,
the idempotent producer keeps order without duplicates, consumers seek by
timestamp, KafkaAdminClient manages topics, partitions, configs and records,
a 100-partition topic round-trips, records at the size limit pass and those
over it are refused (a batch over it is split by the client), positions out
of range and fetch limits below a batch behave as in Kafka, and a restart
(SIGTERM or SIGKILL) keeps data and offsets, and no duplicates, while the
clients reconnect. Consumers use assign(): this server has no group
coordinator."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    InvalidPartitionsError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from engine.config import CONFIG_DEFS
from tests.server.conftest import ServerProcess
from tests.server.samples import (
    CREATE_TIME,
    LOG_APPEND_TIME,
    MAX_MESSAGE_BYTES,
    RECORDS,
    T0,
    Sent,
    value_filling_a_batch,
)

TIMEOUT_MS = 15_000


def producer(bootstrap: str, **config: Any) -> KafkaProducer:
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": TIMEOUT_MS,
        "max_block_ms": TIMEOUT_MS,
        "delivery_timeout_ms": 2 * TIMEOUT_MS,
        "reconnect_backoff_max_ms": 1000,
    }
    settings.update(config)
    return KafkaProducer(**settings)


def consumer(bootstrap: str, **config: Any) -> KafkaConsumer:
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": TIMEOUT_MS,
        "consumer_timeout_ms": TIMEOUT_MS,
        "fetch_max_wait_ms": 200,
        "reconnect_backoff_max_ms": 1000,
    }
    settings.update(config)
    return KafkaConsumer(**settings)


def admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    client = admin(bootstrap)
    try:
        client.create_topics({topic: {"num_partitions": partitions}})
    finally:
        client.close()


def poll_records(
    client: KafkaConsumer, count: int, timeout_s: float = 30.0
) -> list[ConsumerRecord]:
    """Polls until ``count`` records arrived (or the timeout passed)."""
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        for batch in client.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def consume(
    bootstrap: str,
    partitions: Sequence[TopicPartition],
    count: int,
    *,
    offset: int | None = None,
    **config: Any,
) -> list[ConsumerRecord]:
    """``count`` records from ``partitions`` (from the beginning, or from
    ``offset``), read by a consumer without a group."""
    client = consumer(bootstrap, **config)
    try:
        client.assign(list(partitions))
        for partition in partitions:
            if offset is None:
                client.seek_to_beginning(partition)
            else:
                client.seek(partition, offset)
        return poll_records(client, count)
    finally:
        client.close()


def send_all(
    client: KafkaProducer, topic: str, records: Sequence[Sent], partition: int = 0
) -> list[Any]:
    futures = [
        client.send(topic, key=k, value=v, headers=h, timestamp_ms=t, partition=partition)
        for k, v, h, t in records
    ]
    client.flush(timeout=TIMEOUT_MS / 1000)
    return [future.get(timeout=TIMEOUT_MS / 1000) for future in futures]


def fields(record: ConsumerRecord) -> Sent:
    return record.key, record.value, list(record.headers), record.timestamp


@pytest.fixture
def kafka_admin(kafka_server: ServerProcess) -> Iterator[KafkaAdminClient]:
    client = admin(kafka_server.bootstrap)
    yield client
    client.close()


# -- records -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_records_come_back_exactly_as_sent(
    kafka_server: ServerProcess, topic: str, codec: str | None
) -> None:
    client = producer(kafka_server.bootstrap, compression_type=codec, linger_ms=50)
    try:
        sent = send_all(client, topic, RECORDS)
    finally:
        client.close(timeout=10)
    assert [m.offset for m in sent] == list(range(len(RECORDS)))
    assert [m.timestamp for m in sent] == [t for *_, t in RECORDS]

    records = consume(kafka_server.bootstrap, [TopicPartition(topic, 0)], len(RECORDS))
    assert [fields(r) for r in records] == RECORDS
    assert [r.offset for r in records] == list(range(len(RECORDS)))
    assert {r.timestamp_type for r in records} == {CREATE_TIME}
    # From the middle of a batch: the records before the position are not returned.
    middle = consume(kafka_server.bootstrap, [TopicPartition(topic, 0)], 5, offset=3)
    assert [(r.offset, fields(r)) for r in middle] == list(enumerate(RECORDS))[3:]


def test_log_append_time_topic_stamps_records_with_the_broker_time(
    kafka_server: ServerProcess, kafka_admin: KafkaAdminClient, topic: str
) -> None:
    kafka_admin.create_topics(
        {topic: {"num_partitions": 1, "configs": {"message.timestamp.type": "LogAppendTime"}}}
    )
    before = int(time.time() * 1000)
    client = producer(kafka_server.bootstrap, compression_type="gzip", linger_ms=50)
    try:
        sent = send_all(client, topic, RECORDS[:3])
    finally:
        client.close(timeout=10)
    after = int(time.time() * 1000)
    stamps = {m.timestamp for m in sent}
    assert len(stamps) == 1
    (stamp,) = stamps
    assert before - 1000 <= stamp <= after + 1000  # the broker's clock, not T0

    records = consume(kafka_server.bootstrap, [TopicPartition(topic, 0)], 3)
    assert [(r.key, r.value, list(r.headers)) for r in records] == [
        (k, v, h) for k, v, h, _ in RECORDS[:3]
    ]
    assert {r.timestamp_type for r in records} == {LOG_APPEND_TIME}
    assert {r.timestamp for r in records} == {stamp}


def test_idempotent_producer_keeps_order_without_duplicates(
    kafka_server: ServerProcess, topic: str
) -> None:
    partitions, per_partition = 3, 2000
    create_topic(kafka_server.bootstrap, topic, partitions)
    client = producer(
        kafka_server.bootstrap,
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,
        batch_size=4096,
        linger_ms=5,
    )
    try:
        futures = [
            client.send(topic, value=f"{p}-{i}".encode(), partition=p)
            for i in range(per_partition)
            for p in range(partitions)
        ]
        client.flush(timeout=60)
        sent = [f.get(timeout=TIMEOUT_MS / 1000) for f in futures]
        manager = client._transaction_manager
        assert manager is not None and manager.producer_id_and_epoch.producer_id >= 0
    finally:
        client.close(timeout=10)
    for p in range(partitions):
        offsets = [m.offset for m in sent if m.partition == p]
        assert offsets == list(range(per_partition))

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    records = consume(kafka_server.bootstrap, tps, partitions * per_partition)
    for p in range(partitions):
        mine = [r for r in records if r.partition == p]
        assert [r.value for r in mine] == [f"{p}-{i}".encode() for i in range(per_partition)]
        assert [r.offset for r in mine] == list(range(per_partition))


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_offsets_for_times_then_consume_from_there(
    kafka_server: ServerProcess, topic: str, codec: str | None
) -> None:
    stamped: list[Sent] = [(b"k", f"v{i}".encode(), [], T0 + 1000 * i) for i in range(10)]
    # One batch: the answer is a record inside it, not the batch's first.
    client = producer(kafka_server.bootstrap, compression_type=codec, linger_ms=100)
    try:
        send_all(client, topic, stamped)
    finally:
        client.close(timeout=10)
    tp = TopicPartition(topic, 0)
    reader = consumer(kafka_server.bootstrap)
    try:
        reader.assign([tp])
        exact = reader.offsets_for_times({tp: T0 + 2000}, timeout_ms=TIMEOUT_MS)[tp]
        between = reader.offsets_for_times({tp: T0 + 3500}, timeout_ms=TIMEOUT_MS)[tp]
        first = reader.offsets_for_times({tp: 0}, timeout_ms=TIMEOUT_MS)[tp]
        beyond = reader.offsets_for_times({tp: T0 + 10_000}, timeout_ms=TIMEOUT_MS)[tp]
        assert (exact.offset, exact.timestamp) == (2, T0 + 2000)
        assert (between.offset, between.timestamp) == (4, T0 + 4000)
        assert (first.offset, first.timestamp) == (0, T0)
        assert beyond is None

        reader.seek(tp, between.offset)
        records = poll_records(reader, 6)
    finally:
        reader.close()
    assert [r.offset for r in records] == list(range(4, 10))
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(4, 10)]
    assert [r.timestamp for r in records] == [T0 + 1000 * i for i in range(4, 10)]


# -- admin ---------------------------------------------------------------------------


def test_create_and_delete_topics(kafka_admin: KafkaAdminClient, topic: str) -> None:
    other = f"{topic}-b"
    created = kafka_admin.create_topics(
        {topic: {"num_partitions": 3, "replication_factor": 1}, other: {"num_partitions": 1}}
    )
    assert {t["name"]: t["error_code"] for t in created["topics"]} == {topic: 0, other: 0}
    assert {t["name"]: t["num_partitions"] for t in created["topics"]} == {topic: 3, other: 1}
    described = kafka_admin.describe_topics([topic])
    assert [p["partition_index"] for p in described[0]["partitions"]] == [0, 1, 2]
    assert {topic, other} <= set(kafka_admin.list_topics())

    deleted = kafka_admin.delete_topics([topic, other])
    assert {t["name"]: t["error_code"] for t in deleted["topics"]} == {topic: 0, other: 0}
    assert not {topic, other} & set(kafka_admin.list_topics())


def test_validate_only_creates_nothing(kafka_admin: KafkaAdminClient, topic: str) -> None:
    kafka_admin.create_topics({topic: {"num_partitions": 2}}, validate_only=True)
    assert topic not in kafka_admin.list_topics()


def test_creating_an_existing_topic_fails(kafka_admin: KafkaAdminClient, topic: str) -> None:
    kafka_admin.create_topics({topic: {"num_partitions": 1}})
    with pytest.raises(TopicAlreadyExistsError):
        kafka_admin.create_topics({topic: {"num_partitions": 1}})


def test_deleting_an_unknown_topic_fails(kafka_admin: KafkaAdminClient, topic: str) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        kafka_admin.delete_topics([topic])


def test_create_partitions_grows_a_topic(
    kafka_server: ServerProcess, kafka_admin: KafkaAdminClient, topic: str
) -> None:
    kafka_admin.create_topics({topic: {"num_partitions": 2}})
    kafka_admin.create_partitions({topic: 4})
    described = kafka_admin.describe_topics([topic])
    assert [p["partition_index"] for p in described[0]["partitions"]] == [0, 1, 2, 3]
    with pytest.raises(InvalidPartitionsError):
        kafka_admin.create_partitions({topic: 3})

    client = producer(kafka_server.bootstrap)
    try:
        sent = send_all(client, topic, [(b"k", b"on the new partition", [], T0)], partition=3)
    finally:
        client.close(timeout=10)
    assert sent[0].offset == 0
    records = consume(kafka_server.bootstrap, [TopicPartition(topic, 3)], 1)
    assert [r.value for r in records] == [b"on the new partition"]


def _topic_configs(client: KafkaAdminClient, topic: str, which: str) -> dict[str, dict[str, Any]]:
    described = client.describe_configs([ConfigResource("TOPIC", topic)], config_filter=which)
    configs: dict[str, dict[str, Any]] = described["topic"][topic]
    return configs


def test_describe_configs_lists_every_topic_config_with_defaults(
    kafka_admin: KafkaAdminClient, topic: str
) -> None:
    kafka_admin.create_topics(
        {topic: {"num_partitions": 1, "configs": {"retention.ms": "3600000"}}}
    )
    configs = _topic_configs(kafka_admin, topic, "all")
    assert set(configs) == set(CONFIG_DEFS)
    for name, definition in CONFIG_DEFS.items():
        if name == "retention.ms":
            continue
        assert configs[name]["value"] == definition.default, name
        assert configs[name]["config_source"] == "DEFAULT_CONFIG", name
    assert configs["retention.ms"]["value"] == "3600000"
    assert configs["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    # Kafka's own defaults, as clients and tools expect them.
    assert {
        name: configs[name]["value"]
        for name in ("cleanup.policy", "compression.type", "retention.bytes", "segment.bytes")
    } == {
        "cleanup.policy": "delete",
        "compression.type": "producer",
        "retention.bytes": "-1",
        "segment.bytes": "1073741824",
    }
    assert configs["max.message.bytes"]["value"] == str(MAX_MESSAGE_BYTES)
    assert configs["max.message.bytes"]["config_type"] == "INT"
    assert configs["cleanup.policy"]["config_type"] == "LIST"
    assert set(_topic_configs(kafka_admin, topic, "modified")) == {"retention.ms"}


def test_alter_configs_replaces_the_overrides(kafka_admin: KafkaAdminClient, topic: str) -> None:
    kafka_admin.create_topics(
        {topic: {"num_partitions": 1, "configs": {"retention.ms": "3600000"}}}
    )
    # kafka-python's AlterConfigs keeps the other overrides by sending them along.
    result = kafka_admin.alter_configs(
        [ConfigResource("TOPIC", topic, {"retention.bytes": "1048576"})], incremental=False
    )
    assert result == {"topic": {topic: "OK"}}
    modified = _topic_configs(kafka_admin, topic, "modified")
    assert {k: v["value"] for k, v in modified.items()} == {
        "retention.ms": "3600000",
        "retention.bytes": "1048576",
    }
    # An AlterConfigs with no configs resets them all.
    result = kafka_admin.reset_configs([ConfigResource("TOPIC", topic)], incremental=False)
    assert result == {"topic": {topic: "OK"}}
    assert _topic_configs(kafka_admin, topic, "modified") == {}
    assert _topic_configs(kafka_admin, topic, "all")["retention.ms"]["value"] == "604800000"


def test_alter_configs_refuses_an_invalid_value(kafka_admin: KafkaAdminClient, topic: str) -> None:
    kafka_admin.create_topics({topic: {"num_partitions": 1}})
    result = kafka_admin.alter_configs(
        [ConfigResource("TOPIC", topic, {"retention.ms": "soon"})], incremental=False
    )
    assert "InvalidConfigurationError" in result["topic"][topic]
    assert _topic_configs(kafka_admin, topic, "modified") == {}


def test_incremental_alter_configs(kafka_admin: KafkaAdminClient, topic: str) -> None:
    kafka_admin.create_topics(
        {topic: {"num_partitions": 1, "configs": {"retention.ms": "3600000"}}}
    )
    result = kafka_admin.alter_configs(
        [
            ConfigResource(
                "TOPIC",
                topic,
                {
                    "retention.bytes": (AlterConfigOp.SET, "1048576"),
                    "cleanup.policy": (AlterConfigOp.APPEND, "compact"),
                },
            )
        ],
        incremental=True,
    )
    assert result == {"topic": {topic: "OK"}}
    modified = _topic_configs(kafka_admin, topic, "modified")
    assert {k: v["value"] for k, v in modified.items()} == {
        "retention.ms": "3600000",
        "retention.bytes": "1048576",
        "cleanup.policy": "delete,compact",
    }
    result = kafka_admin.alter_configs(
        [
            ConfigResource(
                "TOPIC",
                topic,
                {
                    "retention.ms": (AlterConfigOp.DELETE, None),
                    "cleanup.policy": (AlterConfigOp.SUBTRACT, "delete"),
                },
            )
        ],
        incremental=True,
    )
    assert result == {"topic": {topic: "OK"}}
    modified = _topic_configs(kafka_admin, topic, "modified")
    assert {k: v["value"] for k, v in modified.items()} == {
        "retention.bytes": "1048576",
        "cleanup.policy": "compact",
    }


def test_delete_records_moves_the_log_start(
    kafka_server: ServerProcess, kafka_admin: KafkaAdminClient, topic: str
) -> None:
    client = producer(kafka_server.bootstrap)
    try:
        send_all(client, topic, [(None, f"v{i}".encode(), [], T0 + i) for i in range(10)])
    finally:
        client.close(timeout=10)
    tp = TopicPartition(topic, 0)
    deleted = kafka_admin.delete_records({tp: 4})
    assert deleted[tp]["low_watermark"] == 4
    with pytest.raises(OffsetOutOfRangeError):
        kafka_admin.delete_records({tp: 11})

    reader = consumer(kafka_server.bootstrap)
    try:
        reader.assign([tp])
        assert reader.beginning_offsets([tp], timeout_ms=TIMEOUT_MS) == {tp: 4}
        assert reader.end_offsets([tp], timeout_ms=TIMEOUT_MS) == {tp: 10}
        reader.seek_to_beginning(tp)
        records = poll_records(reader, 6)
    finally:
        reader.close()
    assert [r.offset for r in records] == list(range(4, 10))
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(4, 10)]
    # A position before the new log start is out of range: the consumer resets.
    reset = consume(kafka_server.bootstrap, [tp], 6, offset=0)
    assert [r.offset for r in reset] == list(range(4, 10))


# -- positions and fetch limits ----------------------------------------------------------


def test_a_position_beyond_the_end_is_out_of_range(kafka_server: ServerProcess, topic: str) -> None:
    client = producer(kafka_server.bootstrap)
    try:
        send_all(client, topic, RECORDS[:3])
    finally:
        client.close(timeout=10)
    tp = TopicPartition(topic, 0)
    strict = consumer(kafka_server.bootstrap, auto_offset_reset="none")
    try:
        strict.assign([tp])
        strict.seek(tp, 1000)
        with pytest.raises(OffsetOutOfRangeError):
            poll_records(strict, 1, timeout_s=TIMEOUT_MS / 1000)
    finally:
        strict.close()
    records = consume(kafka_server.bootstrap, [tp], 3, offset=1000)
    assert [r.offset for r in records] == [0, 1, 2]


def test_fetch_limits_smaller_than_a_batch_still_return_it(
    kafka_server: ServerProcess, topic: str
) -> None:
    partitions, count = 3, 60
    create_topic(kafka_server.bootstrap, topic, partitions)
    client = producer(kafka_server.bootstrap, linger_ms=20)
    try:
        futures = [
            client.send(topic, value=f"{i:04}".encode() * 750, partition=i % partitions)
            for i in range(count)
        ]
        client.flush(timeout=TIMEOUT_MS / 1000)
        for future in futures:
            future.get(timeout=TIMEOUT_MS / 1000)
    finally:
        client.close(timeout=10)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    records = consume(
        kafka_server.bootstrap, tps, count, fetch_max_bytes=1, max_partition_fetch_bytes=1
    )
    for p in range(partitions):
        assert [r.value for r in records if r.partition == p] == [
            f"{i:04}".encode() * 750 for i in range(p, count, partitions)
        ]


# -- scale and limits ------------------------------------------------------------------


def test_a_hundred_partitions_round_trip(
    kafka_server: ServerProcess, kafka_admin: KafkaAdminClient, topic: str
) -> None:
    partitions, per_partition = 100, 5
    kafka_admin.create_topics({topic: {"num_partitions": partitions}})
    client = producer(kafka_server.bootstrap, linger_ms=20)
    try:
        futures = [
            client.send(topic, key=f"{p}".encode(), value=f"{p}-{i}".encode(), partition=p)
            for i in range(per_partition)
            for p in range(partitions)
        ]
        client.flush(timeout=60)
        for future in futures:
            future.get(timeout=TIMEOUT_MS / 1000)
    finally:
        client.close(timeout=10)

    tps = [TopicPartition(topic, p) for p in range(partitions)]
    records = consume(kafka_server.bootstrap, tps, partitions * per_partition)
    assert len(records) == partitions * per_partition
    for p in range(partitions):
        mine = [r for r in records if r.partition == p]
        assert [(r.offset, r.value) for r in mine] == [
            (i, f"{p}-{i}".encode()) for i in range(per_partition)
        ]


def test_records_up_to_max_message_bytes_pass_and_larger_are_refused(
    kafka_server: ServerProcess, topic: str
) -> None:
    fits = value_filling_a_batch(MAX_MESSAGE_BYTES).replace(b"\x00", b"\x07")
    too_large = fits + b"!"
    # The client's own limits are higher, so that the server is the one to refuse.
    client = producer(
        kafka_server.bootstrap,
        max_request_size=4 * MAX_MESSAGE_BYTES,
        batch_size=4 * MAX_MESSAGE_BYTES,
        enable_idempotence=False,
        retries=0,
    )
    try:
        first = client.send(topic, value=fits, timestamp_ms=T0, partition=0)
        assert first.get(timeout=TIMEOUT_MS / 1000).offset == 0
        refused = client.send(topic, value=too_large, timestamp_ms=T0, partition=0)
        with pytest.raises(MessageSizeTooLargeError):
            refused.get(timeout=TIMEOUT_MS / 1000)
        after = client.send(topic, value=b"still serving", timestamp_ms=T0, partition=0)
        assert after.get(timeout=TIMEOUT_MS / 1000).offset == 1
    finally:
        client.close(timeout=10)

    records = consume(kafka_server.bootstrap, [TopicPartition(topic, 0)], 2)
    assert [r.offset for r in records] == [0, 1]
    assert records[0].value == fits
    assert records[1].value == b"still serving"


def test_a_batch_over_the_limit_is_split_by_the_client(
    kafka_server: ServerProcess, topic: str
) -> None:
    # Six records of 400 kB make one batch of 2.4 MB, which the server refuses
    # with MESSAGE_TOO_LARGE; kafka-python then splits it and sends the parts.
    values = [bytes([i]) * 400_000 for i in range(6)]
    client = producer(
        kafka_server.bootstrap,
        max_request_size=8 * MAX_MESSAGE_BYTES,
        batch_size=8 * MAX_MESSAGE_BYTES,
        linger_ms=200,
    )
    try:
        futures = [client.send(topic, value=v, partition=0) for v in values]
        offsets = [future.get(timeout=TIMEOUT_MS / 1000).offset for future in futures]
    finally:
        client.close(timeout=10)
    assert offsets == list(range(6))
    records = consume(kafka_server.bootstrap, [TopicPartition(topic, 0)], 6)
    assert [r.value for r in records] == values


# -- restarts --------------------------------------------------------------------------


def test_restart_keeps_data_and_offsets_and_clients_reconnect(own_server: ServerProcess) -> None:
    topic, partitions = "restarted", 2
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    create_topic(own_server.bootstrap, topic, partitions)

    def batch(start: int) -> list[tuple[int, bytes]]:
        return [(i % partitions, f"v{i}".encode()) for i in range(start, start + 50)]

    client = producer(own_server.bootstrap, enable_idempotence=True, linger_ms=10)
    reader = consumer(own_server.bootstrap)
    try:
        futures = [client.send(topic, value=v, partition=p) for p, v in batch(0)]
        client.flush(timeout=TIMEOUT_MS / 1000)
        for future in futures:
            future.get(timeout=TIMEOUT_MS / 1000)
        reader.assign(tps)
        for tp in tps:
            reader.seek_to_beginning(tp)
        before = poll_records(reader, 50)
        assert len(before) == 50

        own_server.restart()

        futures = [client.send(topic, value=v, partition=p) for p, v in batch(50)]
        client.flush(timeout=60)
        sent = [future.get(timeout=TIMEOUT_MS / 1000) for future in futures]
        assert sorted(m.offset for m in sent if m.partition == 0) == list(range(25, 50))
        after = poll_records(reader, 50)
        assert reader.end_offsets(tps, timeout_ms=TIMEOUT_MS) == {tp: 50 for tp in tps}
    finally:
        client.close(timeout=10)
        reader.close()
    assert sorted((r.partition, r.offset) for r in after) == [
        (p, o) for p in range(partitions) for o in range(25, 50)
    ]

    everything = consume(own_server.bootstrap, tps, 100)
    for p in range(partitions):
        mine = [r for r in everything if r.partition == p]
        expected = [v for q, v in batch(0) + batch(50) if q == p]
        assert [r.value for r in mine] == expected
        assert [r.offset for r in mine] == list(range(50))


def test_kill_during_idempotent_produce_keeps_each_acknowledged_record_once(
    own_server: ServerProcess,
) -> None:
    """SIGKILL while batches are in flight: the producer retries them after
    the restart, and those that were already durable are not appended again."""
    topic, partitions, per_round = "killed", 3, 3000
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    create_topic(own_server.bootstrap, topic, partitions)
    client = producer(
        own_server.bootstrap,
        enable_idempotence=True,
        linger_ms=2,
        batch_size=2048,
        delivery_timeout_ms=60_000,
    )
    sent: list[tuple[int, bytes, Any]] = []

    def send(start: int) -> None:
        for i in range(start, start + per_round):
            value = f"v{i}".encode()
            partition = i % partitions
            sent.append((partition, value, client.send(topic, value=value, partition=partition)))

    try:
        send(0)
        own_server.kill()
        own_server.start()
        send(per_round)
        acked = [(p, v, future.get(timeout=60)) for p, v, future in sent]
    finally:
        client.close(timeout=10)

    records = consume(own_server.bootstrap, tps, len(sent))
    for p in range(partitions):
        mine = [r for r in records if r.partition == p]
        assert [r.value for r in mine] == [v for q, v, _ in sent if q == p]
        assert [r.offset for r in mine] == list(range(len(mine)))
        assert [m.offset for q, _, m in acked if q == p] == [r.offset for r in mine]
