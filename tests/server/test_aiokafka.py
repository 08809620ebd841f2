"""aiokafka against ``tidelog serve``: records come back exactly as sent
(keys, values, headers, timestamps, offsets) with every compression codec,
the idempotent producer keeps order without duplicates, consumers seek by
timestamp, AIOKafkaAdminClient manages topics, partitions, configs and
records, a 100-partition topic round-trips, records at the size limit pass
and those over it are refused, positions out of range and fetch limits
below a batch behave as in Kafka, and a restart (SIGTERM or SIGKILL) keeps
data and offsets, and no duplicates, while the clients reconnect.
Consumers use assign(): this server has no group coordinator.

Each test is a plain function that runs its coroutine with asyncio.run,
under an overall timeout, and every client call has its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    MessageSizeTooLargeError,
    NoError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.structs import ConsumerRecord, RecordMetadata

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

T = TypeVar("T")

TIMEOUT_MS = 15_000
TIMEOUT_S = TIMEOUT_MS / 1000
TEST_TIMEOUT_S = 120.0
SOURCE_TOPIC, SOURCE_DEFAULT = 1, 5


def run(coroutine: Coroutine[Any, Any, T], timeout: float = TEST_TIMEOUT_S) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


@asynccontextmanager
async def producer(bootstrap: str, **config: Any) -> AsyncIterator[AIOKafkaProducer]:
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "request_timeout_ms": TIMEOUT_MS,
        "retry_backoff_ms": 100,
    }
    settings.update(config)
    client = AIOKafkaProducer(**settings)
    await asyncio.wait_for(client.start(), TIMEOUT_S)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.stop(), TIMEOUT_S)


@asynccontextmanager
async def consumer(bootstrap: str, **config: Any) -> AsyncIterator[AIOKafkaConsumer]:
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": TIMEOUT_MS,
        "fetch_max_wait_ms": 200,
        "retry_backoff_ms": 100,
    }
    settings.update(config)
    client = AIOKafkaConsumer(**settings)
    await asyncio.wait_for(client.start(), TIMEOUT_S)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.stop(), TIMEOUT_S)


@asynccontextmanager
async def admin(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await asyncio.wait_for(client.start(), TIMEOUT_S)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.close(), TIMEOUT_S)


async def create_topic(
    bootstrap: str, topic: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    async with admin(bootstrap) as client:
        response = await asyncio.wait_for(
            client.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs or {})]),
            TIMEOUT_S,
        )
    assert [error(code) for _, code, *_ in response.topic_errors] == [NoError]


def error(code: int) -> type[Exception]:
    """The aiokafka error class for a response's error code."""
    found: type[Exception] = for_code(code)
    return found


async def poll_records(
    client: AIOKafkaConsumer, count: int, timeout_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Polls until ``count`` records arrived (or the timeout passed)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        fetched = await asyncio.wait_for(client.getmany(timeout_ms=500), TIMEOUT_S)
        for batch in fetched.values():
            records.extend(batch)
    return records


async def consume(
    bootstrap: str,
    partitions: Sequence[TopicPartition],
    count: int,
    *,
    offset: int | None = None,
    **config: Any,
) -> list[ConsumerRecord[bytes, bytes]]:
    """``count`` records from ``partitions`` (from the beginning, or from
    ``offset``), read by a consumer without a group."""
    async with consumer(bootstrap, **config) as client:
        client.assign(list(partitions))
        for partition in partitions:
            if offset is None:
                await asyncio.wait_for(client.seek_to_beginning(partition), TIMEOUT_S)
            else:
                client.seek(partition, offset)
        return await poll_records(client, count)


async def send_all(
    client: AIOKafkaProducer, topic: str, records: Sequence[Sent], partition: int = 0
) -> list[RecordMetadata]:
    futures = [
        await client.send(topic, key=k, value=v, headers=h, timestamp_ms=t, partition=partition)
        for k, v, h, t in records
    ]
    return list(await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S))


