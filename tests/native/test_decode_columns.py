"""decode_columns: the records of decode_records as Arrow-shaped column
buffers. The columns read back to exactly decode_records' records (same
skips, same timestamp types), Arrow builds arrays over them as they are, and
C and Python agree on every result and every error, corrupted input too."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any, NamedTuple

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import native
from native import _pure
from native.errors import BatchError, InvalidRecord
from native.records import BinaryColumn, Compression, RecordColumns, RecordSpec
from tests.native.conftest import C_IMPL, c_impl, codecs, differential, needs_c, record_lists


class Typed(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_type: int


def _columns(impl: ModuleType, data: bytes, **kwargs: Any) -> RecordColumns:
    return RecordColumns.from_raw(impl.decode_columns(data, **kwargs))


def _binary(column: BinaryColumn, count: int) -> list[bytes | None]:
    """The entries of a column, read through Arrow's own array over its buffers."""
    array = pa.Array.from_buffers(
        pa.large_binary(),
        count,
        [pa.py_buffer(column.validity), pa.py_buffer(column.offsets), pa.py_buffer(column.data)],
        null_count=column.nulls,
    )
    array.validate(full=True)
    values: list[bytes | None] = array.to_pylist()
    return values


def _records(columns: RecordColumns) -> list[tuple[Any, ...]]:
    """The records the columns hold, as decode_records' Typed tuples."""
    n = columns.records
    offsets = struct.unpack(f"<{n}q", columns.offsets)
    timestamps = struct.unpack(f"<{n}q", columns.timestamps)
    ends = struct.unpack(f"<{n + 1}q", columns.header_ends)
    pairs = len(columns.header_keys.offsets) // 8 - 1
    names = [b.decode() for b in _binary(columns.header_keys, pairs) if b is not None]
    header_values = _binary(columns.header_values, pairs)
    keys, values = _binary(columns.keys, n), _binary(columns.values, n)
    assert ends[0] == 0 and ends[-1] == pairs == len(names)
    return [
        (
            offsets[i],
            timestamps[i],
            keys[i],
            values[i],
            tuple(
                zip(names[ends[i] : ends[i + 1]], header_values[ends[i] : ends[i + 1]], strict=True)
            ),
            columns.timestamp_types[i],
        )
        for i in range(n)
    ]


def _batches(specs: list[RecordSpec], codec: Compression, log_append: bool) -> bytes:
    """A data batch, a control batch, then a second data batch of one record."""
    return (
        _pure.encode_batch(
            specs, base_offset=100, compression=codec, timestamp_type=int(log_append)
        )
        + _pure.encode_batch(specs[:1], base_offset=100 + len(specs), is_control=True)
        + _pure.encode_batch(specs[:1], base_offset=101 + len(specs), compression=codec)
    )


