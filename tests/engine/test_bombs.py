"""Batches that inflate without bound, of every codec. Produced, they are
refused before a topic's compression.type re-encodes them. Stored by a
version that did not walk compressed records on produce, ListOffsets by time
(before and after a restart) and the embedded consumer refuse them with a
typed error at the topic's inflation limit, and the log cleaner leaves their
partition alone; the process stays small throughout."""

from __future__ import annotations

import dataclasses

import pytest

import native
from engine.client.consumer import Consumer
from engine.engine import Engine
from engine.errors import CorruptRecord
from engine.partition import inflation_limit
from native.records import RecordSpec
from tests.engine.conftest import FAST_STORE, EngineFactory
from tests.native import bombs

T0 = 1_700_000_000_000
HEADROOM = 256 * bombs.MIB
"""Far below what the bombs inflate to (10 GiB, or a 4 GiB snappy claim)."""


STORE = dataclasses.replace(FAST_STORE, wal_segment_bytes=4 * bombs.MIB)
"""WAL segments that take a 320 KiB batch."""


def _store_unvalidated(engine: Engine, topic: str, batch: bytes) -> int:
    """Appends ``batch`` straight to the partition's stream, past validation,
    as an older version stored it; returns its offset."""
    partition = engine.partition(topic, 0)
    buffer = bytearray(batch)
    (header,) = native.scan_batches(buffer)
    with partition.lock:
        base = partition.store.next_offset(partition.stream_id)
        native.rewrite_batch(buffer, 0, base, partition.leader_epoch)
        future = partition.store.submit(
            partition.stream_id, base, base + header.last_offset_delta, bytes(buffer)
        )
        partition.time_index.note_append(base, header.max_timestamp, len(buffer))
    future.result(timeout=30)
    return base


def _good(timestamp: int, value: bytes = b"v") -> bytes:
    return native.encode_batch([RecordSpec(timestamp, b"k", value)])


def _values_until_stopped_at(consumer: Consumer, bad: int) -> list[bytes | None]:
    """The values polled until the consumer stops at the batch at ``bad``,
    and those it hands out after."""
    seen: list[bytes | None] = []
    with pytest.raises(CorruptRecord, match=f"offset {bad} cannot be decoded"):
        for _ in range(10):
            seen += [record.value for record in consumer.poll(timeout=1.0)]
    seen += [record.value for record in consumer.poll(timeout=1.0)]
    return seen


@pytest.fixture(params=sorted(bombs.BOMBS))
def bomb(request: pytest.FixtureRequest) -> bytes:
    codec, build = bombs.BOMBS[request.param]
    return bombs.wrap(codec, build(), timestamp=T0 + 10)


def test_list_offsets_by_time_refuses_a_stored_bomb_before_and_after_restart(
    engine_factory: EngineFactory, bomb: bytes
) -> None:
    engine = engine_factory(store=STORE)
    engine.create_topic("t", 1)
    engine.produce("t", 0, _good(T0))
    _store_unvalidated(engine, "t", bomb)
    peak = bombs.vm_hwm_bytes()
    assert engine.list_offset("t", 0, T0).offset == 0  # answered before the bomb
    with pytest.raises(CorruptRecord, match="inflates past the limit"):
        engine.list_offset("t", 0, T0 + 5)
    engine.close()
    reopened = engine_factory(store=STORE)
    with pytest.raises(CorruptRecord, match="inflates past the limit"):
        reopened.list_offset("t", 0, T0 + 5)
    assert reopened.list_offset("t", 0, T0).offset == 0
    assert bombs.vm_hwm_bytes() < peak + HEADROOM


def test_the_consumer_stops_at_a_stored_bomb_and_goes_on_past_it(
    engine_factory: EngineFactory, bomb: bytes
) -> None:
    engine = engine_factory(store=STORE)
    engine.create_topic("t", 1)
    engine.produce("t", 0, _good(T0, b"before"))
    bad = _store_unvalidated(engine, "t", bomb)
    engine.produce("t", 0, _good(T0 + 20, b"after"))
    peak = bombs.vm_hwm_bytes()
    consumer = engine.consumer(auto_offset_reset="earliest")
    consumer.assign([("t", 0)])
    seen = _values_until_stopped_at(consumer, bad)
    assert seen == [b"before"]
    assert consumer.position(("t", 0)) == bad
    consumer.seek(("t", 0), bad + 1)
    assert [record.value for record in consumer.poll(timeout=5.0)] == [b"after"]
    consumer.close()
    assert bombs.vm_hwm_bytes() < peak + HEADROOM


