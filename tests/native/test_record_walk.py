"""The record walk of a client's batch: every record is checked (count,
lengths, varints, key, value, headers, no bytes left over), a compressed
batch's once inflated and with offsetDeltas 0..n-1, and a topic's record
rules (keys, timestamp bounds) name each refused record. C and Python agree
on what they accept and on every error's facts, and a batch is accepted
exactly when its records decode.

Kafka's LogValidator reads an uncompressed batch's records in place with
DefaultRecord.readFrom, which refuses a malformed one ("Found invalid record
structure", "Invalid record size", INVALID_RECORD: an InvalidRecordException,
so no record_errors entry); Kafka 4.0 (apache/kafka at 1eb7644)."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from native import _pure, compression
from native.errors import (
    NO_KEY_MESSAGE,
    BatchError,
    InvalidRecord,
    InvalidRecordCount,
    RejectedRecords,
    RejectedTimestamps,
)
from native.records import HEADER_SIZE, MAX_RECORD_ERRORS, Compression, RecordSpec
from tests.native.bombs import wrap
from tests.native.conftest import C_IMPL, codecs, differential, needs_c, record_lists

T0 = 1_700_000_000_000
SPECS = [
    RecordSpec(T0, b"a", b"1", (("h", b"x"),)),
    RecordSpec(T0 + 5, None, b"2"),
    RecordSpec(T0 - 9, b"c", None),
]


def _area(specs: list[RecordSpec], **kwargs: Any) -> bytes:
    """The uncompressed records area of a batch of ``specs``."""
    return _pure.encode_batch(specs, **kwargs)[HEADER_SIZE:]


def _batch(codec: int, area: bytes, record_count: int, **kwargs: Any) -> bytes:
    return wrap(
        codec,
        area if codec == 0 else compression.compress(codec, area),
        record_count,
        timestamp=T0,
        **kwargs,
    )


def _outcome(impl: ModuleType, data: bytes, **rules: Any) -> tuple[str, Any]:
    try:
        return "ok", impl.validate_batches(data, **rules)
    except BatchError as error:
        return "error", (error.facts(), str(error))


@pytest.mark.parametrize("codec", list(Compression)[1:])
def test_a_batch_lying_about_its_record_count_is_refused(impl: ModuleType, codec: int) -> None:
    """The attack that moved a partition's offsets by a billion."""
    batch = _batch(codec, _area(SPECS[:1]), 1_000_000_000)
    with pytest.raises(InvalidRecordCount) as caught:
        impl.validate_batches(batch)
    assert caught.value.facts() == (InvalidRecordCount, 0, 1_000_000_000, 1)
    assert caught.value.kafka_error == "INVALID_RECORD"


@pytest.mark.parametrize("codec", list(Compression))
def test_records_fewer_than_the_count_are_refused(impl: ModuleType, codec: int) -> None:
    """recordCount 3 and lastOffsetDelta 2 agree, but only two records follow."""
    batch = _batch(codec, _area(SPECS[:2]), 3)
    with pytest.raises(InvalidRecordCount) as caught:
        impl.validate_batches(batch)
    assert caught.value.facts() == (InvalidRecordCount, 0, 3, 2)


@pytest.mark.parametrize("codec", list(Compression))
def test_records_past_the_count_are_refused(impl: ModuleType, codec: int) -> None:
    batch = _batch(codec, _area(SPECS), 2)
    with pytest.raises(InvalidRecord, match="bytes after its last record"):
        impl.validate_batches(batch)


@pytest.mark.parametrize("codec", list(Compression)[1:])
def test_offset_deltas_must_run_from_zero(impl: ModuleType, codec: int) -> None:
    area = _area(SPECS, offset_deltas=[0, 2, 3])
    batch = _batch(codec, area, 3, last_offset_delta=2)
    with pytest.raises(InvalidRecord) as caught:
        impl.validate_batches(batch)
    assert (caught.value.expected, caught.value.found) == (1, 2)
    assert "record 1 has offsetDelta 2" in str(caught.value)


BODY = bytes(_area([RecordSpec(T0, b"k", b"v", (("h", b"x"),))]))[1:]
"""A record's bytes after its length: attributes, timestampDelta 0,
offsetDelta 0, key length 1 (zigzag 2), "k", value length 1, "v", header
count 1, its key length 1, "h", its value length 1, "x"."""


