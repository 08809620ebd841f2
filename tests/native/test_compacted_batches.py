"""Batches the log cleaner re-encodes: kept records keep their offsets, the batch its range.

encode_batch(offset_deltas=, last_offset_delta=, base_timestamp=) in C and in
Python alike; validate_batches(from_client=False) accepting the gaps that only
stored batches may have; kafka-python reading the same offsets.
"""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from native import _pure
from native.errors import BatchError, InvalidRecord, InvalidRecordCount
from native.records import NO_TIMESTAMP, Compression, RecordSpec, TimestampType
from tests.native.conftest import (
    IMPLEMENTATIONS,
    c_impl,
    codecs,
    differential,
    needs_c,
    record_lists,
    timestamps,
)

I32_MAX = 2**31 - 1

SPECS = [
    RecordSpec(1_700_000_000_000, b"k1", b"v1", (("trace", b"abc"),)),
    RecordSpec(1_700_000_000_900, None, b"v2"),
    RecordSpec(1_699_999_999_000, b"k3", None, (("empty", None),)),
]


@st.composite
def kept_offsets(draw: st.DrawFn, count: int) -> list[int]:
    """Strictly increasing offsetDeltas for ``count`` kept records, some far apart."""
    first = draw(st.integers(0, 10) | st.integers(0, I32_MAX - 2**25))
    gaps = draw(
        st.lists(st.integers(1, 3) | st.integers(1, 2**20), min_size=count - 1, max_size=count - 1)
    )
    deltas = [first]
    for gap in gaps:
        deltas.append(deltas[-1] + gap)
    return deltas


@st.composite
def compacted_batches(draw: st.DrawFn) -> tuple[list[RecordSpec], dict[str, Any]]:
    """Record specs and valid encode_batch keywords of a batch the cleaner rewrote."""
    specs = draw(record_lists)
    deltas = draw(kept_offsets(len(specs)))
    last = draw(
        st.none() | st.integers(deltas[-1], deltas[-1] + 5) | st.integers(deltas[-1], I32_MAX)
    )
    base_timestamp = draw(st.none() | timestamps)
    return specs, {
        "offset_deltas": deltas,
        "last_offset_delta": last,
        "base_timestamp": base_timestamp,
        "base_offset": draw(st.integers(0, 2**40)),
        "compression": draw(codecs),
    }


