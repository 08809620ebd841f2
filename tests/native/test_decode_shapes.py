"""decode_records' consumer shape: records as a caller's tuple type, records
below an offset and control batches left out — C and Python alike."""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native import _pure
from native.errors import BatchError
from native.records import Compression, RecordSpec
from tests.native.conftest import c_impl, codecs, differential, needs_c, record_lists


class Shaped(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_type: int


def _batches(impl: ModuleType) -> bytes:
    return (
        impl.encode_batch(
            [RecordSpec(5, b"k", b"v"), RecordSpec(6, None, b"w", (("h", b"x"),))],
            base_offset=10,
            compression=Compression.LZ4,
        )
        + impl.encode_batch([RecordSpec(7, b"a", None)], base_offset=12, is_control=True)
        + impl.encode_batch([RecordSpec(8, b"z", b"q")], base_offset=13, timestamp_type=1)
    )


def test_records_come_as_the_callers_type_with_prefix_and_timestamp_type(
    impl: ModuleType,
) -> None:
    shaped = impl.decode_records(_batches(impl), record_type=Shaped, prefix=("t", 3))
    assert [type(r) for r in shaped] == [Shaped] * 4
    plain = impl.decode_records(_batches(impl))
    assert [r[2:7] for r in shaped] == [tuple(r) for r in plain]
    assert [(r.topic, r.partition, r.timestamp_type) for r in shaped] == [
        ("t", 3, 0),
        ("t", 3, 0),
        ("t", 3, 0),
        ("t", 3, 1),
    ]


def test_min_offset_and_skip_control_leave_records_out(impl: ModuleType) -> None:
    data = _batches(impl)
    assert [r.offset for r in impl.decode_records(data, min_offset=11)] == [11, 12, 13]
    assert [r.offset for r in impl.decode_records(data, skip_control=True)] == [10, 11, 13]
    both = impl.decode_records(
        data, record_type=Shaped, prefix=("t", 0), min_offset=11, skip_control=True
    )
    assert [r.offset for r in both] == [11, 13]


def test_a_skipped_batch_is_not_decoded(impl: ModuleType) -> None:
    good = impl.encode_batch([RecordSpec(1, b"k", b"v")], base_offset=5)
    broken = bytearray(impl.encode_batch([RecordSpec(1, b"k", b"v")], base_offset=0))
    broken[-1] ^= 0xFF  # a malformed record (decode does not check CRCs)
    data = bytes(broken) + good
    with pytest.raises(BatchError):
        impl.decode_records(data)
    assert [r.offset for r in impl.decode_records(data, min_offset=1)] == [5]


def test_a_prefix_without_a_record_type_is_refused(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.decode_records(_batches(impl), prefix=("t", 0))


def _outcome(function: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", function(*args, **kwargs)
    except BatchError as error:
        return "error", error.facts()


@needs_c
@differential
@given(
    st.lists(st.tuples(record_lists, codecs, st.booleans(), st.booleans()), min_size=1, max_size=4),
    st.integers(-5, 40),
    st.booleans(),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 200)),
)
def test_both_implementations_shape_records_alike(
    batches: list[tuple[list[RecordSpec], Compression, bool, bool]],
    min_offset: int,
    skip_control: bool,
    shaped: bool,
    corrupt_at: int | None,
) -> None:
    data = bytearray()
    offset = 0
    for specs, codec, control, log_append in batches:
        data += _pure.encode_batch(
            specs,
            base_offset=offset,
            compression=codec,
            is_control=control,
            timestamp_type=1 if log_append else 0,
        )
        offset += len(specs)
    if corrupt_at is not None and corrupt_at < len(data):
        data[corrupt_at] ^= 0x5A
    options: dict[str, Any] = {"min_offset": min_offset, "skip_control": skip_control}
    if shaped:
        options.update(record_type=Shaped, prefix=("topic", 7))
    expected = _outcome(_pure.decode_records, bytes(data), **options)
    assert _outcome(c_impl().decode_records, bytes(data), **options) == expected
