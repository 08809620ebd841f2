"""An open keeps the objects of the checkpoint it read as that checkpoint
packed them, so the first checkpoint after it packs only the objects new
since (and those whose ranges were written before the chain's algorithm
was stored), and writes the same bytes an encoder starting empty writes
(docs/design/0145)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import manifest_load
from s3stream.chain import RangeLinks
from s3stream.chain_hash import ChainHash
from s3stream.checkpoint_reading import KeptEntries, read_checkpoint
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_entries import ObjectMeta, RangeMeta, StreamMeta
from s3stream.manifest_load import load
from s3stream.manifest_records import (
    CHECKPOINT_PREFIX,
    checkpoint_key,
    decode_record,
    encode_record,
)
from s3stream.manifest_state import ManifestState
from s3stream.objects import ObjectKind
from s3stream.store import MemoryStore
from tests.s3stream.test_checkpoint_encoding import _step

EVERY = 8


@contextmanager
def packs_counted(
    monkeypatch: pytest.MonkeyPatch, kind: type[Any] = ObjectMeta, id_field: str = "object_id"
) -> Iterator[list[int]]:
    """The ids of the objects (or of another ``kind``'s entries) turned into
    wire lists while inside: what a checkpoint packs rather than reuses."""
    packed: list[int] = []
    to_wire = kind.to_wire

    def counted(meta: Any) -> list[Any]:
        packed.append(getattr(meta, id_field))
        return list(to_wire(meta))

    with monkeypatch.context() as patch:
        patch.setattr(kind, "to_wire", counted)
        yield packed


def _old_style(wire: dict[str, Any], object_ids: set[int]) -> dict[str, Any]:
    """The checkpoint body with the chosen objects' SHA-256 links written
    as versions before ``ChainHash`` wrote them: the links alone, no
    algorithm."""
    for obj in wire["objects"]:
        if obj[0] in object_ids:
            for r in obj[5]:
                if len(r) == 5 and r[4][-1] == int(ChainHash.SHA256):
                    r[4] = r[4][:-1]
    return wire


def _newest_checkpoint(store: MemoryStore) -> tuple[str, bytes]:
    key = store.list(CHECKPOINT_PREFIX)[-1].key
    return key, store.get(key)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_first_checkpoint_after_an_open_reuses_the_read_ones_bytes(
    data: st.DataObject,
) -> None:
    store = MemoryStore()
    writer = Manifest.open(store, checkpoint_every=EVERY)
    # Drawn once: a bound drawn again at each turn can end the loop past a
    # checkpoint, and the commits below then write the checkpoint the open
    # reads, with objects this test never saw packed.
    end = EVERY * data.draw(st.integers(1, 3))
    while writer.state.seq < end:
        writer.commit(_step(writer.state, data))
    read_key, read = _newest_checkpoint(store)
    assert read_key == checkpoint_key(end)
    state = ManifestState.from_wire(decode_record(read_key, read))
    old_ids = set(data.draw(st.lists(st.sampled_from(sorted(state.objects) or [0]), max_size=4)))
    # Rewritten as an older writer would have written it: an open reads it the same.
    body = _old_style(state.to_wire(), old_ids)
    store.put(read_key, encode_record(body))
    assert ManifestState.from_wire(body).to_wire() == state.to_wire()
    more = data.draw(st.integers(0, EVERY - 1))
    for _ in range(more):
        writer.commit(_step(writer.state, data))

    # Reused: the read checkpoint's objects whose bytes read back as written.
    reused = {
        obj[0]
        for obj in body["objects"]
        if ObjectMeta.from_wire(obj).to_wire() == obj and obj[0] in writer.state.objects
    }
    assert _newest_checkpoint(store)[0] == read_key  # the one the open reads
    with packs_counted(pytest.MonkeyPatch()) as packed:
        opener = Manifest.open(store, checkpoint_every=EVERY)
        while opener.state.seq % EVERY:
            opener.commit(_step(opener.state, data))
    key, written = _newest_checkpoint(store)
    assert key == checkpoint_key(opener.state.seq)
    # Byte for byte what an encoder starting empty writes.
    assert written == encode_record(opener.state.to_wire())
    assert ManifestState.from_wire(decode_record(key, written)).to_wire() == (
        opener.state.to_wire()
    )
    # Packed: every object but those reused (the commits' own new objects
    # are counted as their operations are made, and may be gone since).
    reused &= set(opener.state.objects)
    assert not reused & set(packed)
    assert set(opener.state.objects) - reused <= set(packed)


_LINKS = RangeLinks(ChainHash.SHA256, bytes(32), bytes(range(32)))


def _checkpointed(store: MemoryStore, objects: int) -> None:
    """``objects`` streams of an object each, then commits up to a checkpoint."""
    writer = Manifest.open(store, checkpoint_every=EVERY)
    writer.commit([["create_stream", s, 0] for s in range(1, objects + 1)])
    ops = [
        [
            "add_object",
            ObjectMeta(
                oid, f"o/{oid}", ObjectKind.STREAM_SET, 10, 0, (RangeMeta(oid, 0, 5, 10, _LINKS),)
            ).to_wire(),
        ]
        for oid in range(1, objects + 1)
    ]
    writer.commit(ops)
    while writer.state.seq % EVERY:
        writer.commit([["trim", 1, 0]])


def test_an_open_of_a_large_checkpoint_packs_only_the_new_objects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    _checkpointed(store, 50)
    with packs_counted(monkeypatch) as packed:
        opener = Manifest.open(store, checkpoint_every=EVERY)
        new = ObjectMeta(
            51, "o/51", ObjectKind.STREAM_SET, 10, 0, (RangeMeta(1, 5, 9, 10, _LINKS),)
        )
        opener.commit([["add_object", new.to_wire()]])
        packed.clear()  # the commit's own delta
        while opener.state.seq % EVERY:
            opener.commit([["trim", 2, 0]])
    assert packed == [51]
    _, written = _newest_checkpoint(store)
    assert written == encode_record(opener.state.to_wire())


def test_a_load_only_to_read_does_not_keep_the_checkpoints_packed_entries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI and reads from outside the writer load the whole manifest
    for each question; the checkpoint's packed entries serve only a
    writer's next checkpoint, so they neither copy them nor hold them."""
    store = MemoryStore()
    _checkpointed(store, 50)
    kept: list[int] = []
    read = read_checkpoint

    def counted(
        key: str, data: bytes, start: int, *, keep: bool
    ) -> tuple[ManifestState, KeptEntries | None]:
        state, entries = read(key, data, start, keep=keep)
        if entries is not None:
            kept.append(len(entries.object_bytes))
        return state, entries

    monkeypatch.setattr(manifest_load, "read_checkpoint", counted)
    assert len(load_state(store).objects) == 50
    assert load(store).kept is None
    assert kept == []
    entries = load(store, keep_packed=True).kept
    assert entries is not None and len(entries.object_bytes) == 50
    assert len(entries.streams) == 50
    Manifest.open(store, checkpoint_every=EVERY)
    assert kept == [50, 50]


_link = st.binary(min_size=32, max_size=32)
_links = st.one_of(
    st.tuples(_link, _link).map(list),  # before ChainHash: SHA-256, no algorithm
    st.tuples(_link, _link, _link, _link).map(list),
    st.tuples(_link, _link, st.sampled_from([int(h) for h in ChainHash])).map(list),
    st.tuples(_link, _link, _link, _link, st.sampled_from([int(h) for h in ChainHash])).map(list),
)
_range = st.one_of(
    st.tuples(*[st.integers(0, 2**40)] * 4).map(list),
    st.tuples(*[st.integers(0, 2**40)] * 4, _links).map(list),
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 2**40),
    st.text(max_size=20),
    st.sampled_from([int(k) for k in ObjectKind]),
    st.lists(_range, max_size=4),
)
def test_an_object_is_current_exactly_when_it_reads_back_to_its_own_bytes(
    object_id: int, key: str, kind: int, ranges: list[list[Any]]
) -> None:
    wire = [object_id, key, kind, 100, 7, ranges]
    packed = msgpack.packb(wire, use_bin_type=True)
    again = msgpack.packb(ObjectMeta.from_wire(wire).to_wire(), use_bin_type=True)
    assert ObjectMeta.wire_is_current(wire) == (packed == again)