def _outcome(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """A result or an error with its message, comparable across implementations."""
    try:
        return ("ok", function(*args, **kwargs))
    except BatchError as error:
        return ("error", error.facts(), str(error))
    except (TypeError, ValueError, OverflowError) as error:
        return ("error", type(error), str(error))


def _recrc(batch: bytearray) -> bytes:
    struct.pack_into(">I", batch, 17, _pure.crc32c(bytes(batch[21:])))
    return bytes(batch)


# ---- C and Python give the same bytes and the same errors ------------------------------------


@needs_c
@differential
@given(compacted_batches())
def test_both_implementations_encode_compacted_batches_to_the_same_bytes(
    batch: tuple[list[RecordSpec], dict[str, Any]],
) -> None:
    specs, keywords = batch
    ours = _pure.encode_batch(specs, **keywords)
    assert c_impl().encode_batch(specs, **keywords) == ours
    assert c_impl().validate_batches(ours, from_client=False) == _pure.validate_batches(
        ours, from_client=False
    )
    assert c_impl().decode_records(ours) == _pure.decode_records(ours)


@needs_c
@differential
@given(
    specs=record_lists,
    deltas=st.none()
    | st.lists(st.integers(0, 40) | st.integers(-(2**33), 2**33), max_size=22)
    | st.lists(st.integers(0, 40), max_size=22).map(sorted),
    last=st.none() | st.integers(0, 45) | st.integers(-(2**33), 2**33),
    base_timestamp=st.none() | timestamps | st.integers(-(2**64), 2**64),
)
def test_both_implementations_refuse_bad_offsets_with_the_same_error(
    specs: list[RecordSpec], deltas: list[int] | None, last: int | None, base_timestamp: int | None
) -> None:
    keywords = {
        "offset_deltas": deltas,
        "last_offset_delta": last,
        "base_timestamp": base_timestamp,
    }
    assert _outcome(c_impl().encode_batch, specs, **keywords) == _outcome(
        _pure.encode_batch, specs, **keywords
    )


@needs_c
@differential
@given(
    compacted_batches(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=4),
    st.integers(0, 10**6),
)
def test_corrupted_compacted_batches_get_the_same_answer_from_both(
    batch: tuple[list[RecordSpec], dict[str, Any]], flips: list[tuple[int, int]], cut: int
) -> None:
    specs, keywords = batch
    data = bytearray(_pure.encode_batch(specs, **keywords))
    for where, bit in flips:
        data[where % len(data)] ^= 1 << bit
    # With the CRC recomputed only the record-count and offsetDelta checks can object.
    for candidate in (_recrc(data), bytes(data), bytes(data[: cut % len(data)])):
        assert _outcome(c_impl().validate_batches, candidate, from_client=False) == _outcome(
            _pure.validate_batches, candidate, from_client=False
        )


@needs_c
@given(st.binary(min_size=1, max_size=200), st.integers(1, 40), st.integers(-1, 60))
def test_a_valid_stored_header_over_hostile_records_gets_the_same_answer(
    body: bytes, count: int, last_delta: int
) -> None:
    """A correct CRC over garbage records: only the record walk can catch it."""
    header = bytearray(61)
    struct.pack_into(">qiibIhiqqqhii", header, 0, 0, 49 + len(body), 0, 2, 0, 0, last_delta,
                     0, 0, -1, -1, -1, count)  # fmt: skip
    data = _recrc(header + body)
    assert _outcome(c_impl().validate_batches, data, from_client=False) == _outcome(
        _pure.validate_batches, data, from_client=False
    )


# ---- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(compacted_batches())
def test_compacted_batches_round_trip_with_their_original_offsets(
    impl: ModuleType, batch: tuple[list[RecordSpec], dict[str, Any]]
) -> None:
    specs, keywords = batch
    deltas = keywords["offset_deltas"]
    data = impl.encode_batch(specs, **keywords)
    (header,) = impl.validate_batches(data, from_client=False)
    assert header.record_count == len(specs)
    last = keywords["last_offset_delta"]
    assert header.last_offset_delta == (deltas[-1] if last is None else last)
    base_timestamp = keywords["base_timestamp"]
    assert header.base_timestamp == (
        specs[0].timestamp if base_timestamp is None else base_timestamp
    )
    # From NO_TIMESTAMP up, as Kafka's builder keeps it.
    assert header.max_timestamp == max(NO_TIMESTAMP, *(s.timestamp for s in specs))
    assert header.compression == keywords["compression"]
    base_offset = keywords["base_offset"]
    assert [tuple(r) for r in impl.decode_records(data)] == [
        (base_offset + delta, s.timestamp, s.key, s.value, tuple(s.headers))
        for delta, s in zip(deltas, specs, strict=True)
    ]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(specs=record_lists, codec=codecs, base_offset=st.integers(0, 2**40))
def test_the_defaults_are_the_batch_encode_batch_always_built(
    impl: ModuleType, specs: list[RecordSpec], codec: Compression, base_offset: int
) -> None:
    plain = impl.encode_batch(specs, base_offset=base_offset, compression=codec)
    explicit = impl.encode_batch(
        specs,
        base_offset=base_offset,
        compression=codec,
        offset_deltas=range(len(specs)),
        last_offset_delta=len(specs) - 1,
        base_timestamp=specs[0].timestamp,
    )
    assert plain == explicit
    assert [r.offset for r in impl.decode_records(plain)] == [
        base_offset + i for i in range(len(specs))
    ]


def test_a_base_timestamp_above_the_records_gives_negative_deltas(impl: ModuleType) -> None:
    base = 1_800_000_000_000
    data = impl.encode_batch(SPECS, base_timestamp=base, offset_deltas=[0, 4, 9])
    (header,) = impl.validate_batches(data, from_client=False)
    assert header.base_timestamp == base
    assert header.max_timestamp == max(s.timestamp for s in SPECS)
    assert [r.timestamp for r in impl.decode_records(data)] == [s.timestamp for s in SPECS]


def test_log_append_time_batches_keep_offsets_and_give_every_record_max_timestamp(
    impl: ModuleType,
) -> None:
    data = impl.encode_batch(
        SPECS,
        offset_deltas=[1, 2, 6],
        last_offset_delta=8,
        timestamp_type=TimestampType.LOG_APPEND_TIME,
    )
    (header,) = impl.validate_batches(data, from_client=False)
    assert header.timestamp_type == TimestampType.LOG_APPEND_TIME
    assert header.max_timestamp == max(s.timestamp for s in SPECS)
    records = impl.decode_records(data)
    assert [r.offset for r in records] == [1, 2, 6]
    assert {r.timestamp for r in records} == {header.max_timestamp}


# ---- validate_batches: the produce rule and the stored rule ---------------------------------


def test_a_client_batch_with_gaps_is_refused_as_kafka_refuses_it(impl: ModuleType) -> None:
    data = impl.encode_batch(SPECS, offset_deltas=[0, 2, 3])
    with pytest.raises(InvalidRecordCount) as raised:
        impl.validate_batches(data)
    assert (raised.value.expected, raised.value.found) == (4, 3)
    assert raised.value.kafka_error == "INVALID_RECORD"
    assert impl.validate_batches(data, from_client=False)[0].last_offset_delta == 3


def test_a_stored_batch_may_keep_a_range_past_its_last_record(impl: ModuleType) -> None:
    data = impl.encode_batch(SPECS[:1], base_offset=100, last_offset_delta=3)
    (header,) = impl.validate_batches(data, from_client=False)
    assert (header.record_count, header.last_offset, header.last_offset_delta) == (1, 103, 3)
    assert [r.offset for r in impl.decode_records(data)] == [100]


@pytest.mark.parametrize(("count", "last_delta"), [(0, 2), (-1, 2), (4, 2), (1, -1)])
def test_a_stored_batch_needs_between_one_and_its_range_of_records(
    impl: ModuleType, count: int, last_delta: int
) -> None:
    batch = bytearray(_pure.encode_batch(SPECS))
    struct.pack_into(">i", batch, 23, last_delta)
    struct.pack_into(">i", batch, 57, count)
    with pytest.raises(InvalidRecordCount, match="allows 1 to") as raised:
        impl.validate_batches(_recrc(batch), from_client=False)
    assert (raised.value.expected, raised.value.found) == (last_delta + 1, count)


def _record_starts(data: bytes) -> list[int]:
    """Where each record of an uncompressed batch starts (lengths below 64: one varint byte)."""
    starts, pos = [], 61
    while pos < len(data):
        starts.append(pos)
        pos += 1 + (data[pos] >> 1)
    return starts


def test_a_stored_record_past_last_offset_delta_is_invalid(impl: ModuleType) -> None:
    specs = [RecordSpec(0, b"a", b"b"), RecordSpec(0, b"c", b"d")]
    batch = bytearray(_pure.encode_batch(specs, offset_deltas=[0, 5]))
    struct.pack_into(">i", batch, 23, 3)  # the range now ends before the second record
    with pytest.raises(InvalidRecord, match="past lastOffsetDelta") as raised:
        impl.validate_batches(_recrc(batch), from_client=False)
    assert raised.value.position == _record_starts(bytes(batch))[1]
    assert (raised.value.expected, raised.value.found) == (3, 5)


def test_stored_records_whose_offsets_do_not_increase_are_invalid(impl: ModuleType) -> None:
    specs = [RecordSpec(0, b"a", b"b"), RecordSpec(0, b"c", b"d")]
    batch = bytearray(_pure.encode_batch(specs, offset_deltas=[3, 4]))
    second = _record_starts(bytes(batch))[1]
    # length, attributes, timestampDelta 0, then offsetDelta: zigzag 4 -> 8 becomes 3 -> 6.
    assert batch[second + 3] == 8
    batch[second + 3] = 6
    with pytest.raises(InvalidRecord, match="does not follow") as raised:
        impl.validate_batches(_recrc(batch), from_client=False)
    assert raised.value.position == second
    assert (raised.value.expected, raised.value.found) == (4, 3)


def test_a_stored_record_too_short_for_an_offset_delta_is_invalid(impl: ModuleType) -> None:
    header = bytearray(61)
    struct.pack_into(">qiibIhiqqqhii", header, 0, 0, 49 + 3, 0, 2, 0, 0, 0,
                     0, 0, -1, -1, -1, 1)  # fmt: skip
    data = _recrc(header + b"\x04\x00\x00")  # a 2-byte record: attributes, timestampDelta
    with pytest.raises(InvalidRecord, match="no offsetDelta") as raised:
        impl.validate_batches(data, from_client=False)
    assert raised.value.position == 61
    # The produce path walks every field of the record: refused there too.
    with pytest.raises(InvalidRecord, match=r"record 0 is malformed \(its offsetDelta\)"):
        impl.validate_batches(data)


def test_from_client_is_keyword_only_and_alone(impl: ModuleType) -> None:
    data = impl.encode_batch(SPECS)
    with pytest.raises(TypeError):
        impl.validate_batches(data, False)
    with pytest.raises(TypeError):
        impl.validate_batches(data, compacted=True)
    assert impl.validate_batches(data, from_client=True) == impl.validate_batches(data)


# ---- encode_batch refuses offsets the format cannot hold -------------------------------------

BAD_OFFSETS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"offset_deltas": [0, 1]}, ValueError, "offset_deltas has 2 items for 3 records"),
    ({"offset_deltas": [0, 1, 2, 3]}, ValueError, "offset_deltas has 4 items for 3 records"),
    ({"offset_deltas": [-1, 1, 2]}, ValueError, "offset_deltas[0] is -1; an offsetDelta is"),
    ({"offset_deltas": [0, 1, 2**31]}, ValueError, "offset_deltas[2] is 2147483648; an offset"),
    ({"offset_deltas": [0, 2**64, 1]}, ValueError, "offset_deltas[1] is 18446744073709551616"),
    ({"offset_deltas": [0, 4, 4]}, ValueError, "offset_deltas[2] is 4, not above offset_deltas[1]"),
    ({"offset_deltas": [5, 4, 6]}, ValueError, "offset_deltas[1] is 4, not above offset_deltas[0]"),
    ({"offset_deltas": [0, 1.0, 2]}, TypeError, "offset_deltas[1] must be an int, not float"),
    ({"offset_deltas": 3}, TypeError, "offset_deltas must be a sequence of ints"),
    ({"last_offset_delta": 1}, ValueError, "last_offset_delta 1 must be between the last"),
    (
        {"offset_deltas": [0, 1, 7], "last_offset_delta": 6},
        ValueError,
        "last_offset_delta 6 must be between the last record's offsetDelta (7) and 2147483647",
    ),
    ({"last_offset_delta": 2**31}, ValueError, "last_offset_delta 2147483648 must be between"),
    ({"last_offset_delta": -(2**70)}, ValueError, "last_offset_delta -1180591620717411303424"),
    ({"last_offset_delta": "3"}, TypeError, "last_offset_delta must be an int, not str"),
    ({"base_timestamp": 2**63}, OverflowError, "base_timestamp 9223372036854775808 does not fit"),
    ({"base_timestamp": 1.5}, TypeError, "base_timestamp must be an int, not float"),
]


