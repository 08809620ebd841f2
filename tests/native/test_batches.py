"""Record batches: round trips, validation errors with their facts, rewrite — C and Python alike."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from native import _pure
from native.errors import (
    BatchError,
    CorruptBatch,
    InvalidBatchLength,
    InvalidMagic,
    InvalidRecord,
    InvalidRecordCount,
    SecondBatch,
    TruncatedBatch,
    UnsupportedCompression,
    UnsupportedMagic,
)
from native.records import Compression, RecordSpec
from tests.native.conftest import c_impl, codecs, differential, needs_c, record_lists

SPECS = [
    RecordSpec(1_700_000_000_000, b"key", b"value", (("trace", b"abc"), ("empty", None))),
    RecordSpec(1_699_999_999_000, None, None),
    RecordSpec(1_700_000_000_500, b"", b"x" * 300),
]


def _outcome(function: Any, *args: Any) -> tuple[str, Any]:
    """A result or an error, in a form two implementations can be compared by."""
    try:
        return "ok", function(*args)
    except BatchError as error:
        return "error", error.facts()
    except (TypeError, ValueError) as error:
        return "error", type(error)


def _expected_records(specs: list[RecordSpec], base_offset: int = 0) -> list[tuple[Any, ...]]:
    return [
        (base_offset + i, s.timestamp, s.key, s.value, tuple(s.headers))
        for i, s in enumerate(specs)
    ]


@pytest.mark.parametrize("codec", list(Compression))
def test_encode_validate_decode_round_trip(impl: ModuleType, codec: Compression) -> None:
    batch = impl.encode_batch(SPECS, base_offset=42, compression=codec, producer_id=9)
    (header,) = impl.validate_batches(batch)
    assert header.compression == codec
    assert (header.base_offset, header.record_count, header.last_offset_delta) == (42, 3, 2)
    assert header.base_timestamp == SPECS[0].timestamp
    assert header.max_timestamp == max(s.timestamp for s in SPECS)
    assert (header.producer_id, header.magic, header.size) == (9, 2, len(batch))
    assert [tuple(r) for r in impl.decode_records(batch)] == _expected_records(SPECS, 42)


@differential
@given(record_lists, codecs, st.integers(0, 2**40))
def test_both_implementations_encode_and_decode_alike(
    specs: list[RecordSpec], codec: Compression, base_offset: int
) -> None:
    encoded = _pure.encode_batch(specs, base_offset=base_offset, compression=codec)
    if c_impl_available():
        assert c_impl().encode_batch(specs, base_offset=base_offset, compression=codec) == encoded
        assert c_impl().validate_batches(encoded) == _pure.validate_batches(encoded)
        assert c_impl().decode_records(encoded) == _pure.decode_records(encoded)
    assert [tuple(r) for r in _pure.decode_records(encoded)] == _expected_records(
        specs, base_offset
    )


def c_impl_available() -> bool:
    try:
        c_impl()
    except AssertionError:
        return False
    return True


@needs_c
@differential
@given(
    record_lists,
    codecs,
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=4),
    st.sampled_from(["flip", "truncate", "append", "none"]),
    st.integers(0, 10**6),
    st.binary(min_size=1, max_size=16),
)
def test_corrupted_input_gets_the_same_answer_from_both(
    specs: list[RecordSpec],
    codec: Compression,
    flips: list[tuple[int, int]],
    mutation: str,
    cut: int,
    garbage: bytes,
) -> None:
    batch = bytearray(_pure.encode_batch(specs, compression=codec))
    batch += _pure.encode_batch(specs[:1])
    for where, bit in flips:
        batch[where % len(batch)] ^= 1 << bit
    if mutation == "truncate":
        del batch[cut % len(batch) :]
    elif mutation == "append":
        batch += garbage
    data = bytes(batch)
    for function in ("scan_batches", "validate_batches", "decode_records"):
        assert _outcome(getattr(c_impl(), function), data) == _outcome(
            getattr(_pure, function), data
        ), function


@needs_c
@given(st.binary(max_size=300))
def test_arbitrary_bytes_get_the_same_answer_from_both(data: bytes) -> None:
    for function in ("scan_batches", "validate_batches", "decode_records"):
        assert _outcome(getattr(c_impl(), function), data) == _outcome(
            getattr(_pure, function), data
        )


@needs_c
@given(st.binary(min_size=61, max_size=200), st.integers(1, 200))
def test_a_valid_header_over_hostile_records_gets_the_same_answer(body: bytes, count: int) -> None:
    """A correct CRC over garbage records: only the record walk can catch it."""
    header = bytearray(61)
    struct.pack_into(">qiibIhiqqqhii", header, 0, 0, 49 + len(body), 0, 2, 0, 0, count - 1,
                     0, 0, -1, -1, -1, count)  # fmt: skip
    batch = header + body
    struct.pack_into(">I", batch, 17, _pure.crc32c(batch[21:]))
    data = bytes(batch)
    for function in ("validate_batches", "decode_records"):
        assert _outcome(getattr(c_impl(), function), data) == _outcome(
            getattr(_pure, function), data
        )


def _one_batch() -> bytearray:
    return bytearray(_pure.encode_batch(SPECS))


def test_a_flipped_bit_under_the_crc_is_a_corrupt_batch(impl: ModuleType) -> None:
    batch = _one_batch()
    batch[70] ^= 0x10
    with pytest.raises(CorruptBatch) as raised:
        impl.validate_batches(bytes(batch))
    assert raised.value.position == 0
    assert raised.value.expected == struct.unpack_from(">I", batch, 17)[0]
    assert raised.value.found == _pure.crc32c(bytes(batch[21:]))
    assert raised.value.kafka_error == "CORRUPT_MESSAGE"
    # Framing does not look at the CRC.
    assert len(impl.scan_batches(bytes(batch))) == 1


def test_the_error_names_the_batch_that_failed(impl: ModuleType) -> None:
    first = _one_batch()
    second = _one_batch()
    second[80] ^= 0x01
    with pytest.raises(CorruptBatch) as raised:
        impl.validate_batches(bytes(first + second))
    assert raised.value.position == len(first)


@pytest.mark.parametrize("keep", [0, 5, 11, 60, -1])
def test_a_cut_short_buffer_is_a_truncated_batch(impl: ModuleType, keep: int) -> None:
    batch = bytes(_one_batch())
    data = batch[:keep] if keep > 0 else batch[:keep] if keep < 0 else b""
    if not data:
        assert impl.validate_batches(data) == []
        return
    with pytest.raises(TruncatedBatch) as raised:
        impl.validate_batches(data)
    assert raised.value.position == 0
    assert raised.value.found == len(data)


def test_trailing_bytes_after_the_last_batch_are_refused(impl: ModuleType) -> None:
    batch = bytes(_one_batch())
    with pytest.raises(TruncatedBatch) as raised:
        impl.validate_batches(batch + b"\x00\x01")
    assert raised.value.position == len(batch)


# ``impl`` is a module, the same for every example.
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    tail=st.integers(0, 200),
)
def test_one_batch_refuses_a_whole_second_batch_as_kafkas_iterator_frames_it(
    impl: ModuleType, values: list[bytes], tail: int
) -> None:
    """Whole batches after the first are refused, where the second starts;
    a shorter tail (cut from one more batch) is no batch: Kafka's
    MemoryRecords iterator leaves it unread and UnifiedLog drops it, so
    the first batch is all that is validated and returned."""
    batches = [_pure.encode_batch([RecordSpec(1_700_000_000_000, None, v, ())]) for v in values]
    extra = _pure.encode_batch([RecordSpec(1_700_000_000_000, None, b"x" * 300, ())])
    cut = min(tail, len(extra) - 1)
    data = b"".join(batches) + extra[:cut]
    if len(batches) > 1:
        with pytest.raises(SecondBatch) as raised:
            impl.validate_batches(data, one_batch=True)
        assert raised.value.position == len(batches[0])
        assert raised.value.kafka_error == "INVALID_RECORD"
    elif cut:
        assert impl.validate_batches(data, one_batch=True) == impl.validate_batches(batches[0])
        assert impl.produce_batch_size(data) == len(batches[0])
    else:
        assert impl.validate_batches(data, one_batch=True) == impl.validate_batches(data)
    # Without one_batch (the embedded API, stored data) many batches are accepted.
    if not cut:
        assert len(impl.validate_batches(data)) == len(batches)


def test_a_second_batch_is_refused_before_the_first_is_checked(impl: ModuleType) -> None:
    """Kafka refuses it while parsing the request, before any batch's CRC."""
    first = _one_batch()
    first[70] ^= 0x10
    data = bytes(first + _one_batch())
    with pytest.raises(SecondBatch) as raised:
        impl.validate_batches(data, one_batch=True)
    assert raised.value.position == len(first)
    with pytest.raises(CorruptBatch):
        impl.validate_batches(data)


