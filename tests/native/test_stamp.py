"""stamp_batch: the provenance stamp, C against its pure-Python twin.

Any batch native.encode_batch builds (records, headers, codecs, producer
fields) comes back with the stamp's headers appended to every record and the
client's headers of a reserved name gone (every other header kept, whatever
its prefix); every batch field is kept and the CRC holds. Both
implementations give the same records and errors.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native
from native import _pure
from native.errors import InvalidBatchLength, StampedBatchTooLarge
from native.records import Compression, RecordSpec
from tests.native.conftest import (
    C_IMPL,
    IMPLEMENTATIONS,
    c_impl,
    codecs,
    maybe_bytes,
    timestamps,
)

RESERVED = ("tidelog.principal", "tidelog.client.id", "tidelog.received.ms")

# Names that collide often: the reserved ones, others under the same prefix
# (the agent memory's, which a stamp keeps), prefixes and extensions of a
# reserved name, non-ASCII (compared as UTF-8 bytes).
NEAR_NAMES = (
    *RESERVED,
    "tidelog.correlation.id",
    "tidelog.context",
    "tidelog.",
    "tidelog.principa",
    "tidelog.principal.x",
    "tidelog.prïncipal",
    "",
)
names = st.sampled_from(NEAR_NAMES) | st.text(max_size=12)
reserved_names = st.lists(names, max_size=5)

# Client headers: some of a reserved name (forgeries to drop), some near one.
client_headers = st.lists(st.tuples(names, st.none() | st.binary(max_size=20)), max_size=5).map(
    tuple
)
records = st.lists(
    st.builds(RecordSpec, timestamps, maybe_bytes, maybe_bytes, client_headers),
    min_size=1,
    max_size=15,
)
stamps = st.lists(
    st.tuples(st.sampled_from(RESERVED) | st.text(min_size=1, max_size=12), st.binary(max_size=40)),
    min_size=1,
    max_size=5,
)
batch_fields = st.fixed_dictionaries(
    {
        "compression": codecs,
        "producer_id": st.integers(-1, 2**63 - 1),
        "producer_epoch": st.integers(-1, 2**15 - 1),
        "base_sequence": st.integers(-1, 2**31 - 1),
        "is_transactional": st.booleans(),
        "timestamp_type": st.sampled_from([0, 1]),
        "base_offset": st.integers(0, 2**40),
        "partition_leader_epoch": st.integers(-1, 2**31 - 1),
    }
)

# Header fields a stamp must keep: all but batchLength, CRC and (a compressed
# batch's size) nothing else.
KEPT = (
    "base_offset",
    "partition_leader_epoch",
    "magic",
    "attributes",
    "last_offset_delta",
    "base_timestamp",
    "max_timestamp",
    "producer_id",
    "producer_epoch",
    "base_sequence",
    "record_count",
)


def _stamped(
    batch: bytes, stamp: list[tuple[str, bytes]], reserved: list[str]
) -> list[native.Record]:
    """The batch's records as a stamp should leave them."""
    return [
        r._replace(headers=tuple(h for h in r.headers if h[0] not in reserved) + tuple(stamp))
        for r in native.decode_records(batch)
    ]


@settings(max_examples=150, deadline=None)
@given(specs=records, stamp=stamps, reserved=reserved_names, fields=batch_fields)
def test_a_stamped_batch_holds_the_records_plus_the_stamp(
    specs: list[RecordSpec],
    stamp: list[tuple[str, bytes]],
    reserved: list[str],
    fields: dict[str, int],
) -> None:
    batch = native.encode_batch(specs, **fields)
    before = native.scan_batches(batch)[0]
    for impl in (_pure, *([C_IMPL] if C_IMPL is not None else [])):
        out = impl.stamp_batch(batch, stamp, reserved_names=reserved, max_size=2**31 - 1)
        # Framing and CRC hold; the header as stamped, not as a produce stores it.
        after = native.validate_batches(out, from_client=False)[0]
        assert after.size == len(out)
        for name in KEPT:
            assert getattr(after, name) == getattr(before, name), name
        assert native.decode_records(out) == _stamped(batch, stamp, reserved)


