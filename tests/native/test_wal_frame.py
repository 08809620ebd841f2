"""frame_wal_records and stamp_wal_records: a batch append's WAL records laid
out in one call, then stamped with their segment; the C and the pure twin
give the same bytes, positions and errors. (That the records are the ones
docs/wal-format.md specifies is tests/wal/test_spec.py's.)"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native import _pure
from tests.native.conftest import C_IMPL, c_impl, differential, needs_c

IMPLS = [_pure] + ([C_IMPL] if C_IMPL else [])
HEADER = 44


class Position(NamedTuple):
    segment: int
    offset: int


def append(
    payload: Any = b"p",
    stream_id: Any = 0,
    start_offset: Any = 0,
    end_offset: Any = 0,
    record_type: Any = 1,
    tag: Any = None,
    prefix: Any = b"",
    payload_crc: Any = None,
) -> tuple[Any, ...]:
    """A wal.Append's fields, as the framer reads them."""
    return (payload, stream_id, start_offset, end_offset, record_type, tag, prefix, payload_crc)


appends = st.lists(
    st.builds(
        append,
        payload=st.binary(max_size=300) | st.binary(max_size=300).map(bytearray),
        stream_id=st.integers(0, 2**64 - 1),
        start_offset=st.integers(-(2**63), 2**63 - 1),
        end_offset=st.integers(-(2**63), 2**63 - 1),
        record_type=st.integers(1, 254),
        tag=st.none() | st.integers(),
        prefix=st.binary(max_size=12),
        payload_crc=st.none() | st.integers(0, 2**32 - 1),
    ),
    max_size=12,
)