def _frame(length: int) -> bytes:
    """baseOffset and batchLength, then the bytes that length claims (none
    for a negative one): what Kafka's MemoryRecords iterator frames."""
    return struct.pack(">qi", 0, length) + bytes(max(length, 0))


@pytest.mark.parametrize("length", [-1, 0, 13])
def test_a_frame_kafkas_iterator_calls_corrupt_is_no_second_batch(
    impl: ModuleType, length: int
) -> None:
    """Kafka's iterator throws CorruptRecordException (CORRUPT_MESSAGE) at a
    batchLength below LegacyRecord.RECORD_OVERHEAD_V0 (14), where it would
    otherwise find a second batch: such a frame is no batch, and is refused
    as the checks that follow refuse it (InvalidBatchLength, CORRUPT_MESSAGE)."""
    first = bytes(_one_batch())
    with pytest.raises(InvalidBatchLength) as raised:
        impl.validate_batches(first + _frame(length), one_batch=True)
    assert raised.value.position == len(first)
    assert raised.value.kafka_error == "CORRUPT_MESSAGE"
    # The same frame first: refused at 0, whatever follows it.
    with pytest.raises(InvalidBatchLength) as raised:
        impl.validate_batches(_frame(length) + first, one_batch=True)
    assert raised.value.position == 0