def _record(body: bytes) -> bytes:
    """A record of ``body``, its length varint true to it (under 64 bytes)."""
    return bytes([len(body) << 1]) + body


def _patched(at: int, byte: int) -> bytes:
    body = bytearray(BODY)
    body[at] = byte
    return _record(bytes(body))


# Each record's length varint is true to the bytes it has, so the lengths
# alone tile the batch: only a walk of its fields finds the fault.
MALFORMED = [
    pytest.param(_patched(3, 0x14), "key", id="key-past-the-record"),
    # -2: Kafka reads any negative length as null; tidelog's decoder does not.
    pytest.param(_patched(3, 0x03), "key", id="key-length-negative"),
    pytest.param(_patched(5, 0x1E), "value", id="value-past-the-record"),
    pytest.param(_patched(7, 0x01), "header count", id="header-count-negative"),
    pytest.param(_patched(7, 0x10), "header count", id="header-count-past-the-bytes"),
    pytest.param(_patched(8, 0x01), "header key", id="null-header-key"),
    pytest.param(
        _record(BODY[:1] + b"\xff" * 10 + b"\x00" + BODY[2:]),
        "timestampDelta",
        id="timestamp-varint-too-long",
    ),
    pytest.param(
        _record(BODY[:2] + b"\xff" * 5 + b"\x00" + BODY[3:]),
        "offsetDelta",
        id="offset-varint-too-long",
    ),
    pytest.param(_record(BODY + b"\x00"), "length", id="a-byte-left-in-the-record"),
]


@pytest.mark.parametrize("codec", list(Compression))
@pytest.mark.parametrize(("record", "field"), MALFORMED)
def test_a_malformed_record_is_refused_whatever_the_codec(
    impl: ModuleType, codec: int, record: bytes, field: str
) -> None:
    """An uncompressed batch too, without a rule: its lengths tile the batch,
    its count is right, its CRC is right, and it is refused all the same."""
    batch = _batch(codec, record, 1)
    with pytest.raises(InvalidRecord) as caught:
        impl.validate_batches(batch)
    assert type(caught.value) is InvalidRecord
    assert str(caught.value) == f"batch at 0: record 0 is malformed (its {field})"
    assert caught.value.kafka_error == "INVALID_RECORD"
    assert caught.value.position == (HEADER_SIZE if codec == 0 else 0)
    # A stored batch (the log cleaner's) is framed by its lengths alone.
    if codec == 0 and field not in ("timestampDelta", "offsetDelta"):
        assert impl.validate_batches(batch, from_client=False)


# Where in BODY each varint of a record starts, and the field a walk names.
VARINT_FIELDS = [
    pytest.param(1, "timestampDelta", id="timestampDelta"),
    pytest.param(2, "offsetDelta", id="offsetDelta"),
    pytest.param(3, "key", id="key-length"),
    pytest.param(5, "value", id="value-length"),
    pytest.param(7, "header count", id="header-count"),
    # A header key's length is never a record's last byte: a header takes
    # two bytes at least, and the header count is held to that first.
    pytest.param(10, "header value", id="header-value-length"),
]


@pytest.mark.parametrize(("at", "field"), VARINT_FIELDS)
@pytest.mark.parametrize("first", [0x80, 0x81, 0xFF])
def test_a_varint_cut_at_its_records_end_is_not_finished_by_the_next_record(
    impl: ModuleType, at: int, field: str, first: int
) -> None:
    """A record whose length ends it one byte into a varint (a byte with the
    continuation bit), followed by a record whose length byte has it clear:
    the two bytes read as one varint would be a two-byte varint. The varint
    stops at its record's end, as DefaultRecord.readFrom reads the record's
    own bytes only, and the record is malformed."""
    area = _record(BODY[:at] + bytes([first])) + _record(BODY)
    batch = _batch(0, area, 2)
    with pytest.raises(InvalidRecord) as caught:
        impl.validate_batches(batch)
    assert str(caught.value) == f"batch at 0: record 0 is malformed (its {field})"
    assert caught.value.position == HEADER_SIZE


