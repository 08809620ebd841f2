"""A Produce partition's records framed as Kafka frames them
(produce_batch_size, and validate_batches' one_batch), C and Python alike.

Kafka 4.0 (apache/kafka at 1eb7644, October 2024) reads them in this order:
KafkaApis.handleProduceRequest calls ProduceRequest.validateRecords, whose
MemoryRecords iterator (ByteBufferLogInputStream.nextBatch) frames the first
batch and looks for a second; only then does UnifiedLog's
analyzeAndValidateRecords check the one batch (CRC, then LogValidator its
records), and trimInvalidBytes drop whatever followed it unframed."""

from __future__ import annotations

import struct
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native import _pure
from native.errors import (
    CorruptBatch,
    InvalidBatchLength,
    InvalidMagic,
    InvalidRecordCount,
    NoBatch,
    NonZeroBaseOffset,
    SecondBatch,
    TruncatedBatch,
    UnsupportedCompression,
    UnsupportedMagic,
)
from native.records import Compression, RecordSpec
from tests.native.conftest import C_IMPL, needs_c

BATCH = _pure.encode_batch([RecordSpec(1_700_000_000_000, b"k", b"value", ())])
OTHER = _pure.encode_batch([RecordSpec(1_700_000_000_000, None, b"x" * 200, ())])


def _frame(length: int, magic: int = 2, size: int | None = None) -> bytes:
    """A frame's first ``size`` bytes (all that ``length`` claims if None)
    with ``magic`` where a batch has it."""
    whole = bytearray(struct.pack(">qi", 0, length) + bytes(max(length, 5)))
    whole[16] = magic & 0xFF
    return bytes(whole[: 12 + length if size is None else size])


def _miscounted() -> bytes:
    """BATCH with a recordCount its lastOffsetDelta does not imply (INVALID_RECORD)."""
    batch = bytearray(BATCH)
    struct.pack_into(">i", batch, 57, 4)
    struct.pack_into(">I", batch, 17, _pure.crc32c(bytes(batch[21:])))
    return bytes(batch)


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"\x00", id="one-byte"),
        pytest.param(OTHER[:11], id="short-of-a-length"),
        pytest.param(OTHER[:12], id="length-only"),
        pytest.param(OTHER[:16], id="short-of-the-magic"),
        pytest.param(OTHER[:17], id="up-to-the-magic"),
        pytest.param(OTHER[:-1], id="one-byte-short"),
        pytest.param(_frame(14, magic=0, size=20), id="a-magic-0-frame-cut"),
        pytest.param(_frame(2**31 - 1, size=40), id="a-length-past-any-buffer"),
    ],
)
def test_a_tail_kafka_frames_nothing_in_is_dropped(impl: ModuleType, tail: bytes) -> None:
    """Kafka's iterator ends at a tail too short to frame or shorter than its
    length claims, and UnifiedLog.trimInvalidBytes appends the batch before it."""
    data = BATCH + tail
    assert impl.produce_batch_size(data) == len(BATCH)
    (header,) = impl.validate_batches(data, one_batch=True)
    assert header == impl.validate_batches(BATCH)[0]
    assert header.size == len(BATCH)


