"""A batch is stored with its topic's timestamp type, whatever its
attributes said, as Kafka's LogValidator stores it: a producer's batch
marked LogAppendTime sent to a CreateTime topic is stored marked
CreateTime, with its maxTimestamp (which each of its records read) and its
CRC rewritten, whether the batch is kept in its codec or recompressed; a
CreateTime batch sent to a LogAppendTime topic is stamped. A raw Produce
over a real socket, a raw Fetch of the stored bytes, and kafka-python,
which checks every batch's CRC, reading them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

import engine
import native
from engine.clock import ManualClock
from engine.protocol.kafka_code import KafkaCode
from native import Compression, RecordSpec, TimestampType
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, fetch_from_start, produce_answers, produce_partitions

T0 = 1_700_000_000_000
NOW = T0 + 5_000  # the engine's clock: a stamp differs from T0
TIMEOUT_MS = 10_000
TOPICS = {
    "create-time": {},
    "create-time-gzip": {"compression.type": "gzip"},  # the batch is recompressed
    "append-time": {"message.timestamp.type": "LogAppendTime"},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    with engine.open(tmp_path_factory.mktemp("node"), clock=ManualClock(NOW)) as opened:
        for name, configs in TOPICS.items():
            opened.create_topic(name, 1, configs)
        with InProcessServer(opened) as server:
            yield server


def _batch(compression: Compression, timestamp_type: TimestampType) -> bytes:
    specs = [RecordSpec(T0 - 10, b"a", b"1", ()), RecordSpec(T0, b"b", b"2", ())]
    return native.encode_batch(specs, compression=compression, timestamp_type=timestamp_type)


@pytest.mark.parametrize(
    ("topic", "sent", "stored", "max_timestamp"),
    [
        ("create-time", TimestampType.LOG_APPEND_TIME, TimestampType.CREATE_TIME, T0),
        ("create-time-gzip", TimestampType.LOG_APPEND_TIME, TimestampType.CREATE_TIME, T0),
        ("append-time", TimestampType.CREATE_TIME, TimestampType.LOG_APPEND_TIME, NOW),
    ],
)
@pytest.mark.parametrize("compression", [Compression.NONE, Compression.GZIP, Compression.ZSTD])
def test_a_batch_is_stored_with_its_topics_timestamp_type_and_a_valid_crc(
    served: InProcessServer,
    topic: str,
    sent: TimestampType,
    stored: TimestampType,
    max_timestamp: int,
    compression: Compression,
) -> None:
    start = served.server.engine.offsets(topic, 0)[1]
    records = _batch(compression, sent)
    partitions = [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]
    assert produce_answers(served.bootstrap, partitions) == {(topic, 0): (0, start)}

    with Wire(served.bootstrap) as wire:
        (answer,) = wire.request(fetch_from_start(topic)).responses[0].partitions
    fetched = bytes(answer.records)
    batches = native.validate_batches(fetched, from_client=False)  # every CRC checked
    (batch,) = [b for b in batches if b.base_offset == start]
    assert batch.timestamp_type == stored
    assert batch.max_timestamp == max_timestamp
    expected_codec = Compression.GZIP if topic.endswith("gzip") else compression
    assert batch.compression == expected_codec

    consumer = KafkaConsumer(
        bootstrap_servers=served.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        check_crcs=True,
        request_timeout_ms=TIMEOUT_MS,
        consumer_timeout_ms=TIMEOUT_MS,
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, start)
        read = [next(consumer) for _ in range(2)]
    finally:
        consumer.close()
    assert [r.offset for r in read] == [start, start + 1]
    assert {r.timestamp_type for r in read} == {int(stored)}
    if stored == TimestampType.LOG_APPEND_TIME:
        assert [r.timestamp for r in read] == [NOW, NOW]
    elif compression == expected_codec:
        # Kept as it came: Kafka rewrites the header alone, and the records'
        # deltas then read the producer's times.
        assert [r.timestamp for r in read] == [T0 - 10, T0]
    else:
        # Recompressed: Kafka's builder writes each record's timestamp as
        # it was read, the batch's maxTimestamp.
        assert [r.timestamp for r in read] == [T0, T0]


@pytest.mark.parametrize("topic", ["create-time", "create-time-gzip"])
def test_a_log_append_time_batch_without_a_time_is_invalid_timestamp_on_a_create_time_topic(
    served: InProcessServer, topic: str
) -> None:
    # Each record of a batch marked LogAppendTime reads its maxTimestamp:
    # -1 is no time, which Kafka's LogValidator.validateTimestamp refuses
    # with "Producer should not set timestamp type to LogAppendTime".
    end = served.server.engine.offsets(topic, 0)[1]
    records = native.encode_batch(
        [RecordSpec(-1, b"k", b"v", ())], timestamp_type=TimestampType.LOG_APPEND_TIME
    )
    partitions = [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]
    answer = produce_partitions(served.bootstrap, partitions)[(topic, 0)]
    assert answer.error_code == KafkaCode.INVALID_TIMESTAMP
    assert [e.batch_index for e in answer.record_errors] == [0]
    assert (
        "Producer should not set timestamp type"
        in answer.record_errors[0].batch_index_error_message
    )
    assert served.server.engine.offsets(topic, 0)[1] == end  # nothing appended