@pytest.mark.parametrize("first", [0x80, 0x81, 0xFF])
def test_a_length_varint_cut_at_the_batchs_end_is_not_finished_by_the_next_batch(
    impl: ModuleType, first: int
) -> None:
    """The records area's last byte starts a record's length varint; the
    next batch's first byte (its baseOffset's, 0) would finish it."""
    cut = _batch(0, _record(BODY) + bytes([first]), 2)
    with pytest.raises(InvalidRecord) as caught:
        impl.validate_batches(cut + _batch(0, _record(BODY), 1))
    assert str(caught.value) == "batch at 0: record 1 is malformed (its length)"
    assert caught.value.position == HEADER_SIZE + 1 + len(BODY)


def test_a_malformed_record_is_refused_in_a_produce_partition(impl: ModuleType) -> None:
    batch = _batch(0, MALFORMED[0].values[0], 1)
    with pytest.raises(InvalidRecord, match=r"record 0 is malformed \(its key\)"):
        impl.validate_batches(batch, one_batch=True)


@pytest.mark.parametrize("codec", list(Compression))
def test_a_header_key_must_be_utf8(impl: ModuleType, codec: int) -> None:
    area = bytearray(_area(SPECS[:1]))
    at = area.index(b"\x02h")  # the header key's length (1, zigzag) and its byte
    area[at + 1] = 0xFF
    with pytest.raises(InvalidRecord, match=r"record 0 is malformed \(its header key\)"):
        impl.validate_batches(_batch(codec, bytes(area), 1))


def test_an_uncompressed_batch_keeps_the_offset_deltas_it_came_with(impl: ModuleType) -> None:
    """As Kafka's in-place path, which assigns offsets from the header and
    never reads an uncompressed record's offsetDelta against its index."""
    area = _area(SPECS, offset_deltas=[0, 2, 3])
    batch = _batch(0, area, 3, last_offset_delta=2)
    assert [h.record_count for h in impl.validate_batches(batch)] == [3]


@pytest.mark.parametrize("codec", list(Compression))
def test_keyless_records_are_named_for_a_compacted_topic(impl: ModuleType, codec: int) -> None:
    specs = [*SPECS, RecordSpec(T0, None, b"4")]
    batch = _batch(codec, _area(specs), 4)
    with pytest.raises(RejectedRecords) as caught:
        impl.validate_batches(batch, require_keys=True)
    assert type(caught.value) is RejectedRecords
    assert caught.value.kafka_error == "INVALID_RECORD"
    assert caught.value.record_errors == (
        (1, NO_KEY_MESSAGE),
        (3, NO_KEY_MESSAGE),
    )


@pytest.mark.parametrize("codec", list(Compression))
def test_records_outside_the_timestamp_bounds_are_named(impl: ModuleType, codec: int) -> None:
    batch = _batch(codec, _area(SPECS), 3)
    with pytest.raises(RejectedTimestamps) as caught:
        impl.validate_batches(batch, min_timestamp=T0 - 1, max_timestamp=T0 + 1)
    assert caught.value.kafka_error == "INVALID_TIMESTAMP"
    assert [index for index, _ in caught.value.record_errors] == [1, 2]
    assert caught.value.record_errors[1][1] == (
        f"Timestamp {T0 - 9} of message with offset 2 is out of range. "
        f"The timestamp should be within [{T0 - 1}, {T0 + 1}]"
    )
    assert impl.validate_batches(batch, min_timestamp=T0 - 9, max_timestamp=T0 + 5)


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.ZSTD])
def test_a_batch_of_many_refused_records_names_a_bounded_number(
    impl: ModuleType, codec: int
) -> None:
    """Tiny keyless records compress to almost nothing: naming every one would
    cost far more than the bytes received. The first MAX_RECORD_ERRORS are
    named, all are counted, and a timestamp fault past them still sets the
    error (INVALID_TIMESTAMP)."""
    count = MAX_RECORD_ERRORS + 1500
    specs = [RecordSpec(T0, None, None) for _ in range(count - 1)]
    specs.append(RecordSpec(T0 + 1000, b"k", None))  # its fault: the timestamp only
    batch = _batch(codec, _area(specs), count)
    with pytest.raises(RejectedTimestamps) as caught:
        impl.validate_batches(batch, require_keys=True, max_timestamp=T0)
    errors = caught.value.record_errors
    assert [index for index, _ in errors] == list(range(MAX_RECORD_ERRORS))
    assert errors[-1] == (
        MAX_RECORD_ERRORS - 1,
        NO_KEY_MESSAGE,
    )
    assert caught.value.total == count
    assert str(caught.value) == f"batch at 0: {count} records refused: {NO_KEY_MESSAGE}"