@pytest.mark.parametrize(
    ("tail", "error"),
    [
        pytest.param(_frame(13), InvalidBatchLength, id="length-13"),
        pytest.param(_frame(-7, size=12), InvalidBatchLength, id="negative-length-alone"),
        pytest.param(_frame(40, magic=3, size=17), InvalidMagic, id="magic-3-cut-at-the-magic"),
        pytest.param(_frame(400, magic=-1, size=30), InvalidMagic, id="magic-minus-1-cut"),
    ],
)
def test_a_tail_kafkas_iterator_calls_corrupt_is_corrupt_message(
    impl: ModuleType, tail: bytes, error: type[Exception]
) -> None:
    """nextBatchSize throws CorruptRecordException at a length below 14
    (before it asks for the magic) and at a magic outside 0 to 2 (before it
    asks for the whole frame), however short the frame."""
    with pytest.raises(error) as raised:
        impl.produce_batch_size(BATCH + tail)
    assert raised.value.position == len(BATCH)
    assert raised.value.kafka_error == "CORRUPT_MESSAGE"
    with pytest.raises(error):
        impl.validate_batches(BATCH + tail, one_batch=True)


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(_frame(5), id="length-5"),
        pytest.param(_frame(50, magic=7, size=20), id="magic-7-cut"),
    ],
)
def test_a_first_batch_with_a_fault_of_its_own_ahead_of_a_corrupt_frame_is_corrupt(
    impl: ModuleType, tail: bytes
) -> None:
    """validateRecords frames the second before the LogValidator reads the
    first's records: CORRUPT_MESSAGE, not the first batch's INVALID_RECORD."""
    with pytest.raises(InvalidRecordCount):
        impl.validate_batches(_miscounted(), one_batch=True)
    with pytest.raises((InvalidBatchLength, InvalidMagic)) as raised:
        impl.validate_batches(_miscounted() + tail, one_batch=True)
    assert raised.value.kafka_error == "CORRUPT_MESSAGE"
    # A whole second batch behind it is INVALID_RECORD for being a second one.
    with pytest.raises(SecondBatch):
        impl.validate_batches(_miscounted() + OTHER, one_batch=True)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(BATCH[:11], id="short-of-a-length"),
        pytest.param(BATCH[:30], id="header-only"),
        pytest.param(BATCH[:-1], id="one-byte-short"),
    ],
)
def test_records_kafka_frames_no_batch_in_are_invalid_record(impl: ModuleType, data: bytes) -> None:
    """validateRecords: "must have at least one record batch per partition"."""
    with pytest.raises(NoBatch) as raised:
        impl.produce_batch_size(data)
    assert raised.value.kafka_error == "INVALID_RECORD"
    assert raised.value.found == len(data)
    with pytest.raises(NoBatch):
        impl.validate_batches(data, one_batch=True)
    if data:  # without one_batch (stored data, the embedded API): cut short
        with pytest.raises(TruncatedBatch):
            impl.validate_batches(data)


@pytest.mark.parametrize("magic", [0, 1])
def test_a_first_batch_of_an_old_magic_is_refused_before_the_second_frame_is_read(
    impl: ModuleType, magic: int
) -> None:
    """validateRecords checks the first batch's magic before it asks its
    iterator for a second: INVALID_RECORD, even ahead of a corrupt frame."""
    first = bytearray(BATCH)
    first[16] = magic
    with pytest.raises(UnsupportedMagic) as raised:
        impl.produce_batch_size(bytes(first) + _frame(3))
    assert type(raised.value) is UnsupportedMagic
    assert (raised.value.position, raised.value.found) == (0, magic)
    # A short frame of an old magic is framed: its batch checks come later.
    short = _frame(20, magic=magic)
    with pytest.raises(UnsupportedMagic):
        impl.validate_batches(short, one_batch=True)


ZSTD = _pure.encode_batch([RecordSpec(1_700_000_000_000, b"k", b"value", ())], compression=4)


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b"", id="alone"),
        pytest.param(BATCH, id="before-a-second-batch"),
        pytest.param(_frame(3), id="before-a-corrupt-frame"),
    ],
)
def test_zstd_is_refused_once_the_first_batch_is_framed_unless_allowed(
    impl: ModuleType, tail: bytes
) -> None:
    """ProduceRequest.validateRecords below v7: after the first batch's
    magic, before its iterator is asked for a second."""
    with pytest.raises(UnsupportedCompression) as raised:
        impl.produce_batch_size(ZSTD + tail, allow_zstd=False)
    assert raised.value.facts() == (UnsupportedCompression, 0, None, 4)
    assert raised.value.kafka_error == "UNSUPPORTED_COMPRESSION_TYPE"
    if not tail:
        assert impl.produce_batch_size(ZSTD) == len(ZSTD)


def test_only_zstd_waits_for_produce_v7(impl: ModuleType) -> None:
    for codec in Compression:
        if codec != Compression.ZSTD:
            batch = _pure.encode_batch([RecordSpec(0, None, b"v", ())], compression=codec)
            assert impl.produce_batch_size(batch, allow_zstd=False) == len(batch)


@pytest.mark.parametrize("magic", [0, 1])
def test_an_old_magic_is_refused_before_its_codec_is_read(impl: ModuleType, magic: int) -> None:
    old = bytearray(ZSTD)
    old[16] = magic
    with pytest.raises(UnsupportedMagic):
        impl.produce_batch_size(bytes(old), allow_zstd=False)