@needs_c
@differential
@given(
    appends,
    st.integers(0, 400),
    st.integers(0, 2000),
    st.integers(1, 2**64 - 1),
    st.integers(0, 255),
)
def test_the_c_frames_and_stamps_as_the_twin_does(
    records: list[tuple[Any, ...]], max_length: int, room: int, segment: int, flags: int
) -> None:
    framed = [impl.frame_wal_records(records, max_length) for impl in (_pure, c_impl())]
    assert framed[0] == framed[1]
    if isinstance(framed[0], int):
        return
    start = 0
    while start < len(framed[0]):
        stamped = [
            impl.stamp_wal_records(frame, start, room, segment, 32 + start, flags, Position)
            for impl, frame in zip((_pure, c_impl()), framed, strict=True)
        ]
        assert stamped[0] == stamped[1]
        assert framed[0] == framed[1]
        end, positions = stamped[0]
        if not positions:
            break
        start = end
        flags = 0


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_a_given_payload_crc_is_used_not_computed(impl: ModuleType) -> None:
    frame = impl.frame_wal_records([append(b"abc", prefix=b"px", payload_crc=0x1234)], 100)
    from_given = _pure.crc32c_combine(_pure.crc32c(b"px"), 0x1234, 3)
    assert int.from_bytes(frame[:4], "little") == from_given
    plain = impl.frame_wal_records([append(b"abc", payload_crc=0x1234)], 100)
    assert int.from_bytes(plain[:4], "little") == 0x1234


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_the_first_record_longer_than_the_limit_is_named_and_nothing_framed(
    impl: ModuleType,
) -> None:
    records = [append(b"x" * 10), append(b"y" * 30, prefix=b"zz"), append(b"w" * 40)]
    assert impl.frame_wal_records(records, 31) == 32
    assert len(impl.frame_wal_records(records, 40)) == 3 * HEADER + 82


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_stamping_takes_only_whole_records_that_fit_the_room(impl: ModuleType) -> None:
    frame = impl.frame_wal_records([append(b"a" * 6), append(b"b" * 6), append(b"c")], 100)
    end, positions = impl.stamp_wal_records(frame, 0, 2 * (HEADER + 6) - 1, 7, 32, 1, Position)
    assert (end, positions) == (HEADER + 6, [Position(7, 32)])
    end, positions = impl.stamp_wal_records(frame, end, HEADER, 8, 32, 1, Position)
    assert (end, positions) == (HEADER + 6, [])
    end, positions = impl.stamp_wal_records(frame, end, 1000, 8, 32, 1, Position)
    assert (end, positions) == (len(frame), [Position(8, 32), Position(8, 32 + HEADER + 6)])
    assert frame[17] == 1 and frame[HEADER + 6 + 17] == 1 and frame[2 * (HEADER + 6) + 17] == 0


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (append(record_type=0), ValueError),
        (append(record_type=255), ValueError),
        (append(record_type=2**70), ValueError),
        (append(record_type="1"), TypeError),
        (append(payload="text"), TypeError),
        (append(prefix=None), TypeError),
        (append(stream_id=-1), OverflowError),
        (append(stream_id=2**64), OverflowError),
        (append(start_offset=2**63), OverflowError),
        (append(end_offset=-(2**63) - 1), OverflowError),
        (append(end_offset=1.0), TypeError),
        (append(payload_crc=2**32), OverflowError),
        (append(payload_crc=-1), OverflowError),
        ((b"too", "short"), TypeError),
        ([b"not a tuple"] * 8, TypeError),
    ],
)
def test_a_bad_append_is_refused_alike(
    impl: ModuleType, bad: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.frame_wal_records([append(), bad], 100)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("frame", "start", "error"),
    [
        (b"read only", 0, BufferError),
        (bytearray(HEADER - 1), 0, ValueError),
        (bytearray(HEADER) + b"\x01", -1, ValueError),
        (bytearray(HEADER) + b"\x01", HEADER + 2, ValueError),
        (bytearray(4) + (5).to_bytes(4, "little") + bytearray(HEADER - 8) + b"four", 0, ValueError),
    ],
)
def test_a_frame_that_is_not_whole_records_is_refused_alike(
    impl: ModuleType, frame: Any, start: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.stamp_wal_records(frame, start, 1 << 20, 1, 32, 0, Position)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_positions_past_a_signed_64_bit_offset_are_refused(impl: ModuleType) -> None:
    frame = impl.frame_wal_records([append(), append()], 100)
    last = 2**63 - 1 - len(frame)
    assert impl.stamp_wal_records(frame, 0, 1000, 1, last, 0, Position)[0] == len(frame)
    with pytest.raises(OverflowError):
        impl.stamp_wal_records(bytearray(frame), 0, 1000, 1, last + 1, 0, Position)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
def test_positions_need_a_tuple_type(impl: ModuleType) -> None:
    frame = impl.frame_wal_records([append()], 100)
    with pytest.raises(TypeError):
        impl.stamp_wal_records(frame, 0, 1000, 1, 32, 0, dict)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda impl: impl.__name__)
def test_a_record_longer_than_its_length_field_holds_is_too_long(
    impl: ModuleType, tmp_path: Path
) -> None:
    """A header states its payload's length in 32 bits: a record of 2^32
    bytes is refused as too long whatever max_length allows, never framed
    with its length cut to 0 (its payload would then be stamped as records).
    The payload is a sparse file's mapping, so nothing of it is allocated."""
    length = 2**32
    with _sparse_mapping(tmp_path / "payload", length) as payload:
        framed = impl.frame_wal_records([append(payload, payload_crc=0)], 2**40)
    assert framed == length


@contextlib.contextmanager
def _sparse_mapping(path: Path, size: int) -> Iterator[memoryview]:
    """A read-only mapping of a ``size``-byte file with no data blocks; it is
    unmapped once the last view of it is gone (a failed call's traceback may
    still hold one)."""
    with path.open("wb") as file:
        file.truncate(size)
    with path.open("rb") as file:
        yield memoryview(mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ))


