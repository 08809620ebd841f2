"""Transactions with aiokafka against ``tidelog serve``.

A consume-transform-produce loop commits its output and its group's
offsets together (``send_offsets_to_transaction``), aborting half the
transactions at random: read_committed sees each input transformed once,
in order; read_uncommitted sees every attempt and no control record. A
zombie producer is fenced. A server killed with SIGKILL while a
transaction holds both records and group offsets aborts it once its
timeout passes: neither the records nor the offsets ever become visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import ProducerFenced

from tests.server.conftest import ServerProcess

TIMEOUT = 30.0
"""Seconds any one client call may take before the test fails."""

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 4 * TIMEOUT)

    return asyncio.run(bounded())


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, TIMEOUT)


async def create_topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await within(admin.start())
    try:
        await within(admin.create_topics([NewTopic(n, partitions, 1) for n in names]))
    finally:
        await admin.close()


async def started_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT * 1000), **options
    )
    await within(producer.start())
    return producer


async def read_values(
    bootstrap: str, topic: str, isolation_level: str, partitions: int = 1
) -> dict[int, list[bytes]]:
    """Every value from the beginning to the end the consumer can see (the
    last stable offset when read_committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await within(consumer.start())
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        ends = await within(consumer.end_offsets(assigned))
        out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + TIMEOUT
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            assert time.monotonic() < deadline, f"{topic}: not at {ends} in {TIMEOUT} s"
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                out[tp.partition] += [m.value for m in messages if m.value is not None]
        return out
    finally:
        await consumer.stop()


async def plain_produce(bootstrap: str, topic: str, values: list[bytes], partition: int) -> None:
    producer = await started_producer(bootstrap)
    try:
        for value in values:
            await within(producer.send_and_wait(topic, value, partition=partition))
    finally:
        await producer.stop()


# -- consume, transform, produce ---------------------------------------------------------------


def test_consume_transform_produce_is_exactly_once(transaction_server: ServerProcess) -> None:
    run(_consume_transform_produce(transaction_server.bootstrap))


async def _consume_transform_produce(bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    source, sink, group = f"in-{suffix}", f"out-{suffix}", f"eos-{suffix}"
    await create_topics(bootstrap, source, sink, partitions=2)
    inputs = {p: [b"%d-%d" % (p, i) for i in range(30)] for p in range(2)}
    for partition, values in inputs.items():
        await plain_produce(bootstrap, source, values, partition)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = await started_producer(bootstrap, transactional_id=f"eos-{suffix}")
    await within(consumer.start())
    rng = random.Random(1147)
    attempts: dict[int, list[bytes]] = {0: [], 1: []}
    aborted = 0
    try:
        deadline = time.monotonic() + 3 * TIMEOUT
        while not await _caught_up(consumer, source, inputs):
            assert time.monotonic() < deadline, "the loop did not finish"
            batch = await consumer.getmany(timeout_ms=300, max_records=10)
            if not batch:
                continue
            await within(producer.begin_transaction())
            sent = []
            offsets = {}
            for tp, messages in batch.items():
                for message in messages:
                    value = b"T:" + (message.value or b"")
                    sent.append(await producer.send(sink, value, partition=tp.partition))
                    attempts[tp.partition].append(value)
                offsets[tp] = messages[-1].offset + 1
            await within(producer.send_offsets_to_transaction(offsets, group))
            await within(asyncio.gather(*sent))  # in the log before the outcome
            if rng.random() < 0.5:
                await within(producer.abort_transaction())
                aborted += 1
                for tp in batch:  # back to the group's committed offsets
                    committed = await within(consumer.committed(tp))
                    consumer.seek(tp, committed or 0)
            else:
                await within(producer.commit_transaction())
    finally:
        await consumer.stop()
        await producer.stop()
    assert aborted > 0
    committed_output = await read_values(bootstrap, sink, "read_committed", 2)
    assert committed_output == {p: [b"T:" + v for v in values] for p, values in inputs.items()}
    assert await read_values(bootstrap, sink, "read_uncommitted", 2) == attempts


async def _caught_up(
    consumer: AIOKafkaConsumer, topic: str, inputs: dict[int, list[bytes]]
) -> bool:
    for partition, values in inputs.items():
        committed = await within(consumer.committed(TopicPartition(topic, partition)))
        if committed != len(values):
            return False
    return True


# -- fencing -----------------------------------------------------------------------------------


def test_a_zombie_producer_is_fenced(transaction_server: ServerProcess, topic: str) -> None:
    run(_zombie(transaction_server.bootstrap, topic))


async def _zombie(bootstrap: str, topic: str) -> None:
    await create_topics(bootstrap, topic)
    zombie = await started_producer(bootstrap, transactional_id=f"zombie-{topic}")
    await within(zombie.begin_transaction())
    await within(zombie.send_and_wait(topic, b"zombie", partition=0))
    fresh = await started_producer(bootstrap, transactional_id=f"zombie-{topic}")
    try:
        async with fresh.transaction():
            await within(fresh.send_and_wait(topic, b"fresh", partition=0))
        with pytest.raises(ProducerFenced):
            await within(zombie.send_and_wait(topic, b"zombie again", partition=0))
            await within(zombie.commit_transaction())
    finally:
        await fresh.stop()
        with contextlib.suppress(ProducerFenced):
            await within(zombie.stop())
    assert await read_values(bootstrap, topic, "read_committed") == {0: [b"fresh"]}
    assert await read_values(bootstrap, topic, "read_uncommitted") == {0: [b"zombie", b"fresh"]}


# -- SIGKILL -----------------------------------------------------------------------------------


def test_a_killed_transaction_with_offsets_is_aborted_whole(
    own_transaction_server: ServerProcess, topic: str
) -> None:
    run(_killed(own_transaction_server, topic))


async def _killed(server: ServerProcess, topic: str) -> None:
    bootstrap = server.bootstrap
    group, source, sink = f"g-{topic}", f"{topic}-in", f"{topic}-out"
    await create_topics(bootstrap, source, sink)
    await plain_produce(bootstrap, source, [b"a", b"b", b"c"], 0)
    producer = await started_producer(
        bootstrap, transactional_id=f"killed-{topic}", transaction_timeout_ms=4000
    )
    await within(producer.begin_transaction())
    await within(producer.send_and_wait(sink, b"T:a", partition=0))
    await within(producer.send_offsets_to_transaction({TopicPartition(source, 0): 1}, group))
    server.kill()  # the transaction holds a record and an offset
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), 1)  # the client goes too
    server.start()
    deadline = time.monotonic() + TIMEOUT
    while await _end_offset(bootstrap, sink, "read_committed") != 2:  # the record, its marker
        assert time.monotonic() < deadline, "the killed transaction was never aborted"
        assert await read_values(bootstrap, sink, "read_committed") == {0: []}
        assert await _committed(bootstrap, group, source) is None
        await asyncio.sleep(0.2)
    assert await read_values(bootstrap, sink, "read_committed") == {0: []}
    assert await read_values(bootstrap, sink, "read_uncommitted") == {0: [b"T:a"]}
    assert await _committed(bootstrap, group, source) is None


async def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await within(admin.start())
    try:
        offsets = await within(admin.list_consumer_group_offsets(group))
    finally:
        await admin.close()
    found = offsets.get(TopicPartition(topic, 0))
    return None if found is None or found.offset < 0 else int(found.offset)


async def _end_offset(bootstrap: str, topic: str, isolation_level: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level)
    await within(consumer.start())
    try:
        tp = TopicPartition(topic, 0)
        return int((await within(consumer.end_offsets([tp])))[tp])
    finally:
        await consumer.stop()