def fields(record: ConsumerRecord[bytes, bytes]) -> Sent:
    return record.key, record.value, list(record.headers), record.timestamp


# -- records -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_records_come_back_exactly_as_sent(
    kafka_server: ServerProcess, topic: str, codec: str | None
) -> None:
    bootstrap = kafka_server.bootstrap
    tp = TopicPartition(topic, 0)

    async def scenario() -> None:
        async with producer(bootstrap, compression_type=codec, linger_ms=50) as client:
            sent = await send_all(client, topic, RECORDS)
        assert [m.offset for m in sent] == list(range(len(RECORDS)))
        # aiokafka's send results give every record of a CreateTime batch the
        # timestamp of its first, so the consumed records are the ones that
        # show each timestamp.
        assert sent[0].timestamp == RECORDS[0][3]
        assert {m.timestamp_type for m in sent} == {CREATE_TIME}

        records = await consume(bootstrap, [tp], len(RECORDS))
        assert [fields(r) for r in records] == RECORDS
        assert [r.offset for r in records] == list(range(len(RECORDS)))
        assert {r.timestamp_type for r in records} == {CREATE_TIME}
        # From the middle of a batch: the records before the position are not returned.
        middle = await consume(bootstrap, [tp], 5, offset=3)
        assert [(r.offset, fields(r)) for r in middle] == list(enumerate(RECORDS))[3:]

    run(scenario())