def test_the_consumer_hands_out_the_batches_stored_with_a_bomb_before_it(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory(store=STORE)
    engine.create_topic("t", 1)
    engine.produce("t", 0, _good(T0, b"first"))
    # One append of two batches, as an older version stored a produce of both.
    good, bomb = _good(T0 + 5, b"before"), bombs.bomb_batch("snappy")
    buffer = bytearray(good + bomb)
    partition = engine.partition("t", 0)
    with partition.lock:
        base = partition.store.next_offset(partition.stream_id)
        for offset, header in enumerate(native.scan_batches(buffer), start=base):
            native.rewrite_batch(buffer, header.position, offset, partition.leader_epoch)
        future = partition.store.submit(partition.stream_id, base, base + 1, bytes(buffer))
    future.result(timeout=30)
    engine.produce("t", 0, _good(T0 + 20, b"after"))
    bad = base + 1
    consumer = engine.consumer(auto_offset_reset="earliest")
    consumer.assign([("t", 0)])
    seen = _values_until_stopped_at(consumer, bad)
    assert seen == [b"first", b"before"]
    assert consumer.position(("t", 0)) == bad
    consumer.seek(("t", 0), bad + 1)
    assert [record.value for record in consumer.poll(timeout=5.0)] == [b"after"]
    consumer.close()


def test_a_topics_limit_follows_its_max_message_bytes(engine_factory: EngineFactory) -> None:
    engine = engine_factory(store=STORE)
    engine.create_topic("small", 1, {"max.message.bytes": "1000"})
    engine.create_topic("large", 1, {"max.message.bytes": str(4 * bombs.MIB)})
    assert inflation_limit(engine.topic_config("small")) == bombs.MIB
    assert inflation_limit(engine.topic_config("large")) == 128 * bombs.MIB
    value = bytes(2 * bombs.MIB)  # deflates to about 2 KiB, inflates past 1 MiB
    batch = native.encode_batch([RecordSpec(T0, b"k", value)], compression=native.Compression.GZIP)
    with pytest.raises(CorruptRecord, match="inflates past the limit of 1048576"):
        engine.produce("small", 0, batch)
    assert engine.produce("large", 0, batch).base_offset == 0


def test_a_bomb_is_refused_before_the_topics_codec_re_encodes_it(
    engine_factory: EngineFactory, bomb: bytes
) -> None:
    engine = engine_factory(store=STORE)
    codec = "lz4" if native.scan_batches(bomb)[0].compression != native.Compression.LZ4 else "gzip"
    engine.create_topic("t", 1, {"compression.type": codec})
    peak = bombs.vm_hwm_bytes()
    with pytest.raises(CorruptRecord, match="inflates past the limit"):
        engine.produce("t", 0, bomb)
    assert bombs.vm_hwm_bytes() < peak + HEADROOM
    assert engine.offsets("t", 0) == (0, 0)


def test_the_cleaner_leaves_a_partition_with_a_stored_bomb_alone(
    engine_factory: EngineFactory, bomb: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_factory(store=STORE)
    engine.create_topic("c", 1, {"cleanup.policy": "compact"})
    engine.produce("c", 0, _good(T0, b"old"))
    _store_unvalidated(engine, "c", bomb)
    engine.produce("c", 0, _good(T0 + 20, b"new"))
    engine.flush()
    engine.checkpoint()
    peak = bombs.vm_hwm_bytes()
    assert engine.clean() == 0
    assert "c-0 is not cleaned: a batch cannot be decoded" in caplog.text
    assert bombs.vm_hwm_bytes() < peak + HEADROOM
    assert engine.offsets("c", 0) == (0, 3)