@pytest.mark.parametrize(("keywords", "error", "message"), BAD_OFFSETS)
def test_offsets_the_format_cannot_hold_are_refused(
    impl: ModuleType, keywords: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        impl.encode_batch(SPECS, **keywords)
    assert type(raised.value) is error
    assert str(raised.value).startswith(message)


@needs_c
@pytest.mark.parametrize(("keywords", "error", "message"), BAD_OFFSETS)
def test_bad_offsets_raise_the_same_error_and_message_in_both(
    keywords: dict[str, Any], error: type[Exception], message: str
) -> None:
    expected = _outcome(_pure.encode_batch, SPECS, **keywords)
    assert expected[:2] == ("error", error)
    assert _outcome(c_impl().encode_batch, SPECS, **keywords) == expected


def test_bad_offsets_are_refused_before_any_record_is_encoded(impl: ModuleType) -> None:
    """An argument error wins over a record the encoder would refuse later."""
    bad_record: list[Any] = [(0, "not bytes", None)] * 3
    with pytest.raises(ValueError, match="offset_deltas"):
        impl.encode_batch(bad_record, offset_deltas=[2, 1, 0])
    with pytest.raises(TypeError):
        impl.encode_batch(bad_record, offset_deltas=[0, 1, 2])


# ---- kafka-python, an independent reader and writer -------------------------------------------

# kafka-python's builder and parser take non-negative millisecond timestamps.
kafka_python_specs = st.lists(
    st.builds(
        RecordSpec,
        st.integers(0, 2**41),
        st.none() | st.binary(max_size=100),
        st.none() | st.binary(max_size=100),
        st.lists(
            st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=10)), max_size=3
        ).map(tuple),
    ),
    min_size=1,
    max_size=20,
)