def test_log_append_time_topic_stamps_records_with_the_broker_time(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap

    async def scenario() -> None:
        await create_topic(bootstrap, topic, 1, {"message.timestamp.type": "LogAppendTime"})
        before = int(time.time() * 1000)
        async with producer(bootstrap, compression_type="lz4", linger_ms=50) as client:
            sent = await send_all(client, topic, RECORDS[:3])
        after = int(time.time() * 1000)
        assert {m.timestamp_type for m in sent} == {LOG_APPEND_TIME}
        stamps = {m.timestamp for m in sent}
        assert len(stamps) == 1
        (stamp,) = stamps
        assert before - 1000 <= stamp <= after + 1000  # the broker's clock, not T0

        records = await consume(bootstrap, [TopicPartition(topic, 0)], 3)
        assert [(r.key, r.value, list(r.headers)) for r in records] == [
            (k, v, h) for k, v, h, _ in RECORDS[:3]
        ]
        assert {r.timestamp_type for r in records} == {LOG_APPEND_TIME}
        assert {r.timestamp for r in records} == {stamp}

    run(scenario())


def test_idempotent_producer_keeps_order_without_duplicates(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    partitions, per_partition = 3, 2000

    async def scenario() -> None:
        await create_topic(bootstrap, topic, partitions)
        async with producer(
            bootstrap, enable_idempotence=True, acks="all", max_batch_size=4096, linger_ms=5
        ) as client:
            futures = [
                await client.send(topic, value=f"{p}-{i}".encode(), partition=p)
                for i in range(per_partition)
                for p in range(partitions)
            ]
            sent = await asyncio.wait_for(asyncio.gather(*futures), 60)
            assert client._txn_manager is not None
            assert client._txn_manager.producer_id >= 0
        for p in range(partitions):
            assert [m.offset for m in sent if m.partition == p] == list(range(per_partition))

        tps = [TopicPartition(topic, p) for p in range(partitions)]
        records = await consume(bootstrap, tps, partitions * per_partition)
        for p in range(partitions):
            mine = [r for r in records if r.partition == p]
            assert [r.value for r in mine] == [f"{p}-{i}".encode() for i in range(per_partition)]
            assert [r.offset for r in mine] == list(range(per_partition))

    run(scenario())


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_offsets_for_times_then_consume_from_there(
    kafka_server: ServerProcess, topic: str, codec: str | None
) -> None:
    bootstrap = kafka_server.bootstrap
    tp = TopicPartition(topic, 0)
    stamped: list[Sent] = [(b"k", f"v{i}".encode(), [], T0 + 1000 * i) for i in range(10)]

    async def scenario() -> None:
        # One batch: the answer is a record inside it, not the batch's first.
        async with producer(bootstrap, compression_type=codec, linger_ms=100) as client:
            await send_all(client, topic, stamped)
        async with consumer(bootstrap) as reader:
            reader.assign([tp])

            async def lookup(timestamp: int) -> Any:
                found = await asyncio.wait_for(reader.offsets_for_times({tp: timestamp}), TIMEOUT_S)
                return found[tp]

            exact, between = await lookup(T0 + 2000), await lookup(T0 + 3500)
            first, beyond = await lookup(0), await lookup(T0 + 10_000)
            assert (exact.offset, exact.timestamp) == (2, T0 + 2000)
            assert (between.offset, between.timestamp) == (4, T0 + 4000)
            assert (first.offset, first.timestamp) == (0, T0)
            assert beyond is None

            reader.seek(tp, between.offset)
            records = await poll_records(reader, 6)
        assert [r.offset for r in records] == list(range(4, 10))
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(4, 10)]
        assert [r.timestamp for r in records] == [T0 + 1000 * i for i in range(4, 10)]

    run(scenario())


# -- admin ---------------------------------------------------------------------------


def test_create_and_delete_topics(kafka_server: ServerProcess, topic: str) -> None:
    other = f"{topic}-b"

    async def scenario() -> None:
        async with admin(kafka_server.bootstrap) as client:
            created = await client.create_topics([NewTopic(topic, 3, 1), NewTopic(other, 1, 1)])
            assert {name: error(code) for name, code, *_ in created.topic_errors} == {
                topic: NoError,
                other: NoError,
            }
            described = await client.describe_topics([topic])
            assert sorted(p["partition"] for p in described[0]["partitions"]) == [0, 1, 2]
            assert {topic, other} <= set(await client.list_topics())

            deleted = await client.delete_topics([topic, other])
            assert {name: error(code) for name, code, *_ in deleted.topic_error_codes} == {
                topic: NoError,
                other: NoError,
            }
            assert not {topic, other} & set(await client.list_topics())

    run(scenario())


def test_validate_only_creates_nothing(kafka_server: ServerProcess, topic: str) -> None:
    async def scenario() -> None:
        async with admin(kafka_server.bootstrap) as client:
            created = await client.create_topics([NewTopic(topic, 2, 1)], validate_only=True)
            assert [error(code) for _, code, *_ in created.topic_errors] == [NoError]
            assert topic not in await client.list_topics()

    run(scenario())


def test_creating_an_existing_topic_fails(kafka_server: ServerProcess, topic: str) -> None:
    async def scenario() -> None:
        async with admin(kafka_server.bootstrap) as client:
            await client.create_topics([NewTopic(topic, 1, 1)])
            again = await client.create_topics([NewTopic(topic, 1, 1)])
            assert [error(code) for _, code, *_ in again.topic_errors] == [TopicAlreadyExistsError]

    run(scenario())


def test_deleting_an_unknown_topic_fails(kafka_server: ServerProcess, topic: str) -> None:
    async def scenario() -> None:
        async with admin(kafka_server.bootstrap) as client:
            deleted = await client.delete_topics([topic])
            assert [error(code) for _, code, *_ in deleted.topic_error_codes] == [
                UnknownTopicOrPartitionError
            ]

    run(scenario())


def test_create_partitions_grows_a_topic(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap

    async def scenario() -> None:
        await create_topic(bootstrap, topic, 2)
        async with admin(bootstrap) as client:
            await client.create_partitions({topic: NewPartitions(4)})
            described = await client.describe_topics([topic])
            assert sorted(p["partition"] for p in described[0]["partitions"]) == [0, 1, 2, 3]
            with pytest.raises(InvalidPartitionsError):
                await client.create_partitions({topic: NewPartitions(3)})

        async with producer(bootstrap) as client:
            sent = await send_all(client, topic, [(b"k", b"on the new partition", [], T0)], 3)
        assert sent[0].offset == 0
        records = await consume(bootstrap, [TopicPartition(topic, 3)], 1)
        assert [r.value for r in records] == [b"on the new partition"]

    run(scenario())


async def describe_topic_configs(client: AIOKafkaAdminClient, topic: str) -> dict[str, Any]:
    """Each config's (value, source), or the error class of the answer."""
    (response,) = await client.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], include_synonyms=True
    )
    (resource,) = response.resources
    code, _message, _type, name, entries = resource
    assert name == topic
    if code != 0:
        return {"error": error(code)}
    return {entry[0]: (entry[1], entry[3]) for entry in entries}


