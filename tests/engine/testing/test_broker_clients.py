"""engine.testing's broker with each real Python client, unchanged:
confluent-kafka produces, consumes in a group and commits a transaction a
read_committed consumer then sees (and an aborted one it never sees);
kafka-python produces and consumes in a group; aiokafka does the same
against async_broker on the test's own event loop. Topics are created on
first use, as a default Kafka broker creates them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer

from engine.testing import TestBroker, async_broker, broker

TIMEOUT = 30.0
"""Seconds any one client call, or a whole read, may take."""
VALUES = [f"value-{i}".encode() for i in range(20)]
QUIET = {"log_level": 3}
"""librdkafka's log lines stay out of the test's output."""


def confluent_read(bootstrap: str, topic: str, group: str, **conf: Any) -> list[bytes]:
    """Every value of ``topic`` through a group member, from the start to the end it can see."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            **QUIET,
        }
        | conf
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, f"{topic}: no end of partition in {TIMEOUT} s"
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                break
            value = message.value()
            assert value is not None
            values.append(value)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def test_confluent_kafka_produces_and_consumes_in_a_group() -> None:
    with broker() as running:
        producer = Producer({"bootstrap.servers": running.bootstrap, **QUIET})
        for value in VALUES:
            producer.produce("events", value)
        assert producer.flush(TIMEOUT) == 0
        del producer  # destroyed while the broker still answers

        assert confluent_read(running.bootstrap, "events", "readers") == VALUES
        lag = running.engine.consumer_lag("readers")
        assert [(tp.topic, tp.partition, o.committed_offset) for tp, o in lag.items()] == [
            ("events", 0, len(VALUES))
        ]


def test_confluent_kafka_transactions_commit_and_abort() -> None:
    with broker() as running:
        running.create_topic("ledger")
        producer = Producer(
            {"bootstrap.servers": running.bootstrap, "transactional.id": "tx-1", **QUIET}
        )
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        producer.produce("ledger", b"kept")
        producer.commit_transaction(TIMEOUT)
        producer.begin_transaction()
        producer.produce("ledger", b"dropped")
        assert producer.flush(TIMEOUT) == 0  # on the broker, so the abort has something to abort
        producer.abort_transaction(TIMEOUT)
        producer.begin_transaction()
        producer.produce("ledger", b"kept too")
        producer.commit_transaction(TIMEOUT)
        del producer  # destroyed while the broker still answers

        committed = confluent_read(
            running.bootstrap, "ledger", "committed", **{"isolation.level": "read_committed"}
        )
        assert committed == [b"kept", b"kept too"]
        everything = confluent_read(
            running.bootstrap, "ledger", "all", **{"isolation.level": "read_uncommitted"}
        )
        assert everything == [b"kept", b"dropped", b"kept too"]


def test_kafka_python_produces_and_consumes_in_a_group() -> None:
    with broker(partitions=2) as running:
        producer = KafkaProducer(bootstrap_servers=running.bootstrap)
        for i, value in enumerate(VALUES):
            producer.send("clicks", value, partition=i % 2).get(TIMEOUT)
        producer.close(TIMEOUT)

        consumer = KafkaConsumer(
            "clicks",
            bootstrap_servers=running.bootstrap,
            group_id="kp-readers",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=int(TIMEOUT * 1000),
        )
        try:
            seen: list[bytes] = []
            for message in consumer:
                seen.append(message.value)
                if len(seen) == len(VALUES):
                    break
            consumer.commit()
        finally:
            consumer.close()
        assert sorted(seen) == sorted(VALUES)
        lag = running.engine.consumer_lag("kp-readers")
        assert sorted((tp.partition, o.committed_offset) for tp, o in lag.items()) == [
            (0, len(VALUES) // 2),
            (1, len(VALUES) // 2),
        ]


async def aiokafka_round_trip(running: TestBroker) -> list[bytes]:
    producer = AIOKafkaProducer(bootstrap_servers=running.bootstrap)
    await producer.start()
    try:
        for value in VALUES:
            await producer.send_and_wait("agent-steps", value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "agent-steps",
        bootstrap_servers=running.bootstrap,
        group_id="aio-readers",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        while len(seen) < len(VALUES):
            batches = await consumer.getmany(timeout_ms=500)
            seen.extend(m.value for records in batches.values() for m in records if m.value)
        await consumer.commit()
    finally:
        await consumer.stop()
    return seen


def test_aiokafka_against_the_async_broker() -> None:
    async def scenario() -> None:
        async with async_broker() as running:
            seen = await asyncio.wait_for(aiokafka_round_trip(running), TIMEOUT)
            assert seen == VALUES
            lag = running.engine.consumer_lag("aio-readers")
            assert [o.committed_offset for o in lag.values()] == [len(VALUES)]

    asyncio.run(scenario())
