"""A checkpoint read back in one pass (s3stream/checkpoint_reading.py)
reads what decoding the whole body and then the state from it reads, and
refuses what it refuses; the entries' bytes it keeps are those the
current code packs for them (docs/design/0150, "Amended")."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.chain import RangeLinks
from s3stream.chain_hash import ChainHash
from s3stream.checkpoint_reading import read_checkpoint
from s3stream.errors import CorruptObject
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.manifest_records import HEADER_SIZE, decode_record, framed_record
from s3stream.manifest_state import ManifestState
from s3stream.objects import ObjectKind
from tests.s3stream.test_checkpoint_encoding import _step

KEY = "manifest/checkpoint/00000000000000000001"


def _state(data: st.DataObject) -> ManifestState:
    state = ManifestState()
    for _ in range(data.draw(st.integers(0, 20))):
        after = state.copy()
        for op in _step(state, data):
            after.apply(op)
        after.seq = state.seq + 1
        state = after
    return state


def _as_decoded_whole(data: bytes) -> ManifestState:
    """The state as the body decoded whole (``msgpack.unpackb``), then
    read, reads: damage refused as CorruptObject either way."""
    body = decode_record(KEY, data)
    try:
        return ManifestState.from_wire(body)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        raise CorruptObject(KEY, repr(error)) from error


def _same_value(packed: bytes, wire: object) -> bool:
    """Whether ``packed`` decodes to ``wire`` as packed by msgpack, types
    included (True is not 1, 1.0 is not 1)."""
    decoded = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    canonical = msgpack.unpackb(
        msgpack.packb(wire, use_bin_type=True), raw=False, strict_map_key=False
    )
    return _typed(decoded) == _typed(canonical)


def _typed(value: object) -> object:
    """``value`` with each scalar paired with its type, for a comparison
    that == alone would pass across bool, int and float."""
    if isinstance(value, list | tuple):
        return [_typed(item) for item in value]
    if isinstance(value, dict):
        return {_typed(key): _typed(item) for key, item in value.items()}
    return (type(value).__name__, value)


def _damaged(payload: bytes, data: st.DataObject) -> bytes:
    """The body with bytes flipped, cut or added (its framing made again,
    so the checksum holds and the walk meets the damage)."""
    damage = data.draw(st.sampled_from(["none", "flip", "cut", "extra"]))
    body = bytearray(payload)
    if damage == "flip" and body:
        for _ in range(data.draw(st.integers(1, 3))):
            position = data.draw(st.integers(0, len(body) - 1))
            body[position] = data.draw(st.integers(0, 255))
    elif damage == "cut":
        del body[data.draw(st.integers(0, max(len(body) - 1, 0))) :]
    elif damage == "extra":
        body += data.draw(st.binary(min_size=1, max_size=4))
    return bytes(body)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_checkpoint_read_in_one_pass_is_the_state_read_from_the_whole_body(
    data: st.DataObject,
) -> None:
    state = _state(data)
    payload = _damaged(msgpack.packb(state.to_wire(), use_bin_type=True), data)
    framed = framed_record(payload)
    try:
        expected = _as_decoded_whole(framed).to_wire()
    except CorruptObject:
        with pytest.raises(CorruptObject):
            read_checkpoint(KEY, framed, HEADER_SIZE, keep=True)
        return
    read, kept = read_checkpoint(KEY, framed, HEADER_SIZE, keep=True)
    assert read.to_wire() == expected
    assert kept is not None
    # Kept: each entry's bytes as read, which decode to what the current
    # code packs for it. A body may hold a value in a wider form than
    # msgpack's shortest (an int 0 as uint8: a flipped byte makes one);
    # such an entry is kept as read, equal in value, not repacked.
    for stream_id, packed in kept.streams.items():
        assert _same_value(packed, read.streams[stream_id].to_wire())
    for object_id, packed in kept.object_bytes.items():
        assert kept.object_metas[object_id] is read.objects[object_id]
        assert _same_value(packed, read.objects[object_id].to_wire())
    assert set(kept.streams) | kept.repack_streams == set(read.streams)
    assert set(kept.object_bytes) | kept.repack_objects == set(read.objects)


def test_a_body_that_is_no_map_is_refused_as_no_state() -> None:
    with pytest.raises(CorruptObject, match="undecodable manifest checkpoint"):
        read_checkpoint(KEY, framed_record(msgpack.packb([1, 2])), HEADER_SIZE, keep=True)


def test_a_body_with_bytes_after_it_is_refused_as_an_undecodable_record() -> None:
    payload = msgpack.packb(ManifestState().to_wire()) + b"\x00"
    with pytest.raises(CorruptObject, match="undecodable manifest record"):
        read_checkpoint(KEY, framed_record(payload), HEADER_SIZE, keep=False)


@pytest.mark.parametrize("name", ["streams", "objects"])
def test_a_list_named_again_with_a_value_that_is_no_list_is_refused_as_no_state(
    name: str,
) -> None:
    """A body whose checksum holds but which names its streams (or
    objects) twice, the last time with no list, is refused as a decode of
    the whole body refuses it (its last value wins, and is no state), not
    read from the list of the first."""
    state = ManifestState()
    state.apply(["create_stream", 1, 0])
    packer = msgpack.Packer(use_bin_type=True)
    wire = state.to_wire()
    payload = packer.pack_map_header(len(wire) + 1)
    for key, value in wire.items():
        payload += packer.pack(key) + packer.pack(value)
    payload += packer.pack(name) + packer.pack(7)
    framed = framed_record(payload)
    with pytest.raises(CorruptObject):
        _as_decoded_whole(framed)
    with pytest.raises(CorruptObject, match="undecodable manifest checkpoint"):
        read_checkpoint(KEY, framed, HEADER_SIZE, keep=True)


def _stream_1_in_object_1() -> ManifestState:
    """A state of stream 1 whose offsets 0 to 5 lie in object 1."""
    state = ManifestState()
    state.apply(["create_stream", 1, 0])
    links = RangeLinks(ChainHash.SHA256, bytes(32), bytes(range(32)))
    ranges = (RangeMeta(1, 0, 5, 10, links),)
    state.apply(
        ["add_object", ObjectMeta(1, "o/1", ObjectKind.STREAM_SET, 10, 0, ranges).to_wire()]
    )
    return state


def test_a_stream_whose_end_a_shared_range_raises_is_not_kept_as_read() -> None:
    """A stream whose end in the body lies below the end of a range it
    shares is read with its end raised to the range's: its bytes as read
    are then not its own, and the next checkpoint packs it again rather
    than write the lower end back."""
    state = _stream_1_in_object_1()
    state.apply(["create_stream", 2, 0])
    state.apply(["share_range", 2, 1, 0, 1])
    wire = state.to_wire()
    wire["streams"] = [[2, 0, 0, 0, 0] if s[0] == 2 else s for s in wire["streams"]]
    framed = framed_record(msgpack.packb(wire, use_bin_type=True))
    read, kept = read_checkpoint(KEY, framed, HEADER_SIZE, keep=True)
    assert read.streams[2].end_offset == 5
    assert kept is not None
    assert 2 not in kept.streams and 2 in kept.repack_streams
    assert 1 in kept.streams


@pytest.mark.parametrize("name", ["streams", "objects"])
def test_a_list_named_twice_is_read_as_its_last(name: str) -> None:
    """A body whose checksum holds but which names its streams (or
    objects) twice, each time with a list, is read as a decode of the
    whole body reads it (the last list), its entries' bytes kept from
    that list: not an error other than CorruptObject, which would fail
    the open rather than send it to the checkpoint before."""
    state = _stream_1_in_object_1()
    packer = msgpack.Packer(use_bin_type=True)
    wire = state.to_wire()
    payload = packer.pack_map_header(len(wire) + 1)
    payload += packer.pack(name) + packer.pack(wire[name] * 2)
    for key, value in wire.items():
        payload += packer.pack(key) + packer.pack(value)
    framed = framed_record(payload)
    assert _as_decoded_whole(framed).to_wire() == wire
    read, kept = read_checkpoint(KEY, framed, HEADER_SIZE, keep=True)
    assert read.to_wire() == wire
    assert kept is not None
    assert set(kept.streams) == {1} and set(kept.object_bytes) == {1}
    for object_id, packed in kept.object_bytes.items():
        assert packed == msgpack.packb(read.objects[object_id].to_wire(), use_bin_type=True)