def overrides(configs: dict[str, Any]) -> dict[str, str]:
    return {name: value for name, (value, source) in configs.items() if source == SOURCE_TOPIC}


def test_describe_configs_lists_every_topic_config_with_defaults(
    kafka_server: ServerProcess, topic: str
) -> None:
    async def scenario() -> None:
        await create_topic(kafka_server.bootstrap, topic, 1, {"retention.ms": "3600000"})
        async with admin(kafka_server.bootstrap) as client:
            configs = await describe_topic_configs(client, topic)
        assert set(configs) == set(CONFIG_DEFS)
        expected = {name: (d.default, SOURCE_DEFAULT) for name, d in CONFIG_DEFS.items()}
        expected["retention.ms"] = ("3600000", SOURCE_TOPIC)
        assert configs == expected
        assert configs["max.message.bytes"] == (str(MAX_MESSAGE_BYTES), SOURCE_DEFAULT)

    run(scenario())


def test_describe_configs_of_an_unknown_topic_fails(
    kafka_server: ServerProcess, topic: str
) -> None:
    async def scenario() -> None:
        async with admin(kafka_server.bootstrap) as client:
            configs = await describe_topic_configs(client, topic)
        assert configs == {"error": UnknownTopicOrPartitionError}

    run(scenario())


def test_alter_configs_replaces_the_overrides(kafka_server: ServerProcess, topic: str) -> None:
    async def scenario() -> None:
        await create_topic(kafka_server.bootstrap, topic, 1, {"retention.ms": "3600000"})
        async with admin(kafka_server.bootstrap) as client:
            (response,) = await client.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.bytes": "1048576"})]
            )
            assert [error(r[0]) for r in response.resources] == [NoError]
            # AlterConfigs is not incremental: retention.ms returns to its default.
            configs = await describe_topic_configs(client, topic)
            assert overrides(configs) == {"retention.bytes": "1048576"}
            assert configs["retention.ms"] == ("604800000", SOURCE_DEFAULT)

            (response,) = await client.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "soon"})]
            )
            assert [error(r[0]) for r in response.resources] == [InvalidConfigurationError]
            assert overrides(await describe_topic_configs(client, topic)) == {
                "retention.bytes": "1048576"
            }

    run(scenario())


def test_delete_records_moves_the_log_start(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    tp = TopicPartition(topic, 0)

    async def scenario() -> None:
        async with producer(bootstrap) as client:
            await send_all(client, topic, [(None, f"v{i}".encode(), [], T0 + i) for i in range(10)])
        async with admin(bootstrap) as client:
            assert await client.delete_records({tp: RecordsToDelete(4)}) == {tp: 4}
            with pytest.raises(OffsetOutOfRangeError):
                await client.delete_records({tp: RecordsToDelete(11)})

        async with consumer(bootstrap) as reader:
            reader.assign([tp])
            assert await asyncio.wait_for(reader.beginning_offsets([tp]), TIMEOUT_S) == {tp: 4}
            assert await asyncio.wait_for(reader.end_offsets([tp]), TIMEOUT_S) == {tp: 10}
            await asyncio.wait_for(reader.seek_to_beginning(tp), TIMEOUT_S)
            records = await poll_records(reader, 6)
        assert [r.offset for r in records] == list(range(4, 10))
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(4, 10)]
        # A position before the new log start is out of range: the consumer resets.
        reset = await consume(bootstrap, [tp], 6, offset=0)
        assert [r.offset for r in reset] == list(range(4, 10))

    run(scenario())


