"""The WAL's byte layout: headers round-trip and the CRC covers what the spec says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from native import crc32c
from wal.format import (
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    decode_record_header,
    decode_segment_header,
    encode_placed_record_header,
    encode_record_address,
    encode_record_header,
    encode_segment_header,
    parse_segment_name,
    record_crc,
    segment_name,
)

u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)


def test_header_sizes_match_the_spec() -> None:
    assert SEGMENT_HEADER_SIZE == 32
    assert RECORD_HEADER_SIZE == 44


@given(u64)
def test_segment_header_round_trips(sequence: int) -> None:
    header = encode_segment_header(sequence)
    assert len(header) == SEGMENT_HEADER_SIZE
    assert header.startswith(b"TLWALSEG")
    assert decode_segment_header(header) == sequence


@given(u64, st.integers(0, SEGMENT_HEADER_SIZE * 8 - 1))
def test_a_flipped_bit_invalidates_the_segment_header(sequence: int, bit: int) -> None:
    header = bytearray(encode_segment_header(sequence))
    header[bit // 8] ^= 1 << (bit % 8)
    if bit // 8 in range(24, 28):  # the four reserved padding bytes are not covered
        return
    assert decode_segment_header(header) is None


@given(u64, st.integers(1, 255), u64, i64, i64, st.binary(max_size=300))
def test_record_header_round_trips_and_crc_covers_payload_then_header(
    segment: int, record_type: int, stream: int, start: int, end: int, payload: bytes
) -> None:
    header = encode_record_header(
        segment, record_type, stream, start, end, len(payload), crc32c(payload)
    )
    decoded = decode_record_header(header, 0)
    assert decoded[1:] == (len(payload), segment, record_type, 0, stream, start, end)
    assert decoded.crc == crc32c(header[4:], crc32c(payload))
    assert record_crc(header + payload, 0, len(payload)) == decoded.crc


@given(u64, st.integers(1, 255), st.integers(0, 255), u64, i64, i64, st.binary(max_size=300))
def test_a_header_placed_from_the_appenders_packed_address_is_the_specs_layout(
    segment: int, record_type: int, flags: int, stream: int, start: int, end: int, payload: bytes
) -> None:
    """A single append's stream id and offsets are packed by the appender and
    the writer adds the rest: the bytes are the record header's table."""
    address = encode_record_address(stream, start, end)
    header = encode_placed_record_header(
        address, segment, record_type, len(payload), crc32c(payload), flags
    )
    covered = RECORD_HEADER.pack(0, len(payload), segment, record_type, flags, stream, start, end)
    crc = crc32c(covered[4:], crc32c(payload))
    assert header == RECORD_HEADER.pack(
        crc, len(payload), segment, record_type, flags, stream, start, end
    )


@given(st.binary(min_size=1, max_size=64), st.integers(0, 10**6))
def test_a_changed_payload_changes_the_record_crc(payload: bytes, flip: int) -> None:
    header = encode_record_header(1, 1, 0, 0, 0, len(payload), crc32c(payload))
    damaged = bytearray(payload)
    damaged[flip % len(payload)] ^= 0x01
    assert (
        record_crc(header + bytes(damaged), 0, len(payload)) != decode_record_header(header, 0).crc
    )


def test_segment_names_sort_by_sequence() -> None:
    names = [segment_name(s) for s in (10, 9, 100)]
    assert sorted(names) == [segment_name(9), segment_name(10), segment_name(100)]
    assert parse_segment_name(segment_name(12345)) == 12345
    assert parse_segment_name("free-00000000000000000001.wal") is None
    assert parse_segment_name("00000000000000000001.wal.tmp") is None