def test_a_frame_of_kafkas_least_length_is_a_second_batch(impl: ModuleType) -> None:
    """From batchLength 14 on Kafka's iterator frames a batch (stricter
    checks come later), so one_batch refuses it as a second batch."""
    first = bytes(_one_batch())
    with pytest.raises(SecondBatch) as raised:
        impl.validate_batches(first + _frame(14), one_batch=True)
    assert raised.value.position == len(first)


@needs_c
@given(st.binary(max_size=300), st.integers(0, 3), st.integers(-2, 20), st.integers(0, 80))
def test_both_implementations_frame_a_produce_alike(
    garbage: bytes, copies: int, length: int, cut: int
) -> None:
    """A Produce partition's records as both frame them (produce_batch_size)
    and validate them (one_batch): second batches, frames Kafka calls
    corrupt, tails cut short of a frame or of what their length claims,
    and a first batch with a fault of its own ahead of any of those."""
    batch = bytes(_one_batch())
    miscounted = bytearray(batch)
    struct.pack_into(">i", miscounted, 57, 9)  # recordCount, with its CRC left stale
    short = _frame(length)
    for first in (batch, bytes(miscounted)):
        for data in (
            garbage,
            first * copies + garbage,
            first + garbage[:12] + batch,
            first + short + garbage,
            first + short[:12] + garbage,  # a random magic behind a claimed length
            first + (short + garbage)[:cut],
            first + batch[:cut],
            short + first,
        ):
            for function in (
                lambda impl, d: impl.validate_batches(d, one_batch=True),
                lambda impl, d: impl.produce_batch_size(d),
            ):
                assert _outcome(function, c_impl(), data) == _outcome(function, _pure, data)


def test_a_batch_length_shorter_than_a_header_is_refused(impl: ModuleType) -> None:
    batch = _one_batch()
    struct.pack_into(">i", batch, 8, 10)
    with pytest.raises(InvalidBatchLength) as raised:
        impl.scan_batches(bytes(batch))
    assert (raised.value.expected, raised.value.found) == (49, 10)


@pytest.mark.parametrize(
    ("magic", "error", "kafka_error"),
    [
        # ProduceRequest.validateRecords: "only allowed to contain record
        # batches with magic version 2".
        (0, UnsupportedMagic, "INVALID_RECORD"),
        (1, UnsupportedMagic, "INVALID_RECORD"),
        # Kafka's MemoryRecords iterator, before that: "Invalid magic found
        # in record" (CorruptRecordException).
        (3, InvalidMagic, "CORRUPT_MESSAGE"),
        (-1, InvalidMagic, "CORRUPT_MESSAGE"),
        (127, InvalidMagic, "CORRUPT_MESSAGE"),
    ],
)
def test_only_magic_2_is_accepted(
    impl: ModuleType, magic: int, error: type[UnsupportedMagic], kafka_error: str
) -> None:
    batch = _one_batch()
    struct.pack_into(">b", batch, 16, magic)
    with pytest.raises(UnsupportedMagic) as raised:
        impl.scan_batches(bytes(batch))
    assert type(raised.value) is error
    assert (raised.value.expected, raised.value.found) == (2, magic)
    assert raised.value.kafka_error == kafka_error