# -- positions and fetch limits ----------------------------------------------------------


def test_a_position_beyond_the_end_is_out_of_range(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    tp = TopicPartition(topic, 0)

    async def scenario() -> None:
        async with producer(bootstrap) as client:
            await send_all(client, topic, RECORDS[:3])
        async with consumer(bootstrap, auto_offset_reset="none") as strict:
            strict.assign([tp])
            strict.seek(tp, 1000)
            with pytest.raises(OffsetOutOfRangeError):
                await poll_records(strict, 1, timeout_s=TIMEOUT_S)
        records = await consume(bootstrap, [tp], 3, offset=1000)
        assert [r.offset for r in records] == [0, 1, 2]

    run(scenario())


def test_fetch_limits_smaller_than_a_batch_still_return_it(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    partitions, count = 3, 60

    async def scenario() -> None:
        await create_topic(bootstrap, topic, partitions)
        async with producer(bootstrap, linger_ms=20) as client:
            futures = [
                await client.send(topic, value=f"{i:04}".encode() * 750, partition=i % partitions)
                for i in range(count)
            ]
            await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        records = await consume(
            bootstrap, tps, count, fetch_max_bytes=1, max_partition_fetch_bytes=1
        )
        for p in range(partitions):
            assert [r.value for r in records if r.partition == p] == [
                f"{i:04}".encode() * 750 for i in range(p, count, partitions)
            ]

    run(scenario())


# -- scale and limits ------------------------------------------------------------------


def test_a_hundred_partitions_round_trip(kafka_server: ServerProcess, topic: str) -> None:
    bootstrap = kafka_server.bootstrap
    partitions, per_partition = 100, 5

    async def scenario() -> None:
        await create_topic(bootstrap, topic, partitions)
        async with producer(bootstrap, linger_ms=20) as client:
            futures = [
                await client.send(
                    topic, key=f"{p}".encode(), value=f"{p}-{i}".encode(), partition=p
                )
                for i in range(per_partition)
                for p in range(partitions)
            ]
            await asyncio.wait_for(asyncio.gather(*futures), 60)

        tps = [TopicPartition(topic, p) for p in range(partitions)]
        records = await consume(bootstrap, tps, partitions * per_partition)
        assert len(records) == partitions * per_partition
        for p in range(partitions):
            mine = [r for r in records if r.partition == p]
            assert [(r.offset, r.value) for r in mine] == [
                (i, f"{p}-{i}".encode()) for i in range(per_partition)
            ]

    run(scenario())


def test_records_up_to_max_message_bytes_pass_and_larger_are_refused(
    kafka_server: ServerProcess, topic: str
) -> None:
    bootstrap = kafka_server.bootstrap
    fits = value_filling_a_batch(MAX_MESSAGE_BYTES).replace(b"\x00", b"\x07")
    too_large = fits + b"!"

    async def scenario() -> None:
        # The client's own limit is higher, so that the server is the one to refuse.
        async with producer(bootstrap, max_request_size=4 * MAX_MESSAGE_BYTES) as client:
            first = await client.send_and_wait(topic, value=fits, timestamp_ms=T0, partition=0)
            assert first.offset == 0
            with pytest.raises(MessageSizeTooLargeError):
                await client.send_and_wait(topic, value=too_large, timestamp_ms=T0, partition=0)
            after = await client.send_and_wait(topic, value=b"still serving", partition=0)
            assert after.offset == 1

        records = await consume(bootstrap, [TopicPartition(topic, 0)], 2)
        assert [r.offset for r in records] == [0, 1]
        assert records[0].value == fits
        assert records[1].value == b"still serving"

    run(scenario())


# -- restarts --------------------------------------------------------------------------


def test_restart_keeps_data_and_offsets_and_clients_reconnect(own_server: ServerProcess) -> None:
    topic, partitions = "restarted", 2
    tps = [TopicPartition(topic, p) for p in range(partitions)]

    def batch(start: int) -> list[tuple[int, bytes]]:
        return [(i % partitions, f"v{i}".encode()) for i in range(start, start + 50)]

    async def send(client: AIOKafkaProducer, start: int) -> list[RecordMetadata]:
        futures = [await client.send(topic, value=v, partition=p) for p, v in batch(start)]
        return list(await asyncio.wait_for(asyncio.gather(*futures), 60))

    async def scenario() -> None:
        await create_topic(own_server.bootstrap, topic, partitions)
        async with (
            producer(own_server.bootstrap, enable_idempotence=True, linger_ms=10) as client,
            consumer(own_server.bootstrap) as reader,
        ):
            await send(client, 0)
            reader.assign(tps)
            await asyncio.wait_for(reader.seek_to_beginning(*tps), TIMEOUT_S)
            assert len(await poll_records(reader, 50)) == 50

            await asyncio.get_running_loop().run_in_executor(None, own_server.restart)

            sent = await send(client, 50)
            assert sorted(m.offset for m in sent if m.partition == 0) == list(range(25, 50))
            after = await poll_records(reader, 50)
            assert await asyncio.wait_for(reader.end_offsets(tps), TIMEOUT_S) == {
                tp: 50 for tp in tps
            }
        assert sorted((r.partition, r.offset) for r in after) == [
            (p, o) for p in range(partitions) for o in range(25, 50)
        ]

        everything = await consume(own_server.bootstrap, tps, 100)
        for p in range(partitions):
            mine = [r for r in everything if r.partition == p]
            assert [r.value for r in mine] == [v for q, v in batch(0) + batch(50) if q == p]
            assert [r.offset for r in mine] == list(range(50))

    run(scenario())


def test_kill_during_idempotent_produce_keeps_each_acknowledged_record_once(
    own_server: ServerProcess,
) -> None:
    """SIGKILL while batches are in flight: the producer retries them after
    the restart, and those that were already durable are not appended again."""
    topic, partitions, per_round = "killed", 3, 3000
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    sent: list[tuple[int, bytes, asyncio.Future[RecordMetadata]]] = []

    async def send(client: AIOKafkaProducer, start: int) -> None:
        for i in range(start, start + per_round):
            value = f"v{i}".encode()
            partition = i % partitions
            sent.append(
                (partition, value, await client.send(topic, value=value, partition=partition))
            )

    async def scenario() -> None:
        await create_topic(own_server.bootstrap, topic, partitions)
        loop = asyncio.get_running_loop()
        async with producer(
            own_server.bootstrap, enable_idempotence=True, linger_ms=2, max_batch_size=2048
        ) as client:
            await send(client, 0)
            await loop.run_in_executor(None, own_server.kill)
            await loop.run_in_executor(None, own_server.start)
            await send(client, per_round)
            acked = await asyncio.wait_for(asyncio.gather(*(f for _, _, f in sent)), 60)

        records = await consume(own_server.bootstrap, tps, len(sent))
        for p in range(partitions):
            mine = [r for r in records if r.partition == p]
            assert [r.value for r in mine] == [v for q, v, _ in sent if q == p]
            assert [r.offset for r in mine] == list(range(len(mine)))
            assert [m.offset for m in acked if m.partition == p] == [r.offset for r in mine]

    run(scenario())