@needs_c
@differential
@given(
    st.binary(min_size=24, max_size=24),
    st.integers(0, 2**64 - 1),
    st.integers(0, 255),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 255),
)
def test_the_c_places_a_record_header_as_the_twin_does(
    address: bytes, segment: int, record_type: int, length: int, payload_crc: int, flags: int
) -> None:
    args = (address, segment, record_type, length, payload_crc, flags)
    assert c_impl().place_wal_record(*args) == _pure.place_wal_record(*args)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"a" * 23, 1, 1, 0, 0, 0), ValueError),
        ((bytearray(24), 1, 1, 0, 0, 0), ValueError),
        ((bytes(24), -1, 1, 0, 0, 0), OverflowError),
        ((bytes(24), 2**64, 1, 0, 0, 0), OverflowError),
        ((bytes(24), 1, 256, 0, 0, 0), OverflowError),
        ((bytes(24), 1, 1, 2**32, 0, 0), OverflowError),
        ((bytes(24), 1, 1, 0, 2**32, 0), OverflowError),
        ((bytes(24), 1, 1, 0, 0, 256), OverflowError),
        ((bytes(24), 1.0, 1, 0, 0, 0), TypeError),
    ],
)
def test_a_header_that_cannot_be_placed_is_refused_alike(
    impl: ModuleType, args: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.place_wal_record(*args)


class _Address(bytes):
    """A bytes subclass: both sides take it as the bytes it is."""


EDGE_U64 = st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1])
EDGE_I64 = st.sampled_from([-(2**63), -(2**63) + 1, -1, 0, 1, 2**62, 2**63 - 2, 2**63 - 1])


@needs_c
@differential
@given(
    EDGE_U64 | st.integers(0, 2**64 - 1),
    EDGE_I64 | st.integers(-(2**63), 2**63 - 1),
    EDGE_I64 | st.integers(-(2**63), 2**63 - 1),
    EDGE_U64 | st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 254, 255, True]),
    st.sampled_from([0, 1, 2**32 - 1, 44]),
    st.sampled_from([0, 2**32 - 1, 0x1EDC6F41]),
    st.sampled_from([0, 1, 2, 255]),
    st.booleans(),
)
def test_the_c_places_an_address_at_the_edges_as_the_twin_does(
    stream: int,
    start: int,
    end: int,
    segment: int,
    record_type: int,
    length: int,
    payload_crc: int,
    flags: int,
    subclass: bool,
) -> None:
    """Offsets at the ends of the signed range, a segment at the top of the
    unsigned one, a bool where an int goes, a bytes subclass for the
    address: the same 44 bytes from both, the address's 24 at the end."""
    from wal.format import encode_record_address

    address = encode_record_address(stream, start, end)
    if subclass:
        address = _Address(address)
    args = (address, segment, record_type, length, payload_crc, flags)
    placed = c_impl().place_wal_record(*args)
    assert placed == _pure.place_wal_record(*args)
    assert len(placed) == HEADER and placed[20:] == address


@pytest.mark.parametrize("impl", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), TypeError),
        ((bytes(24), 1, 1, 0, 0), TypeError),
        ((bytes(24), 1, 1, 0, 0, 0, 0), TypeError),
        ((memoryview(bytes(24)), 1, 1, 0, 0, 0), ValueError),
        (("x" * 24, 1, 1, 0, 0, 0), ValueError),
        ((None, 1, 1, 0, 0, 0), ValueError),
        ((bytes(24), None, 1, 0, 0, 0), TypeError),
        ((bytes(24), 1, "1", 0, 0, 0), TypeError),
        ((bytes(24), 1, 1, 0, 0, 2**64), OverflowError),
        ((bytes(24), 1, 1, -(2**63), 0, 0), OverflowError),
        ((bytes(24), 1, 1, 0, -1, 0), OverflowError),
    ],
)
def test_a_call_that_cannot_place_a_header_raises_alike(
    impl: ModuleType, args: tuple[Any, ...], error: type[Exception]
) -> None:
    """Wrong counts, types and ranges raise the same type from both sides,
    and the C process goes on (the next call places a header)."""
    with pytest.raises(error):
        impl.place_wal_record(*args)
    assert len(impl.place_wal_record(bytes(24), 1, 1, 0, 0, 0)) == HEADER
