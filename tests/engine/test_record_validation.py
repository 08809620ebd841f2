"""The embedded produce path validates a client's records as Kafka's
LogValidator does: a compressed batch's records are walked (count, offsets,
format), and records breaking the topic's rules are named in the typed
error's record_errors."""

from __future__ import annotations

import time

import pytest

import native
from engine.errors import InvalidRecord, InvalidTimestamp
from native.records import HEADER_SIZE, Compression, RecordSpec
from tests.engine.conftest import EngineFactory
from tests.native.bombs import wrap

T0 = 1_700_000_000_000


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.SNAPPY, Compression.ZSTD])
def test_keyless_records_on_a_compacted_topic_are_named(
    engine_factory: EngineFactory, codec: Compression
) -> None:
    engine = engine_factory()
    engine.create_topic("c", 1, {"cleanup.policy": "compact"})
    specs = [RecordSpec(T0, b"a", b"1"), RecordSpec(T0, None, b"2"), RecordSpec(T0, None, None)]
    with pytest.raises(InvalidRecord) as caught:
        engine.produce("c", 0, native.encode_batch(specs, compression=codec))
    assert caught.value.error_code == 87
    assert [index for index, _ in caught.value.record_errors] == [1, 2]
    assert engine.offsets("c", 0) == (0, 0)


def test_records_outside_the_timestamp_bounds_are_named(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.create_topic("t", 1, {"message.timestamp.after.max.ms": "60000"})
    now = int(time.time() * 1000)
    specs = [RecordSpec(now, b"k", b"1"), RecordSpec(now + 3_600_000, b"k", b"2")]
    with pytest.raises(InvalidTimestamp) as caught:
        engine.produce("t", 0, native.encode_batch(specs, compression=Compression.LZ4))
    assert caught.value.error_code == 32
    assert [index for index, _ in caught.value.record_errors] == [1]
    accepted = engine.produce("t", 0, native.encode_batch(specs[:1], compression=Compression.LZ4))
    assert accepted.base_offset == 0


def test_a_compressed_batch_lying_about_its_count_moves_no_offsets(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory()
    engine.create_topic("t", 1)
    area = native.encode_batch([RecordSpec(T0, b"k", b"v")])[HEADER_SIZE:]
    liar = wrap(Compression.GZIP, native.compression.compress(Compression.GZIP, area), 10**9)
    with pytest.raises(InvalidRecord, match="recordCount 1000000000, its records hold 1"):
        engine.produce("t", 0, liar)
    good = native.encode_batch([RecordSpec(T0, b"k", b"v")], compression=Compression.GZIP)
    assert engine.produce("t", 0, good).last_offset == 0
    assert engine.offsets("t", 0) == (0, 1)
