"""encode_records: many values into one batch, C against its pure-Python twin.

Both implementations build the same bytes for any values, keys, headers,
codec and cut; the batch is what encode_batch builds from the same records
(one timestamp each), it validates as a client's batch, and it decodes to the
records it was given. The cut at max_bytes takes as many records as fit, at
least one; bad arguments raise the same error type in both.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native import _pure
from native.records import Compression, RecordSpec
from tests.native.conftest import C_IMPL, c_impl, codecs, headers, maybe_bytes, needs_c

values_lists = st.lists(maybe_bytes, min_size=1, max_size=30)


@st.composite
def calls(
    draw: st.DrawFn,
) -> tuple[list[bytes | None], list[bytes | None] | None, dict[str, object]]:
    values = draw(values_lists)
    keys = draw(st.none() | st.lists(maybe_bytes, min_size=len(values), max_size=len(values)))
    options: dict[str, object] = {
        "timestamp": draw(st.integers(-(2**40), 2**41)),
        "start": draw(st.integers(0, len(values) - 1)),
        "max_bytes": draw(st.integers(0, 4000)),
        "headers": draw(headers),
        "compression": draw(codecs),
        "producer_id": draw(st.integers(-1, 2**40)),
        "producer_epoch": draw(st.integers(-1, 2**15 - 1)),
        "base_sequence": draw(st.integers(-1, 2**31 - 1)),
        "is_transactional": draw(st.booleans()),
    }
    return values, keys, options


@needs_c
@settings(max_examples=300, deadline=None)
@given(calls())
def test_c_and_pure_build_the_same_batch(
    call: tuple[list[bytes | None], list[bytes | None] | None, dict[str, object]],
) -> None:
    values, keys, options = call
    assert c_impl().encode_records(values, keys, **options) == _pure.encode_records(
        values, keys, **options
    )


@settings(max_examples=200, deadline=None)
@given(calls())
def test_the_batch_is_encode_batch_of_the_same_records(
    call: tuple[list[bytes | None], list[bytes | None] | None, dict[str, object]],
) -> None:
    values, keys, options = call
    impl = C_IMPL or _pure
    batch, end = impl.encode_records(values, keys, **options)
    start = int(options["start"])  # type: ignore[call-overload]
    timestamp = int(options["timestamp"])  # type: ignore[call-overload]
    specs = [
        RecordSpec(timestamp, None if keys is None else keys[i], values[i], options["headers"])  # type: ignore[arg-type]
        for i in range(start, end)
    ]
    expected = _pure.encode_batch(
        specs,
        compression=options["compression"],  # type: ignore[arg-type]
        producer_id=options["producer_id"],  # type: ignore[arg-type]
        producer_epoch=options["producer_epoch"],  # type: ignore[arg-type]
        base_sequence=options["base_sequence"],  # type: ignore[arg-type]
        is_transactional=options["is_transactional"],  # type: ignore[arg-type]
    )
    if options["compression"] == Compression.NONE:
        assert bytes(batch) == expected
    else:  # a codec's output may differ between two calls; the records may not
        assert _pure.decode_records(batch) == _pure.decode_records(expected)
    assert [h.record_count for h in _pure.validate_batches(batch)] == [end - start]
    # As many records as fit (sized before compression), at least one: one
    # more would not have.
    assert end > start
    plain = {**options, "compression": 0, "max_bytes": 2**31 - 1}
    uncompressed, _ = _pure.encode_records(
        values[:end], None if keys is None else keys[:end], **plain
    )
    max_bytes = int(options["max_bytes"])  # type: ignore[call-overload]
    assert len(uncompressed) <= max_bytes or end == start + 1
    if end < len(values):
        more, _ = _pure.encode_records(
            values[: end + 1], None if keys is None else keys[: end + 1], **plain
        )
        assert len(more) > max_bytes


@pytest.mark.parametrize("impl", [_pure] + ([C_IMPL] if C_IMPL else []), ids=lambda m: m.__name__)
def test_values_may_be_str_bytearray_or_memoryview(impl: ModuleType) -> None:
    batch, end = impl.encode_records(
        ["é", bytearray(b"ab"), memoryview(b"cd"), None], ["k", None, b"", b"x"], timestamp=7
    )
    assert end == 4
    records = _pure.decode_records(batch)
    assert [(r.key, r.value) for r in records] == [
        (b"k", "é".encode()),
        (None, b"ab"),
        (b"", b"cd"),
        (b"x", None),
    ]
    assert {r.timestamp for r in records} == {7}


@pytest.mark.parametrize("impl", [_pure] + ([C_IMPL] if C_IMPL else []), ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (([b"a"],), {}, TypeError),  # no timestamp
        (([b"a"],), {"timestamp": "1"}, TypeError),
        ((iter([b"a"]),), {"timestamp": 1}, TypeError),
        (([b"a"], [b"k", b"l"]), {"timestamp": 1}, ValueError),
        (([b"a"], iter([b"k"])), {"timestamp": 1}, TypeError),
        (([],), {"timestamp": 1}, ValueError),
        (([b"a"],), {"timestamp": 1, "start": 1}, ValueError),
        (([b"a"],), {"timestamp": 1, "start": -1}, ValueError),
        (([b"a"],), {"timestamp": 1, "compression": 5}, ValueError),
        (([1],), {"timestamp": 1}, TypeError),
        (([b"a"],), {"timestamp": 1, "headers": [("h",)]}, TypeError),
        (([b"a"],), {"timestamp": 1, "headers": [(b"h", b"v")]}, TypeError),
        (([b"a"],), {"timestamp": 2**63}, OverflowError),
    ],
)
def test_bad_arguments_raise_the_same_error(
    impl: ModuleType, args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        impl.encode_records(*args, **kwargs)


@pytest.mark.parametrize("impl", [_pure] + ([C_IMPL] if C_IMPL else []), ids=lambda m: m.__name__)
def test_a_record_larger_than_max_bytes_gets_a_batch_alone(impl: ModuleType) -> None:
    values = [b"x" * 100, b"y" * 10]
    batch, end = impl.encode_records(values, timestamp=0, max_bytes=10)
    assert end == 1 and len(batch) > 100
    batch, end = impl.encode_records(values, timestamp=0, start=1, max_bytes=10)
    assert end == 2 and _pure.decode_records(batch)[0].value == b"y" * 10