def test_a_missing_key_is_named_before_a_bad_timestamp(impl: ModuleType) -> None:
    """Record 1 has no key and a timestamp past the bound: its error is the key."""
    batch = _batch(Compression.LZ4, _area(SPECS), 3)
    with pytest.raises(RejectedTimestamps) as caught:
        impl.validate_batches(batch, require_keys=True, max_timestamp=T0 - 10)
    bounds = f"The timestamp should be within [{-(2**63)}, {T0 - 10}]"
    assert caught.value.record_errors == (
        (0, f"Timestamp {T0} of message with offset 0 is out of range. {bounds}"),
        (1, NO_KEY_MESSAGE),
        (2, f"Timestamp {T0 - 9} of message with offset 2 is out of range. {bounds}"),
    )


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP])
def test_a_record_without_a_timestamp_is_not_held_to_the_bounds(
    impl: ModuleType, codec: int
) -> None:
    """Kafka checks the bounds only for a timestamp other than -1 (NO_TIMESTAMP)."""
    specs = [RecordSpec(-1, b"k", b"1"), RecordSpec(T0 + 10, b"k", b"2")]
    batch = _batch(codec, _area(specs), 2)
    with pytest.raises(RejectedTimestamps) as caught:
        impl.validate_batches(batch, min_timestamp=T0 - 1, max_timestamp=T0 + 1)
    assert [index for index, _ in caught.value.record_errors] == [1]
    assert impl.validate_batches(_batch(codec, _area(specs[:1]), 1), min_timestamp=T0 - 1)


def test_a_timestamp_error_names_the_records_offset(impl: ModuleType) -> None:
    """As Kafka's message: the record's offset is baseOffset + offsetDelta."""
    batch = bytearray(_batch(Compression.NONE, _area(SPECS), 3))
    struct.pack_into(">q", batch, 0, 40)  # baseOffset 40 (CRC does not cover it)
    with pytest.raises(RejectedTimestamps) as caught:
        impl.validate_batches(bytes(batch), max_timestamp=T0 - 10)
    assert caught.value.record_errors[1][1].startswith(
        f"Timestamp {T0 + 5} of message with offset 41 is out of range."
    )


# -- differential: C and Python on valid and mutated records ---------------------

mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "cut", "insert"]), st.integers(0, 4000), st.integers(0, 255)
    ),
    max_size=3,
)
rules = st.fixed_dictionaries(
    {},
    optional={
        "require_keys": st.booleans(),
        "min_timestamp": st.none() | st.integers(-(2**40), 2**41),
        "max_timestamp": st.none() | st.integers(-(2**40), 2**41),
        "max_inflated": st.integers(0, 1 << 16),
    },
)