def _based(batch: bytes, base_offset: int) -> bytes:
    """``batch`` with ``base_offset``, which its CRC does not cover."""
    based = bytearray(batch)
    struct.pack_into(">q", based, 0, base_offset)
    return bytes(based)


@pytest.mark.parametrize("base_offset", [1, -1, 2**63 - 1, -(2**63)])
def test_a_produce_partitions_batch_must_start_at_offset_0(
    impl: ModuleType, base_offset: int
) -> None:
    """UnifiedLog.analyzeAndValidateRecords: a client's v2 batch with a
    baseOffset other than 0 is INVALID_RECORD, before its CRC is checked."""
    based = _based(BATCH, base_offset)
    with pytest.raises(NonZeroBaseOffset) as raised:
        impl.validate_batches(based, one_batch=True)
    found = None if base_offset == -(2**63) else base_offset  # C's "no fact"
    assert raised.value.facts() == (NonZeroBaseOffset, 0, 0, found)
    assert raised.value.kafka_error == "INVALID_RECORD"
    corrupt = bytearray(based)
    corrupt[-1] ^= 1
    with pytest.raises(NonZeroBaseOffset):
        impl.validate_batches(bytes(corrupt), one_batch=True)
    with pytest.raises(CorruptBatch):
        impl.validate_batches(_based(bytes(corrupt), 0), one_batch=True)
    # Outside a Produce partition (the embedded API, stored batches) the
    # broker writes the base offset over whatever the batch came with.
    assert impl.validate_batches(based)[0].base_offset == base_offset
    assert impl.produce_batch_size(based) == len(BATCH)


def test_the_base_offset_is_read_after_the_framing(impl: ModuleType) -> None:
    with pytest.raises(SecondBatch):
        impl.validate_batches(_based(BATCH, 7) + BATCH, one_batch=True)
    with pytest.raises(InvalidMagic):
        impl.validate_batches(_based(BATCH, 7) + _frame(20, magic=9), one_batch=True)
    # The tail Kafka drops unframed does not change it.
    with pytest.raises(NonZeroBaseOffset):
        impl.validate_batches(_based(BATCH, 7) + OTHER[:-1], one_batch=True)


def _framing_outcome(impl: ModuleType, data: bytes) -> tuple[object, ...]:
    """What ``impl`` frames in ``data``: the size, or the error with its facts."""
    try:
        return ("size", impl.produce_batch_size(data))
    except Exception as error:
        facts = (getattr(error, name, None) for name in ("position", "expected", "found"))
        return (type(error).__name__, *facts)


@st.composite
def _frame_heads(draw: st.DrawFn) -> bytes:
    """A frame's head with any length and magic, cut at a boundary Kafka's
    iterator looks at (12, 17, the length's end) or anywhere."""
    length = draw(
        st.one_of(
            st.sampled_from([13, 14, 15, 2**31 - 1, -(2**31)]),
            st.integers(10, 80),
            st.integers(-(2**31), 2**31 - 1),
        )
    )
    ends = [11, 12, 13, 16, 17, 18, 11 + length, 12 + length, 13 + length]
    size = draw(st.one_of(st.sampled_from([e for e in ends if 0 <= e <= 96]), st.integers(0, 96)))
    head = bytearray(struct.pack(">qi", 0, length) + bytes(96))
    head[16] = draw(st.integers(0, 255))
    return bytes(head[:size])


def _framing_input() -> st.SearchStrategy[bytes]:
    """A batch or a frame head (or any bytes), then a frame head or any bytes."""
    first = st.one_of(st.just(BATCH), _frame_heads(), st.binary(max_size=40))
    second = st.one_of(_frame_heads(), st.binary(max_size=30))
    return st.builds(bytes.__add__, first, second)


@needs_c
@settings(max_examples=1000)  # cheap examples; the boundaries are narrow
@given(_framing_input())
def test_c_and_python_frame_any_bytes_alike(data: bytes) -> None:
    assert C_IMPL is not None
    assert _framing_outcome(C_IMPL, data) == _framing_outcome(_pure, data)
