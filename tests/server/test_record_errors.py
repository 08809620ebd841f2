"""Per-record produce errors (KIP-467) as real clients see them: a keyless
record on a compacted topic and a timestamp outside the topic's bounds are
named by their index in the batch, in Kafka's LogValidator's words.
kafka-python hands each record its own error (the named ones their message,
the rest of the batch a generic one); librdkafka reports the batch's code."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError, InvalidTimestampError
from kafka.errors import KafkaError as PyKafkaError

import native
from native.records import RecordSpec, TimestampType
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.test_bombs import (
    INVALID_TIMESTAMP,
    NONE,
    T0,
    answer,
    new_topic,
    produce,
)
from tests.server.wire import Wire

TIMEOUT = 30.0


def create(server: ServerProcess, topic: str, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    futures = admin.create_topics([NewTopic(topic, 1, config=configs)], request_timeout=TIMEOUT)
    futures[topic].result(TIMEOUT)


def kafka_python_outcomes(
    server: ServerProcess, topic: str, records: list[tuple[bytes | None, int | None]]
) -> list[BaseException | None]:
    """Sends ``records`` (key, timestamp) as one batch; each one's error."""
    producer = KafkaProducer(
        bootstrap_servers=server.bootstrap, linger_ms=200, retries=0, acks="all"
    )
    try:
        futures = [
            producer.send(topic, b"v", key=key, partition=0, timestamp_ms=ts) for key, ts in records
        ]
        producer.flush(TIMEOUT)
    finally:
        producer.close(10)
    return [future.exception for future in futures]


def test_kafka_python_names_each_keyless_record(kafka_server: ServerProcess, topic: str) -> None:
    create(kafka_server, topic, **{"cleanup.policy": "compact"})
    outcomes = kafka_python_outcomes(
        kafka_server, topic, [(b"a", None), (None, None), (b"c", None), (None, None)]
    )
    message = f"Compacted topic cannot accept message without key in topic partition {topic}-0"
    for index in (1, 3):
        error = outcomes[index]
        assert isinstance(error, InvalidRecordError), error
        assert message in str(error)
    for index in (0, 2):  # refused with their batch, not named
        error = outcomes[index]
        assert isinstance(error, PyKafkaError) and not isinstance(error, InvalidRecordError)
        assert "part of a batch" in str(error)


def test_kafka_python_names_the_record_with_a_timestamp_out_of_bounds(
    kafka_server: ServerProcess, topic: str
) -> None:
    create(kafka_server, topic, **{"message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    late = now + 3_600_000
    outcomes = kafka_python_outcomes(kafka_server, topic, [(b"k", now), (b"k", late)])
    error = outcomes[1]
    assert isinstance(error, InvalidTimestampError), error
    assert f"Timestamp {late} of message with offset 1 is out of range." in str(error)
    assert outcomes[0] is not None and "part of a batch" in str(outcomes[0])


@pytest.mark.parametrize(
    ("configs", "key", "offset_ms", "code"),
    [
        ({"cleanup.policy": "compact"}, None, 0, KafkaError.INVALID_RECORD),
        ({"message.timestamp.before.max.ms": "60000"}, b"k", -3_600_000, 32),
    ],
)
def test_librdkafka_reports_the_batchs_code(
    kafka_server: ServerProcess,
    topic: str,
    configs: dict[str, str],
    key: bytes | None,
    offset_ms: int,
    code: int,
) -> None:
    create(kafka_server, topic, **configs)
    reports: list[tuple[KafkaError | None, Message]] = []
    settings: dict[str, Any] = {
        "bootstrap.servers": kafka_server.bootstrap,
        "message.timeout.ms": 10000,
        **quiet_librdkafka(),
    }
    producer = Producer(settings)
    producer.produce(
        topic,
        b"v",
        key=key,
        partition=0,
        timestamp=int(time.time() * 1000) + offset_ms,
        on_delivery=lambda error, message: reports.append((error, message)),
    )
    assert producer.flush(TIMEOUT) == 0
    [(error, _)] = reports
    assert error is not None and error.code() == code, error
    assert not error.retriable()


def test_a_producers_log_append_time_batch_is_refused_record_by_record(
    kafka_server: ServerProcess,
) -> None:
    """On a LogAppendTime topic the broker stamps the time: a batch claiming
    LogAppendTime itself gets INVALID_TIMESTAMP, every record named (Kafka's
    LogValidator.validateTimestamp). A CreateTime batch is stamped instead."""
    specs = [RecordSpec(T0, b"k", b"one"), RecordSpec(T0, None, b"")]
    claimed = native.encode_batch(specs, timestamp_type=TimestampType.LOG_APPEND_TIME)
    with Wire(kafka_server.bootstrap) as wire:
        topic = new_topic(wire, message_timestamp_type="LogAppendTime")
        refused = answer(wire, produce(topic, claimed))
        assert refused.error_code == INVALID_TIMESTAMP
        assert refused.error_message == (
            "One or more records have been rejected due to invalid timestamp"
        )
        assert [(e.batch_index, e.batch_index_error_message) for e in refused.record_errors] == [
            (
                0,
                f"Invalid timestamp type in message DefaultRecord(offset=0, timestamp={T0}, "
                "key=1 bytes, value=3 bytes). Producer should not set timestamp type to "
                "LogAppendTime.",
            ),
            (
                1,
                f"Invalid timestamp type in message DefaultRecord(offset=1, timestamp={T0}, "
                "key=0 bytes, value=0 bytes). Producer should not set timestamp type to "
                "LogAppendTime.",
            ),
        ]
        accepted = answer(wire, produce(topic, native.encode_batch(specs)))
        assert (accepted.error_code, accepted.base_offset) == (NONE, 0)