def _stream_step(state: ManifestState, data: st.DataObject) -> list[Any]:
    """One commit changing one stream drawn from ``state``'s: its epoch
    raised, a trim, an object of its range, or its deletion; or a new one,
    made as a fork sharing a range of another; or one object's range
    dropped from its stream, or an object removed."""
    kind = data.draw(
        st.sampled_from(["epoch", "trim", "add", "delete", "create", "fork", "drop", "remove"])
    )
    held = [
        (stream_id, start, object_id)
        for stream_id, ranges in state.ranges.items()
        for start, _, object_id in ranges.entries
    ]
    if kind == "fork" and held:
        source, start, object_id = data.draw(st.sampled_from(held))
        if (start, object_id) not in state.shares.get(source, {}):
            fork = state.next_stream_id
            return [["create_stream", fork, 0], ["share_range", fork, source, start, object_id]]
    if kind == "drop" and held:
        return [["drop_range", *data.draw(st.sampled_from(held))]]
    unshared = sorted(set(state.objects) - {o for _, _, o in held if state.sharers(o)})
    if kind == "remove" and unshared:
        return [["remove_object", data.draw(st.sampled_from(unshared)), 0]]
    if kind in ("create", "fork", "drop", "remove") or not state.streams:
        return [["create_stream", state.next_stream_id, data.draw(st.integers(0, 10**12))]]
    stream_id = data.draw(st.sampled_from(sorted(state.streams)))
    stream = state.streams[stream_id]
    if kind == "epoch":
        return [["open_stream", stream_id, stream.epoch + data.draw(st.integers(0, 3))]]
    if kind == "trim":
        return [["trim", stream_id, data.draw(st.integers(0, stream.end_offset + 5))]]
    if kind == "delete":
        return [["delete_stream", stream_id]]
    meta = ObjectMeta(
        state.next_object_id,
        f"o/{state.next_object_id}",
        ObjectKind.STREAM_SET,
        10,
        0,
        (RangeMeta(stream_id, stream.end_offset, stream.end_offset + 5, 10, _LINKS),),
    )
    return [["add_object", meta.to_wire()]]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_the_first_checkpoint_after_an_open_repacks_only_the_streams_changed_since_the_read_one(
    data: st.DataObject,
) -> None:
    """The open keeps each stream's bytes as the checkpoint it read holds
    them: the first checkpoint after it packs only the streams the deltas
    after that checkpoint and the commits after the open changed, and is
    the bytes of the state packed afresh (so it reads back to that state)."""
    store = MemoryStore()
    writer = Manifest.open(store, checkpoint_every=EVERY)
    writer.commit([["create_stream", s, 0] for s in range(1, data.draw(st.integers(1, 30)))])
    while writer.state.seq % EVERY:
        writer.commit(_stream_step(writer.state, data))
    read = {stream_id: meta.to_wire() for stream_id, meta in writer.state.streams.items()}
    # A stream sharing a range is read with its end raised to the range's,
    # so its bytes are not kept (checkpoint_reading.py): packed again.
    changed: set[int] = set(writer.state.shares)
    for _ in range(data.draw(st.integers(0, EVERY - 2))):  # replayed by the open
        ops = _stream_step(writer.state, data)
        changed |= _streams_of(writer.state, ops)
        writer.commit(ops)
    with packs_counted(pytest.MonkeyPatch(), StreamMeta, "stream_id") as packed:
        opener = Manifest.open(store, checkpoint_every=EVERY)
        while opener.state.seq % EVERY:
            ops = _stream_step(opener.state, data)
            changed |= _streams_of(opener.state, ops)
            opener.commit(ops)
    key, written = _newest_checkpoint(store)
    assert key == checkpoint_key(opener.state.seq)
    assert written == encode_record(opener.state.to_wire())
    again = ManifestState.from_wire(decode_record(key, written))
    assert again.to_wire() == opener.state.to_wire()
    # Packed: streams that operations since the checkpoint read touched,
    # among them every one that differs from it (or is new), and no other.
    assert set(packed) <= changed
    differ = {s for s, meta in opener.state.streams.items() if read.get(s) != meta.to_wire()}
    assert differ <= set(packed)


def _streams_of(state: ManifestState, ops: list[Any]) -> set[int]:
    """The streams a commit's operations on ``state`` change."""
    streams: set[int] = set()
    for op in ops:
        if op[0] == "add_object":
            streams |= {r[0] for r in op[1][5]}
        elif op[0] == "remove_object":
            streams |= {r.stream_id for r in state.objects[op[1]].ranges}
        else:
            streams.add(op[1])
    return streams
