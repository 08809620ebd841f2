"""A checkpoint packed with the objects' bytes kept from the checkpoint
before it is the same bytes as the whole state packed afresh (the format
of docs/object-format.md, unchanged), reads back to the same state, and
keeps the bytes of the current objects only."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.chain import RangeLinks
from s3stream.chain_hash import ChainHash
from s3stream.checkpoint_encoding import CheckpointEncoder
from s3stream.manifest import Manifest
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.manifest_records import CHECKPOINT_PREFIX, decode_record, encode_record
from s3stream.manifest_state import ManifestState, Op
from s3stream.objects import ObjectKind
from s3stream.store import MemoryStore


def _packed_afresh(state: ManifestState) -> bytes:
    """The checkpoint's body as every version before 0140 packed it."""
    payload: bytes = msgpack.packb(state.to_wire(), use_bin_type=True)
    return payload


def _object_op(state: ManifestState, streams: list[int], linked: bool, size: int) -> Op:
    object_id = state.next_object_id
    ranges = []
    for stream_id in streams:
        end = state.streams[stream_id].end_offset
        links = RangeLinks(ChainHash.SHA256, bytes(32), bytes([object_id % 256]) * 32)
        ranges.append(RangeMeta(stream_id, end, end + size, 100, links if linked else None))
    meta = ObjectMeta(
        object_id,
        f"objects/{object_id}",
        ObjectKind.STREAM_SET,
        100 * len(ranges),
        7,
        tuple(ranges),
    )
    return ["add_object", meta.to_wire()]


def _step(state: ManifestState, data: st.DataObject) -> list[Op]:
    """One commit's operations, drawn to apply to ``state``."""
    kind = data.draw(st.sampled_from(["create", "add", "remove", "trim", "delete"]))
    if kind == "create" or not state.streams:
        return [["create_stream", state.next_stream_id, data.draw(st.integers(0, 10**12))]]
    streams = sorted(state.streams)
    if kind == "add":
        chosen = data.draw(st.lists(st.sampled_from(streams), min_size=1, max_size=4, unique=True))
        return [
            _object_op(
                state, sorted(chosen), data.draw(st.booleans()), data.draw(st.integers(1, 50))
            )
        ]
    if kind == "remove" and state.objects:
        object_id = data.draw(st.sampled_from(sorted(state.objects)))
        return [["remove_object", object_id, data.draw(st.integers(0, 10**12))]]
    stream_id = data.draw(st.sampled_from(streams))
    if kind == "delete":
        return [["delete_stream", stream_id]]
    return [["trim", stream_id, data.draw(st.integers(0, state.streams[stream_id].end_offset))]]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_kept_bytes_make_the_same_checkpoint_as_packing_afresh(data: st.DataObject) -> None:
    encoder = CheckpointEncoder()
    state = ManifestState()
    for _ in range(data.draw(st.integers(1, 12))):
        for _ in range(data.draw(st.integers(1, 4))):
            after = state.copy()
            for op in _step(state, data):
                after.apply(op)
            after.seq = state.seq + 1
            state = after
        body = encoder.encode(state)
        assert body == _packed_afresh(state)
        again = ManifestState.from_wire(msgpack.unpackb(body, raw=False, strict_map_key=False))
        assert again.to_wire() == state.to_wire()
        assert encoder.kept_objects == len(state.objects)


def test_an_object_of_other_metadata_under_a_kept_id_is_packed_again() -> None:
    encoder = CheckpointEncoder()
    state = ManifestState()
    state.apply(["create_stream", 1, 0])
    state.apply(_object_op(state, [1], True, 10))
    encoder.encode(state)
    changed = state.copy()
    old = changed.objects[1]
    changed.objects = changed.objects.set(
        1, ObjectMeta(old.object_id, "objects/other", old.kind, 5, 9, old.ranges)
    )
    assert encoder.encode(changed) == _packed_afresh(changed)


def test_a_checkpoint_written_before_0140_and_one_written_now_open_the_same() -> None:
    """The manifest's checkpoints are the bytes the previous encoding made,
    so a checkpoint from either opens the same state."""
    store = MemoryStore()
    manifest = Manifest.open(store, checkpoint_every=4)
    manifest.commit([["create_stream", 1, 0], ["create_stream", 2, 0]])
    manifest.commit([_object_op(manifest.state, [1, 2], True, 10)])
    manifest.commit([_object_op(manifest.state, [2], False, 3)])  # version 4: a checkpoint
    manifest.commit([["trim", 1, 5]])
    manifest.commit([_object_op(manifest.state, [1], True, 10), ["remove_object", 2, 11]])
    manifest.commit([["trim", 2, 1]])
    manifest.commit([_object_op(manifest.state, [1, 2], True, 4)])  # version 8: kept bytes
    for info in store.list(CHECKPOINT_PREFIX):
        data = store.get(info.key)
        state = ManifestState.from_wire(decode_record(info.key, data))
        assert data == encode_record(state.to_wire())
    reopened = Manifest.open(store)
    assert {
        k: v
        for k, v in reopened.state.to_wire().items()
        if k not in ("seq", "epoch", "fence_versions", "owner_since")
    } == {
        k: v
        for k, v in manifest.state.to_wire().items()
        if k not in ("seq", "epoch", "fence_versions", "owner_since")
    }
