"""Our record batches against kafka-python's record code, in both directions.

kafka-python is an independent implementation of the v2 batch format: what it
builds we must validate and decode to the same records, what we build it must
parse and CRC-check, and librdkafka's captures must read the same in both.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import codec as kafka_codec
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from native.records import BatchHeader, Compression, RecordSpec
from tests.native.conftest import IMPLEMENTATIONS, differential

DATA = Path(__file__).parent.parent / "data" / "librdkafka"

# kafka-python reads and writes a codec only when its library is installed
# (python-snappy for snappy, lz4 and zstandard for the others).
KAFKA_PYTHON_HAS = {
    Compression.NONE: True,
    Compression.GZIP: kafka_codec.has_gzip(),
    Compression.SNAPPY: kafka_codec.has_snappy(),
    Compression.LZ4: kafka_codec.has_lz4(),
    Compression.ZSTD: kafka_codec.has_zstd(),
}
SHARED_CODECS = [codec for codec, present in KAFKA_PYTHON_HAS.items() if present]

# kafka-python's builder takes non-negative millisecond timestamps.
record_specs = st.builds(
    RecordSpec,
    st.integers(0, 2**41),
    st.none() | st.binary(max_size=300),
    st.none() | st.binary(max_size=300),
    st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=4).map(
        tuple
    ),
)
record_lists = st.lists(record_specs, min_size=1, max_size=30)
producers = st.one_of(
    st.just((-1, -1, -1)),
    st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**15 - 1), st.integers(0, 2**31 - 1)),
)


def _theirs(batch: Any) -> list[tuple[Any, ...]]:
    """(offset, timestamp, key, value, headers) as kafka-python reads them."""
    if isinstance(batch, bytes | bytearray):
        batch = DefaultRecordBatch(bytearray(batch))
    return [
        (r.offset, r.timestamp, r.key, r.value, tuple((k, v) for k, v in r.headers)) for r in batch
    ]


def _ours(impl: ModuleType, batch: bytes | bytearray) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in impl.decode_records(batch)]


def _same_header(ours: BatchHeader, theirs: DefaultRecordBatch) -> None:
    assert ours.base_offset == theirs.base_offset
    assert ours.size == theirs.size_in_bytes
    assert ours.partition_leader_epoch == theirs.leader_epoch
    assert ours.magic == theirs.magic
    assert ours.crc == theirs.crc
    assert ours.compression == theirs.compression_type
    assert ours.timestamp_type == theirs.timestamp_type
    assert ours.is_transactional == theirs.is_transactional
    assert ours.is_control == theirs.is_control_batch
    assert ours.last_offset_delta == theirs.last_offset_delta
    assert ours.base_timestamp == theirs.first_timestamp
    assert ours.max_timestamp == theirs.max_timestamp
    assert ours.producer_id == theirs.producer_id
    assert ours.producer_epoch == theirs.producer_epoch
    assert ours.base_sequence == theirs.base_sequence
    assert ours.record_count == theirs.records_count


def _kafka_python_build(
    specs: list[RecordSpec],
    codec: Compression,
    producer: tuple[int, int, int],
    base_offset: int,
) -> bytes:
    producer_id, producer_epoch, base_sequence = producer
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for index, spec in enumerate(specs):
        builder.append(
            index,
            timestamp=spec.timestamp,
            key=spec.key,
            value=spec.value,
            headers=list(spec.headers),
        )
    batch = builder.build()
    # The builder leaves baseOffset 0 for the broker to set, as we do on produce.
    batch[0:8] = base_offset.to_bytes(8, "big", signed=True)
    return bytes(batch)


def test_kafka_python_reads_gzip_lz4_and_zstd_here() -> None:
    """The codecs whose libraries are project dependencies must be cross-checked."""
    assert {Compression.GZIP, Compression.LZ4, Compression.ZSTD} <= set(SHARED_CODECS)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(
    specs=record_lists,
    codec=st.sampled_from(SHARED_CODECS),
    producer=producers,
    base_offset=st.integers(0, 2**62),
)
def test_kafka_python_batches_validate_and_decode_with_ours(
    impl: ModuleType,
    specs: list[RecordSpec],
    codec: Compression,
    producer: tuple[int, int, int],
    base_offset: int,
) -> None:
    batch = _kafka_python_build(specs, codec, producer, base_offset)
    (header,) = impl.validate_batches(batch)
    _same_header(header, DefaultRecordBatch(bytearray(batch)))
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == producer
    decoded = impl.decode_records(batch)
    assert [(r.timestamp, r.key, r.value, r.headers) for r in decoded] == [
        tuple(spec) for spec in specs
    ]
    assert [r.offset for r in decoded] == list(range(base_offset, base_offset + len(specs)))
    assert _ours(impl, batch) == _theirs(batch)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(
    batches=st.lists(
        st.tuples(record_lists, st.sampled_from(SHARED_CODECS), producers), min_size=1, max_size=4
    ),
    base_offset=st.integers(0, 2**40),
)
def test_our_batches_parse_and_pass_the_crc_check_in_kafka_python(
    impl: ModuleType,
    batches: list[tuple[list[RecordSpec], Compression, tuple[int, int, int]]],
    base_offset: int,
) -> None:
    encoded = []
    next_offset = base_offset
    for specs, codec, (producer_id, producer_epoch, base_sequence) in batches:
        encoded.append(
            impl.encode_batch(
                specs,
                base_offset=next_offset,
                compression=codec,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                base_sequence=base_sequence,
            )
        )
        next_offset += len(specs)
    buffer = b"".join(encoded)
    theirs = MemoryRecords(buffer)
    ours = impl.validate_batches(buffer)
    for header, batch, (specs, codec, producer) in zip(ours, encoded, batches, strict=True):
        parsed = theirs.next_batch()
        assert isinstance(parsed, DefaultRecordBatch)
        assert parsed.validate_crc()
        _same_header(header, parsed)
        assert parsed.compression_type == codec
        assert (parsed.producer_id, parsed.producer_epoch, parsed.base_sequence) == producer
        assert [(t[1], t[2], t[3], t[4]) for t in _theirs(parsed)] == [tuple(s) for s in specs]
        assert _theirs(batch) == _ours(impl, batch)
    assert not theirs.has_next()
    assert [r[0] for r in _ours(impl, buffer)] == list(range(base_offset, next_offset))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(specs=record_lists, codec=st.sampled_from(SHARED_CODECS), at=st.integers(0, 2**41))
def test_kafka_python_reads_our_log_append_time_rewrite(
    impl: ModuleType, specs: list[RecordSpec], codec: Compression, at: int
) -> None:
    batch = bytearray(impl.encode_batch(specs, compression=codec))
    impl.rewrite_batch(batch, 0, 42, partition_leader_epoch=9, log_append_time=at)
    parsed = DefaultRecordBatch(bytearray(batch))
    assert parsed.validate_crc()
    assert (parsed.base_offset, parsed.leader_epoch, parsed.timestamp_type) == (42, 9, 1)
    assert parsed.max_timestamp == at
    assert _theirs(batch) == _ours(impl, batch)
    assert {r[1] for r in _theirs(batch)} == {at}


@pytest.mark.parametrize("path", sorted(DATA.glob("*.bin")), ids=lambda p: p.stem)
def test_librdkafka_captures_read_the_same_in_kafka_python(impl: ModuleType, path: Path) -> None:
    data = path.read_bytes()
    headers = impl.validate_batches(data)
    if not KAFKA_PYTHON_HAS[Compression(headers[-1].compression)]:
        pytest.skip(f"kafka-python lacks the library for {path.stem}")
    theirs = MemoryRecords(data)
    for header in headers:
        parsed = theirs.next_batch()
        assert parsed.validate_crc()
        _same_header(header, parsed)
        batch = data[header.position : header.position + header.size]
        assert _ours(impl, batch) == _theirs(parsed)
    assert not theirs.has_next()