@pytest.mark.parametrize("magic", [3, -1])
def test_a_frame_with_a_magic_kafkas_iterator_calls_corrupt_is_no_second_batch(
    impl: ModuleType, magic: int
) -> None:
    """Kafka's iterator throws CorruptRecordException at a magic byte below
    0 or above 2 where it would otherwise find a second batch: refused as
    InvalidMagic (CORRUPT_MESSAGE) where it starts; from magic 0 to 2 the
    frame is a second batch."""
    first = bytes(_one_batch())
    second = _one_batch()
    struct.pack_into(">b", second, 16, magic)
    with pytest.raises(InvalidMagic) as raised:
        impl.validate_batches(first + bytes(second), one_batch=True)
    assert raised.value.position == len(first)
    struct.pack_into(">b", second, 16, 1)
    with pytest.raises(SecondBatch):
        impl.validate_batches(first + bytes(second), one_batch=True)


def _recrc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, _pure.crc32c(bytes(batch[21:])))
    return bytes(batch)


@pytest.mark.parametrize(("count", "last_delta"), [(0, -1), (-1, 2), (4, 2), (2, 2)])
def test_record_count_must_agree_with_last_offset_delta(
    impl: ModuleType, count: int, last_delta: int
) -> None:
    batch = _one_batch()
    struct.pack_into(">i", batch, 23, last_delta)
    struct.pack_into(">i", batch, 57, count)
    with pytest.raises(InvalidRecordCount) as raised:
        impl.validate_batches(_recrc(batch))
    assert (raised.value.expected, raised.value.found) == (last_delta + 1, count)


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_an_undefined_codec_is_unsupported_compression(impl: ModuleType, codec: int) -> None:
    batch = _one_batch()
    struct.pack_into(">h", batch, 21, codec)
    data = _recrc(batch)
    with pytest.raises(UnsupportedCompression) as raised:
        impl.validate_batches(data)
    assert raised.value.found == codec
    with pytest.raises(UnsupportedCompression):
        impl.decode_records(data)


def test_records_that_do_not_tile_the_batch_are_invalid(impl: ModuleType) -> None:
    batch = _one_batch()
    batch[61] = 0x7E  # first record's length varint: 63, which runs into the next record
    with pytest.raises(InvalidRecord) as raised:
        impl.validate_batches(_recrc(batch))
    assert raised.value.kafka_error == "INVALID_RECORD"


def test_a_malformed_record_fails_decode(impl: ModuleType) -> None:
    batch = bytearray(_pure.encode_batch([RecordSpec(0, b"k", b"v", (("h", b"x"),))]))
    # The header name's length varint (zigzag 2 -> 1) becomes -2: not a valid length.
    name_length_at = batch.index(b"h", 61) - 1
    batch[name_length_at] = 0x03
    with pytest.raises(InvalidRecord):
        impl.decode_records(bytes(batch))


def test_undecodable_compressed_data_is_an_invalid_record(impl: ModuleType) -> None:
    batch = bytearray(_pure.encode_batch(SPECS, compression=Compression.LZ4))
    batch[70:80] = b"\xff" * 10
    with pytest.raises(InvalidRecord) as raised:
        impl.decode_records(bytes(batch))
    assert raised.value.position == 0


def test_rewrite_sets_offset_and_epoch_without_touching_the_crc(impl: ModuleType) -> None:
    batch = _one_batch()
    crc_before = bytes(batch[17:21])
    impl.rewrite_batch(batch, 0, 1_000_000, partition_leader_epoch=7)
    (header,) = impl.validate_batches(bytes(batch))
    assert (header.base_offset, header.partition_leader_epoch) == (1_000_000, 7)
    assert bytes(batch[17:21]) == crc_before
    assert [r.offset for r in impl.decode_records(bytes(batch))] == [
        1_000_000,
        1_000_001,
        1_000_002,
    ]