# Not needs_c: the batch is built and the stamped batches decoded by the live
# native/, the twin in the pure pass.
@pytest.mark.skipif(C_IMPL is None, reason="the C extension is not built")
@settings(max_examples=150, deadline=None)
@given(specs=records, stamp=stamps, reserved=reserved_names, fields=batch_fields)
def test_c_and_pure_stamp_alike(
    specs: list[RecordSpec],
    stamp: list[tuple[str, bytes]],
    reserved: list[str],
    fields: dict[str, int],
) -> None:
    batch = native.encode_batch(specs, **fields)
    c_out = c_impl().stamp_batch(batch, stamp, reserved_names=reserved, max_size=2**31 - 1)
    pure_out = _pure.stamp_batch(batch, stamp, reserved_names=reserved, max_size=2**31 - 1)
    if fields["compression"] == Compression.NONE:
        assert c_out == pure_out  # same bytes; codecs may differ run to run, records may not
    assert native.decode_records(c_out) == native.decode_records(pure_out)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=50, deadline=None)
@given(specs=records, stamp=stamps, codec=codecs, data=st.data())
def test_a_stamp_past_max_size_is_refused_with_its_size(
    impl: ModuleType,
    specs: list[RecordSpec],
    stamp: list[tuple[str, bytes]],
    codec: int,
    data: st.DataObject,
) -> None:
    batch = native.encode_batch(specs, compression=codec)
    size = len(impl.stamp_batch(batch, stamp, reserved_names=RESERVED, max_size=2**31 - 1))
    limit = data.draw(st.integers(0, size - 1))
    with pytest.raises(StampedBatchTooLarge) as refused:
        impl.stamp_batch(batch, stamp, reserved_names=RESERVED, max_size=limit)
    assert (refused.value.expected, refused.value.found) == (limit, size)
    assert refused.value.kafka_error == "MESSAGE_TOO_LARGE"
    assert impl.stamp_batch(batch, stamp, reserved_names=RESERVED, max_size=size)


def test_only_one_whole_batch_is_stamped(impl: ModuleType) -> None:
    batch = native.encode_batch([RecordSpec(1, b"k", b"v", ())])
    with pytest.raises(InvalidBatchLength) as refused:
        impl.stamp_batch(batch + batch, [], reserved_names=RESERVED, max_size=2**20)
    assert (refused.value.expected, refused.value.found) == (len(batch), 2 * len(batch))


def test_only_a_header_of_a_reserved_name_is_removed(impl: ModuleType) -> None:
    headers = (
        ("tidelog.correlation.id", b"refund-7"),
        ("tidelog.principal", b"forged"),
        ("tidelog.principal.x", b"a"),
        ("tidelog.principa", b"b"),
        ("tidelog", b"c"),
    )
    batch = native.encode_batch([RecordSpec(1, b"k", b"v", headers)])
    out = impl.stamp_batch(
        batch, [("tidelog.principal", b"User:alice")], reserved_names=RESERVED, max_size=2**20
    )
    assert native.decode_records(out)[0].headers == (
        ("tidelog.correlation.id", b"refund-7"),
        ("tidelog.principal.x", b"a"),
        ("tidelog.principa", b"b"),
        ("tidelog", b"c"),
        ("tidelog.principal", b"User:alice"),
    )


@pytest.mark.parametrize("names", ["tidelog.principal", [b"tidelog.principal"], [None], 7])
def test_reserved_names_other_than_strs_are_a_type_error(impl: ModuleType, names: object) -> None:
    batch = native.encode_batch([RecordSpec(1, b"k", b"v", ())])
    with pytest.raises(TypeError):
        impl.stamp_batch(batch, [], reserved_names=names, max_size=2**20)
