"""The embedded producer's send_many: many records of one call, encoded
straight into batches, one future for them all.

The records come back in call order with dense offsets that the returned
batches name; they interleave with send's in queue order under one
idempotent sequence; keys pick the partitions send would pick; stamped
batches still fit max.message.bytes; a refused batch fails the call; and
transactions, asyncio and a closed producer behave as they do for send.
"""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest

import engine
import native
from engine.client.partitioner import partition_for_key
from engine.clock import ManualClock
from engine.types import SentBatch, TopicPartition
from tests.engine.conftest import EngineFactory

NOW = 1_700_000_000_000
TIMEOUT = 30.0


def read_all(e: engine.Engine, topic: str, partition: int = 0) -> list[native.Record]:
    out: list[native.Record] = []
    for batch in e.fetch(topic, partition, 0, 64 * 1024 * 1024).records:
        out += native.decode_records(batch, skip_control=True)
    return out


def test_records_come_back_in_order_at_the_offsets_the_batches_name(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory(clock=ManualClock(NOW))
    e.create_topic("t", 1)
    values = [os.urandom(i % 300) for i in range(2000)]
    keys = [b"k%d" % i if i % 3 else None for i in range(2000)]
    with e.producer(batch_size=16 * 1024) as producer:
        sent = producer.send_many("t", values, keys, headers=[("trace", b"7")]).result(TIMEOUT)
    # Cut at batch_size: several batches, dense, in call order.
    assert len(sent) > 10
    assert sent[0].base_offset == 0
    for before, after in itertools.pairwise(sent):
        assert after.base_offset == before.base_offset + before.record_count
    assert sum(s.record_count for s in sent) == 2000
    records = read_all(e, "t")
    assert [(r.offset, r.key, r.value) for r in records] == [
        (i, keys[i], values[i]) for i in range(2000)
    ]
    assert {r.timestamp for r in records} == {NOW}
    assert {r.headers for r in records} == {(("trace", b"7"),)}
    stored = native.scan_batches(b"".join(e.fetch("t", 0, 0, 64 * 1024 * 1024).records))
    assert max(h.size for h in stored) <= 16 * 1024
    assert [h.record_count for h in stored] == [s.record_count for s in sent]


def test_send_and_send_many_interleave_in_queue_order_under_one_sequence(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    with e.producer(linger_ms=50) as producer:
        first = producer.send("t", b"a", partition=0)
        many = producer.send_many("t", [b"b", b"c", b"d"], partition=0)
        last = producer.send("t", b"e", partition=0)
        again = producer.send_many("t", ("f", "g"), partition=0)
        producer.flush(TIMEOUT)
        assert first.result(TIMEOUT).offset == 0
        assert many.result(TIMEOUT) == [SentBatch(0, 1, 3)]
        assert last.result(TIMEOUT).offset == 4
        assert again.result(TIMEOUT) == [SentBatch(0, 5, 2)]
    batches = native.scan_batches(b"".join(e.fetch("t", 0, 0).records))
    # One producer id, sequences following one another across both paths.
    assert {h.producer_id for h in batches} == {producer.producer_id}
    sequences = [(h.base_sequence, h.record_count) for h in batches]
    assert [s for s, _ in sequences] == [
        sum(n for _, n in sequences[:i]) for i in range(len(sequences))
    ]
    assert [r.value for r in read_all(e, "t")] == [b"a", b"b", b"c", b"d", b"e", b"f", b"g"]


def test_keys_pick_the_partitions_send_picks(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 4)
    keys = [b"session-%d" % (i % 37) for i in range(500)]
    values = [b"%d" % i for i in range(500)]
    with e.producer() as producer:
        sent = producer.send_many("t", values, keys).result(TIMEOUT)
    assert sum(s.record_count for s in sent) == 500
    for partition in range(4):
        expected = [
            v for k, v in zip(keys, values, strict=True) if partition_for_key(k, 4) == partition
        ]
        records = read_all(e, "t", partition)
        assert [r.value for r in records] == expected
        assert all(partition_for_key(r.key or b"", 4) == partition for r in records)


def test_unkeyed_records_of_one_call_stick_to_one_partition(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 3)
    with e.producer() as producer:
        sent = producer.send_many("t", [b"x"] * 100).result(TIMEOUT)
    assert len({s.partition for s in sent}) == 1


def test_stamped_batches_still_fit_max_message_bytes(engine_factory: EngineFactory) -> None:
    # Small records: the stamp more than doubles each one, so batches cut
    # without it would pass max.message.bytes once stamped.
    e = engine_factory()
    e.create_topic("audit", 1, {"tidelog.provenance": "stamp", "max.message.bytes": 16 * 1024})
    with e.producer(principal="User:alice", batch_size=12 * 1024) as producer:
        sent = producer.send_many("audit", [b"%08d" % i for i in range(3000)]).result(TIMEOUT)
    assert sum(s.record_count for s in sent) == 3000
    sizes = [len(b) for b in e.fetch("audit", 0, 0, 64 * 1024 * 1024).records]
    assert max(sizes) <= 16 * 1024
    assert [r.value for r in read_all(e, "audit")] == [b"%08d" % i for i in range(3000)]


def test_a_refused_batch_fails_the_call_and_the_producer_goes_on(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1, {"max.message.bytes": 2048})
    with e.producer(batch_size=1024, idempotent=False) as producer:
        refused = producer.send_many("t", [b"small", b"x" * 4096, b"small"], partition=0)
        with pytest.raises(engine.RecordTooLarge):
            refused.result(TIMEOUT)
        assert producer.send_many("t", [b"next"], partition=0).result(TIMEOUT)[0].record_count == 1
    values = [r.value for r in read_all(e, "t")]
    assert b"x" * 4096 not in values and values[-1] == b"next"


def test_an_empty_call_resolves_at_once_and_a_closed_producer_refuses(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    producer = e.producer()
    assert producer.send_many("t", []).result(0) == []
    with pytest.raises(ValueError, match="keys has 1 items for 2 values"):
        producer.send_many("t", [b"a", b"b"], [b"k"])
    producer.close()
    with pytest.raises(engine.EngineClosed):
        producer.send_many("t", [b"a"])


def test_send_many_async_returns_the_batches(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)

    async def main() -> list[SentBatch]:
        async with e.producer() as producer:
            return await asyncio.wait_for(
                producer.send_many_async("t", [b"a", b"b"], partition=0), TIMEOUT
            )

    assert asyncio.run(main()) == [SentBatch(0, 0, 2)]
    assert [r.value for r in read_all(e, "t")] == [b"a", b"b"]


def test_a_transaction_holds_send_many_records_until_it_commits(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    tp = TopicPartition("t", 0)
    with e.producer(transactional_id="tx") as producer:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send_many("t", [b"a", b"b", b"c"], partition=0).result(TIMEOUT)
        assert e.list_offset("t", 0, -1, "read_committed").offset == 0
        producer.commit_transaction()
    assert e.list_offset("t", 0, -1, "read_committed").offset == 4  # three records, a marker
    batches = native.scan_batches(b"".join(e.fetch(tp.topic, 0, 0).records))
    assert batches[0].is_transactional and batches[0].record_count == 3
    assert [r.value for r in read_all(e, "t")] == [b"a", b"b", b"c"]