def _mutate(area: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(area)
    for kind, where, value in steps:
        if not out:
            break
        at = where % len(out)
        if kind == "flip":
            out[at] ^= value or 1
        elif kind == "cut":
            del out[at:]
        else:
            out.insert(at, value)
    return bytes(out)


@needs_c
@settings(max_examples=300)
@given(record_lists, codecs, mutations, st.integers(-2, 2), rules)
@example([RecordSpec(0, b"k", b"v")], Compression.ZSTD, [], 999_999_999, {})
def test_c_and_python_agree_on_mutated_records(
    specs: list[RecordSpec],
    codec: Compression,
    steps: list[tuple[str, int, int]],
    count_error: int,
    rule_kwargs: dict[str, Any],
) -> None:
    area = _mutate(_area(specs), steps)
    batch = _batch(codec, area, max(1, len(specs) + count_error))
    python = _outcome(_pure, batch, **rule_kwargs)
    assert _outcome(C_IMPL, batch, **rule_kwargs) == python
    if python[0] == "ok":
        # Accepted means every record decodes, as many as the header says.
        limit = rule_kwargs.get("max_inflated", 1 << 25)
        decoded = _pure.decode_records(batch, max_inflated=limit)
        assert len(decoded) == struct.unpack_from(">i", batch, 57)[0]
        assert C_IMPL.decode_records(batch, max_inflated=limit) == decoded


@needs_c
@differential
@given(record_lists, codecs, rules)
def test_c_and_python_agree_on_valid_batches(
    specs: list[RecordSpec], codec: Compression, rule_kwargs: dict[str, Any]
) -> None:
    batch = _pure.encode_batch(specs, compression=codec)
    assert _outcome(C_IMPL, batch, **rule_kwargs) == _outcome(_pure, batch, **rule_kwargs)


@settings(max_examples=300)
@given(record_lists, codecs, mutations)
def test_a_batch_is_accepted_exactly_when_its_records_decode(
    specs: list[RecordSpec], codec: Compression, steps: list[tuple[str, int, int]]
) -> None:
    """Against a model: the pure decoder. A batch whose header is right (its
    CRC, its count matching lastOffsetDelta) is accepted by either
    implementation exactly when decode_records reads as many records as it
    says from it, with nothing left over, and, compressed, numbered 0..n-1."""
    area = _mutate(_area(specs), steps)
    batch = _batch(codec, area, len(specs))
    try:
        offsets = [record.offset for record in _pure.decode_records(batch)]
    except BatchError:
        offsets = []
    decodes = len(offsets) == len(specs)
    if codec != Compression.NONE:  # baseOffset 0: an offset is its offsetDelta
        decodes = offsets == list(range(len(specs)))
    for implementation in [_pure] + ([C_IMPL] if C_IMPL is not None else []):
        assert (_outcome(implementation, batch)[0] == "ok") == decodes


# -- record rules against a model: which records each rule refuses ---------------

ruled_records = st.lists(
    st.tuples(st.booleans(), st.sampled_from([-1, T0 - 100, T0 - 1, T0, T0 + 1, T0 + 100])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200)
@given(ruled_records, codecs, st.booleans(), st.booleans())
def test_both_implementations_name_the_records_the_model_refuses(
    records: list[tuple[bool, int]], codec: Compression, require_keys: bool, bounded: bool
) -> None:
    """Kafka's order: a missing key first, else a timestamp outside
    [T0 - 1, T0 + 1] (but -1, no timestamp, passes); the C extension and the
    pure twin name the same indexes, with the same messages, and pick the
    same error class."""
    specs = [RecordSpec(ts, b"k" if keyed else None, b"v") for keyed, ts in records]
    batch = _pure.encode_batch(specs, compression=codec)
    bounds: dict[str, int] = {"min_timestamp": T0 - 1, "max_timestamp": T0 + 1} if bounded else {}
    keyless = [i for i, (keyed, _) in enumerate(records) if require_keys and not keyed]
    late = [
        i
        for i, (_, ts) in enumerate(records)
        if bounded and i not in keyless and ts != -1 and not T0 - 1 <= ts <= T0 + 1
    ]
    outcomes = []
    for implementation in [_pure] + ([C_IMPL] if C_IMPL is not None else []):
        try:
            implementation.validate_batches(batch, require_keys=require_keys, **bounds)
            outcomes.append(None)
        except RejectedRecords as error:
            outcomes.append((type(error), error.record_errors, error.total))
    assert len(set(outcomes)) == 1
    if not keyless and not late:
        assert outcomes[0] is None
        return
    assert outcomes[0] is not None
    kind, named, total = outcomes[0]
    assert [i for i, _ in named] == sorted(keyless + late)
    assert total == len(keyless) + len(late)
    assert kind is (RejectedTimestamps if late else RejectedRecords)
    assert all(m == NO_KEY_MESSAGE for i, m in named if i in keyless)


# -- differential: records built field by field from the format's edges ----------

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _zigzag(value: int) -> bytes:
    """``value`` as a zigzag varint (an int32's is the same as an int64's)."""
    out = bytearray()
    _pure._write_varint(out, value)
    return bytes(out)


def _mostly(
    right: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """``right`` nine times in ten: a record has many fields, and a walk
    reaches its last ones only when the first are right."""
    return st.integers(0, 9).flatmap(lambda n: hostile if n == 0 else right)


def _varint(
    max_bytes: int, right: st.SearchStrategy[int], edges: st.SearchStrategy[int]
) -> st.SearchStrategy[bytes]:
    """A varint field: mostly ``right``, else a value from ``edges`` or one
    of the shapes a reader must stop at: longer than ``max_bytes`` (an
    overlong zero) or never terminated."""
    hostile = st.one_of(
        edges.map(_zigzag),
        st.integers(1, max_bytes + 2).map(lambda n: b"\x80" * n + b"\x00"),
        st.integers(1, max_bytes + 2).map(lambda n: b"\xff" * n),
    )
    return _mostly(right.map(_zigzag), hostile)


INT32_EDGES = st.sampled_from([1, -1, -2, 2**31 - 1, -(2**31), 64]) | st.integers(-300, 300)
LENGTH_EDGES = st.sampled_from([-1, -2, 0, 1, 2**31 - 1, -(2**31)]) | st.integers(-3, 40)
header_keys = _mostly(st.sampled_from(
    [b"", b"h", b"trace-id", b"traceparent!", b"abcdefg\xc3\xa9", b"\xff", b"abcdefgh\x80",
     b"\xed\xa0\x80", b"\xf4\x90\x80\x80", "ascii-then-\u00e9".encode(), b"abcdefghijklmnop",
     b"abcdefghijklmno\xc3"]
), st.binary(max_size=20))  # fmt: skip


@st.composite
def _bytes_field(draw: st.DrawFn, payloads: st.SearchStrategy[bytes]) -> bytes:
    """A length-prefixed field: its own length, or a length from the edges."""
    payload = draw(payloads)
    claimed = draw(_mostly(st.none(), LENGTH_EDGES))
    return _zigzag(len(payload) if claimed is None else claimed) + (
        b"" if claimed == -1 else payload
    )


@st.composite
def hostile_record(draw: st.DrawFn, index: int) -> bytes:
    """One record's bytes, its length varint first: each field either right
    or from the edges of what a varint or a length can say."""
    headers = draw(st.lists(st.tuples(header_keys, st.binary(max_size=9)), max_size=4))
    body = b"".join(
        [
            bytes([draw(st.integers(0, 255))]),  # attributes
            draw(_varint(10, st.integers(-5, 5), st.sampled_from([I64_MIN, I64_MAX, 2**40]))),
            draw(_varint(5, st.just(index), INT32_EDGES)),
            draw(_bytes_field(st.binary(max_size=12))),
            draw(_bytes_field(st.binary(max_size=12))),
            draw(_varint(5, st.just(len(headers)), INT32_EDGES)),
            *(
                draw(_bytes_field(st.just(key))) + draw(_bytes_field(st.just(value)))
                for key, value in headers
            ),
        ]
    )
    length = draw(_varint(5, st.just(len(body)), LENGTH_EDGES))
    cut = draw(_mostly(st.none(), st.integers(0, len(body))))
    return length + (body if cut is None else body[:cut])


@needs_c
@settings(max_examples=500)
@given(
    st.integers(1, 4).flatmap(lambda n: st.tuples(*map(hostile_record, range(n)))).map(list),
    st.integers(-1, 1),
    codecs,
    rules,
    st.booleans(),
)
@example([_zigzag(-1)], 0, Compression.NONE, {}, True)
@example([b"\x00"], 0, Compression.NONE, {}, True)
@example([b"\x80" * 5 + b"\x00"], 0, Compression.NONE, {}, True)
def test_c_and_python_agree_on_records_from_the_formats_edges(
    records: list[bytes],
    count_error: int,
    codec: Compression,
    rule_kwargs: dict[str, Any],
    one_batch: bool,
) -> None:
    """Varints of 10 bytes and more, never terminated, zigzags of INT64_MIN,
    lengths of 0, -1, below -1 and past int32, header counts past the bytes
    left, header keys of eight ASCII bytes and more, not UTF-8 or cut off:
    the same answer and the same facts from both, as a Produce partition's
    batch or not; and accepted exactly when the records decode."""
    assert C_IMPL is not None
    batch = _batch(codec, b"".join(records), max(1, len(records) + count_error))
    kwargs = {**rule_kwargs, "one_batch": one_batch}
    python = _outcome(_pure, batch, **kwargs)
    assert _outcome(C_IMPL, batch, **kwargs) == python
    if python[0] == "ok" and codec == Compression.NONE:
        decoded = _pure.decode_records(batch)
        assert len(decoded) == struct.unpack_from(">i", batch, 57)[0]
        assert C_IMPL.decode_records(batch) == decoded