def _kafka_python_reads(data: bytes) -> tuple[DefaultRecordBatch, list[tuple[Any, ...]]]:
    """The batch as kafka-python parses it, after its CRC check, and its records."""
    parsed = DefaultRecordBatch(bytearray(data))
    assert parsed.validate_crc()  # before iterating, which decompresses in place
    records = [
        (r.offset, r.timestamp, r.key, r.value, tuple((k, v) for k, v in r.headers)) for r in parsed
    ]
    return parsed, records


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(
    data=st.data(),
    specs=kafka_python_specs,
    codec=st.sampled_from([Compression.NONE, Compression.GZIP, Compression.LZ4, Compression.ZSTD]),
    base_offset=st.integers(0, 2**40),
)
def test_kafka_python_reads_the_original_offsets_of_our_compacted_batches(
    impl: ModuleType,
    data: st.DataObject,
    specs: list[RecordSpec],
    codec: Compression,
    base_offset: int,
) -> None:
    deltas = data.draw(kept_offsets(len(specs)))
    last = deltas[-1] + data.draw(st.integers(0, 100))
    base_timestamp = data.draw(st.none() | st.integers(0, 2**41))
    batch = impl.encode_batch(
        specs,
        base_offset=base_offset,
        compression=codec,
        offset_deltas=deltas,
        last_offset_delta=last,
        base_timestamp=base_timestamp,
    )
    parsed, theirs = _kafka_python_reads(batch)
    assert (parsed.base_offset, parsed.last_offset_delta, parsed.records_count) == (
        base_offset,
        last,
        len(specs),
    )
    assert parsed.first_timestamp == (
        specs[0].timestamp if base_timestamp is None else base_timestamp
    )
    assert theirs == [
        (base_offset + delta, s.timestamp, s.key, s.value, tuple(s.headers))
        for delta, s in zip(deltas, specs, strict=True)
    ]
    assert [tuple(r) for r in impl.decode_records(batch)] == theirs


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(data=st.data(), specs=kafka_python_specs)
def test_kafka_python_builds_the_same_bytes_for_gapped_offsets(
    impl: ModuleType, data: st.DataObject, specs: list[RecordSpec]
) -> None:
    """Its builder takes each record's offset, and ends the range at the last one."""
    deltas = data.draw(kept_offsets(len(specs)))
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for delta, spec in zip(deltas, specs, strict=True):
        builder.append(
            delta,
            timestamp=spec.timestamp,
            key=spec.key,
            value=spec.value,
            headers=list(spec.headers),
        )
    theirs = bytes(builder.build())
    # kafka-python leaves partitionLeaderEpoch 0 for the broker to set.
    ours = impl.encode_batch(specs, offset_deltas=deltas, partition_leader_epoch=0)
    assert ours == theirs
    (header,) = impl.validate_batches(theirs, from_client=False)
    assert (header.record_count, header.last_offset_delta) == (len(specs), deltas[-1])
    assert [r.offset for r in impl.decode_records(theirs)] == deltas