def test_rewrite_to_log_append_time_recomputes_the_crc(impl: ModuleType) -> None:
    batch = _one_batch()
    impl.rewrite_batch(batch, 0, 5, log_append_time=1_800_000_000_000)
    (header,) = impl.validate_batches(bytes(batch))
    assert header.timestamp_type == 1
    assert header.max_timestamp == 1_800_000_000_000
    records = impl.decode_records(bytes(batch))
    assert {r.timestamp for r in records} == {1_800_000_000_000}


def test_rewrite_to_create_time_unmarks_log_append_time_and_recomputes_the_crc(
    impl: ModuleType,
) -> None:
    # A CreateTime topic's answer to a producer's LogAppendTime batch
    # (Kafka's setMaxTimestamp(CREATE_TIME, ...)): the attributes change and
    # the CRC with them; maxTimestamp, which each record read, is kept.
    batch = bytearray(_pure.encode_batch(SPECS, timestamp_type=1))
    (sent,) = impl.validate_batches(bytes(batch))
    impl.rewrite_batch(batch, 0, 5, 3, create_time=True)
    (header,) = impl.validate_batches(bytes(batch))  # the CRC is right
    assert header.timestamp_type == 0
    assert header.attributes == sent.attributes & ~0x08
    assert (header.max_timestamp, header.base_timestamp) == (
        sent.max_timestamp,
        sent.base_timestamp,
    )
    assert header.crc != sent.crc
    assert [r.timestamp for r in impl.decode_records(bytes(batch))] == [s.timestamp for s in SPECS]


def test_rewrite_to_create_time_leaves_a_create_time_batch_and_its_crc(impl: ModuleType) -> None:
    batch = _one_batch()
    before = bytes(batch[17:])
    impl.rewrite_batch(batch, 0, 5, create_time=True)
    assert bytes(batch[17:]) == before


def test_rewrite_is_stamped_or_marked_create_time_not_both(impl: ModuleType) -> None:
    batch = _one_batch()
    before = bytes(batch)
    with pytest.raises(ValueError, match="LogAppendTime or marked CreateTime"):
        impl.rewrite_batch(batch, 0, 5, log_append_time=1, create_time=True)
    assert bytes(batch) == before


@differential
@given(record_lists, codecs, st.booleans(), st.booleans())
def test_both_implementations_rewrite_timestamp_types_to_the_same_bytes(
    specs: list[RecordSpec], codec: Compression, marked: bool, create_time: bool
) -> None:
    encoded = _pure.encode_batch(specs, compression=codec, timestamp_type=int(marked))
    pure = bytearray(encoded)
    _pure.rewrite_batch(pure, 0, 9, 2, create_time=create_time)
    (header,) = _pure.validate_batches(bytes(pure), from_client=False)
    assert header.timestamp_type == (0 if create_time else int(marked))
    if c_impl_available():
        c = bytearray(encoded)
        c_impl().rewrite_batch(c, 0, 9, 2, create_time=create_time)
        assert c == pure


def test_rewrite_works_on_a_batch_inside_a_larger_buffer(impl: ModuleType) -> None:
    first = _one_batch()
    buffer = bytearray(first + _one_batch())
    impl.rewrite_batch(memoryview(buffer), len(first), 77)
    headers = impl.validate_batches(bytes(buffer))
    assert [h.base_offset for h in headers] == [0, 77]