def _outcome(function: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", function(*args, **kwargs)
    except BatchError as error:
        return "error", (type(error), error.facts())


@differential
@given(record_lists, codecs, st.booleans(), st.integers(90, 130), st.booleans())
def test_the_columns_hold_exactly_what_decode_records_gives(
    specs: list[RecordSpec], codec: Compression, log_append: bool, min_offset: int, skip: bool
) -> None:
    data = _batches(specs, codec, log_append)
    kwargs: dict[str, Any] = {"min_offset": min_offset, "skip_control": skip}
    expected = [tuple(r) for r in _pure.decode_records(data, record_type=Typed, **kwargs)]
    pure = _columns(_pure, data, **kwargs)
    assert _records(pure) == expected
    if C_IMPL is None:  # no C extension: the Python twin alone
        return
    assert _columns(c_impl(), data, **kwargs) == pure


def test_the_public_api_names_the_buffers() -> None:
    data = native.encode_batch(
        [RecordSpec(5, b"k", b"v", (("h", b"x"), ("i", None))), RecordSpec(-1, None, b"w")],
        base_offset=10,
    )
    columns = native.decode_columns(data)
    assert columns.records == 2
    assert struct.unpack("<2q", columns.offsets) == (10, 11)
    assert struct.unpack("<2q", columns.timestamps) == (5, -1)
    assert columns.keys.nulls == 1 and columns.keys.validity == b"\x01"
    assert struct.unpack("<3q", columns.header_ends) == (0, 2, 2)
    assert columns.header_keys.data == b"hi"
    assert columns.header_values.nulls == 1


@pytest.mark.parametrize("impl", [pytest.param(_pure, id="python")])
def test_an_empty_buffer_has_no_records(impl: ModuleType) -> None:
    columns = _columns(impl, b"")
    assert columns.records == 0
    assert struct.unpack("<q", columns.header_ends) == (0,)
    assert columns.keys.offsets == struct.pack("<q", 0)


def test_a_header_name_that_is_not_utf8_is_refused_as_decode_records_refuses_it() -> None:
    data = bytearray(_pure.encode_batch([RecordSpec(1, b"k", b"v", (("hé", b"x"),))]))
    # "é" is C3 A9; C3 28 is no UTF-8. Recompute nothing: decode does not check the CRC.
    data[data.index(b"\xc3\xa9") + 1] = 0x28
    expected = _outcome(_pure.decode_records, bytes(data))
    assert expected[0] == "error" and expected[1][0] is InvalidRecord
    assert _outcome(_pure.decode_columns, bytes(data)) == expected
    if C_IMPL is not None:
        assert _outcome(c_impl().decode_columns, bytes(data)) == expected


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
    batch = bytearray(_batches(specs, codec, False))
    for where, bit in flips:
        batch[where % len(batch)] ^= 1 << bit
    if mutation == "truncate":
        del batch[cut % len(batch) :]
    elif mutation == "append":
        batch += garbage
    data = bytes(batch)
    c, pure = _outcome(c_impl().decode_columns, data), _outcome(_pure.decode_columns, data)
    assert c == pure
    assert c[0] == _outcome(_pure.decode_records, data)[0]


@needs_c
@given(st.binary(min_size=61, max_size=200), st.integers(1, 200))
def test_a_valid_header_over_hostile_records_gets_the_same_answer(body: bytes, count: int) -> None:
    header = bytearray(61)
    struct.pack_into(">qiibIhiqqqhii", header, 0, 0, 49 + len(body), 0, 2, 0, 0, count - 1,
                     0, 0, -1, -1, -1, count)  # fmt: skip
    data = bytes(header + body)
    assert _outcome(c_impl().decode_columns, data) == _outcome(_pure.decode_columns, data)


@pytest.mark.parametrize("limit", [0, 10])
def test_the_inflation_limit_holds_as_in_decode_records(limit: int) -> None:
    data = _pure.encode_batch([RecordSpec(1, b"k", b"v" * 100)], compression=Compression.GZIP)
    expected = _outcome(_pure.decode_records, data, max_inflated=limit)
    assert expected[0] == "error"
    assert _outcome(_pure.decode_columns, data, max_inflated=limit) == expected
    if C_IMPL is not None:
        assert _outcome(c_impl().decode_columns, data, max_inflated=limit) == expected


utf8_edges = st.sampled_from(
    [b"\xc2\x80", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80",
     b"\xef\xbf\xbf", b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
     b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xc3", b"\xe2\x82", b"\x80", b"\xff"]
)  # fmt: skip
"""The edges of well-formed UTF-8: the first and last of each length,
overlong forms, surrogates, past U+10FFFF, cut-short sequences."""


@needs_c
@given(st.lists(utf8_edges | st.binary(max_size=4), max_size=4).map(b"".join))
def test_header_names_are_refused_exactly_where_decode_records_refuses_them(raw: bytes) -> None:
    placeholder = "\x01" * len(raw)
    batch = bytearray(_pure.encode_batch([RecordSpec(1, b"k", b"v", ((placeholder, b"x"),))]))
    if raw:
        at = batch.index(placeholder.encode())
        batch[at : at + len(raw)] = raw
    data = bytes(batch)
    expected = _outcome(_pure.decode_records, data)
    pure = _outcome(_pure.decode_columns, data)
    assert pure[0] == expected[0]
    assert _outcome(c_impl().decode_columns, data) == pure


@needs_c
@differential
@given(
    st.lists(st.tuples(codecs, st.integers(1, 6)), min_size=1, max_size=5),
    st.sampled_from(["none", "record", "header", "trailing"]),
    st.integers(0, 5),
)
def test_large_inputs_decoded_without_the_gil_agree_with_the_twin(
    layout: list[tuple[Compression, int]], damage: str, where: int
) -> None:
    """Past 64 KiB the C decodes uncompressed batches with the GIL released,
    takes it back for each compressed one and for an error, and lets it go
    again after: every such path gives the twin's records or error."""
    value = bytes(range(256)) * 96  # 24 KiB: a few records pass the threshold
    parts, base = [], 0
    for codec, count in [(Compression.NONE, 3), *layout]:  # 72 KiB before the rest
        specs = [RecordSpec(base + i, b"k%d" % i, value, (("h", b"x"),)) for i in range(count)]
        parts.append(bytearray(_pure.encode_batch(specs, base_offset=base, compression=codec)))
        base += count
    target = parts[where % len(parts)]
    if damage == "record":  # the first record's length varint: past the batch's end
        target[61] = 0x7F
    elif damage == "header":
        target[16] = 9  # magic
    data = b"".join(parts) + (b"\x00" * 7 if damage == "trailing" else b"")
    assert len(data) >= 64 * 1024
    pure = _outcome(_pure.decode_columns, data, min_offset=1)
    assert _outcome(c_impl().decode_columns, data, min_offset=1) == pure
    if damage == "none":
        assert pure[0] == "ok" and pure[1][0] == base - 1