def test_rewrite_refuses_a_read_only_buffer(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.rewrite_batch(bytes(_one_batch()), 0, 1)


def test_rewrite_refuses_a_position_outside_the_buffer(impl: ModuleType) -> None:
    batch = _one_batch()
    with pytest.raises(ValueError, match="outside"):
        impl.rewrite_batch(batch, len(batch) + 1, 1)
    with pytest.raises(TruncatedBatch):
        impl.rewrite_batch(batch, 10, 1)


def test_encode_refuses_no_records_and_unknown_codecs(impl: ModuleType) -> None:
    with pytest.raises(ValueError, match="at least one"):
        impl.encode_batch([])
    with pytest.raises(ValueError, match="codec"):
        impl.encode_batch(SPECS, compression=9)


def test_encode_sets_producer_and_control_fields(impl: ModuleType) -> None:
    batch = impl.encode_batch(
        SPECS,
        producer_id=12,
        producer_epoch=3,
        base_sequence=40,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=5,
    )
    (header,) = impl.validate_batches(batch)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (12, 3, 40)
    assert header.is_transactional and header.is_control
    assert header.partition_leader_epoch == 5


def test_decode_reads_every_batch_in_a_buffer(impl: ModuleType) -> None:
    data = impl.encode_batch(SPECS[:2], base_offset=0) + impl.encode_batch(
        SPECS[2:], base_offset=2, compression=Compression.ZSTD
    )
    assert [r.offset for r in impl.decode_records(data)] == [0, 1, 2]


def test_xerial_framed_snappy_decodes(impl: ModuleType) -> None:
    import cramjam

    stream = bytearray(_pure.encode_batch(SPECS))[61:]
    chunk = bytes(cramjam.snappy.compress_raw(bytes(stream)))
    xerial = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + struct.pack(">i", len(chunk)) + chunk
    batch = bytearray(_pure.encode_batch(SPECS, compression=Compression.SNAPPY))
    batch[61:] = xerial
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    records = impl.decode_records(_recrc(batch))
    assert [tuple(r) for r in records] == _expected_records(SPECS)


def _error_type(function: Any, *args: Any, **kwargs: Any) -> type[BaseException] | None:
    try:
        function(*args, **kwargs)
    except Exception as error:
        return type(error)
    return None


BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("crc32c", (b"abc", -1), {}),
    ("crc32c", (b"abc", 2**32), {}),
    ("crc32c", (memoryview(b"abcdef")[::2],), {}),
    ("crc32c", ("text",), {}),
    ("validate_batches", (memoryview(bytes(200))[::2],), {}),
    ("encode_batch", ([RecordSpec(2**63, None, None)],), {}),
    ("encode_batch", ([RecordSpec(0, None, None, ((b"name", None),))],), {}),
    ("encode_batch", ([RecordSpec(0, None, None, (("name",),))],), {}),
    ("encode_batch", ([RecordSpec(0, "text", None)],), {}),
    ("encode_batch", ([(0, None)],), {}),
    ("encode_batch", (SPECS,), {"producer_epoch": 40_000}),
    ("encode_batch", (SPECS,), {"base_offset": 2**63}),
    ("encode_batch", (SPECS,), {"partition_leader_epoch": 2**31}),
]


@needs_c
@pytest.mark.parametrize(("function", "args", "kwargs"), BAD_CALLS)
def test_bad_arguments_raise_the_same_error_class_in_both(
    function: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    expected = _error_type(getattr(c_impl(), function), *args, **kwargs)
    assert expected is not None
    assert _error_type(getattr(_pure, function), *args, **kwargs) is expected


@needs_c
@pytest.mark.parametrize(
    "arguments",
    [(2**63, None, None), (0, 2**31, None), (0, None, 2**63)],
    ids=["base_offset", "epoch", "append_time"],
)
def test_out_of_range_rewrites_raise_the_same_error_class_in_both(
    arguments: tuple[int, int | None, int | None],
) -> None:
    base_offset, epoch, append_time = arguments
    for module in (_pure, c_impl()):
        with pytest.raises(OverflowError):
            module.rewrite_batch(_one_batch(), 0, base_offset, epoch, append_time)


class _Unjudgeable:
    """An object whose truth cannot be read."""

    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")


@needs_c
@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ((0, 2**63, None, 1, True), OverflowError),
        (("0", 5, None, 1, True), TypeError),
        ((0, 5, None, 1, _Unjudgeable()), RuntimeError),
        ((0, 5, 2**31, 1, True), ValueError),
    ],
    ids=["base_offset", "position", "create_time", "epoch"],
)
def test_bad_arguments_beside_both_timestamp_types_raise_the_same_error_in_both(
    arguments: tuple[object, ...], error: type[Exception]
) -> None:
    # The C parses position, base_offset and create_time before it asks
    # whether both timestamp types were given; the twin answers as it does.
    for module in (_pure, c_impl()):
        batch = _one_batch()
        before = bytes(batch)
        with pytest.raises(error):
            module.rewrite_batch(batch, *arguments)
        assert bytes(batch) == before


def test_timestamps_far_apart_wrap_like_java(impl: ModuleType) -> None:
    specs = [RecordSpec(-1, None, None), RecordSpec(2**63 - 1, None, None)]
    batch = impl.encode_batch(specs)
    assert [r.timestamp for r in impl.decode_records(batch)] == [-1, 2**63 - 1]
    assert batch == _pure.encode_batch(specs)
