"""The manifest's entries out of the collector's way (docs/design/0158): an
object (``ObjectMeta``), its tuple of ranges, a range (``RangeMeta``), its
chain links (``RangeLinks``) and a rewrite's old links (``Rewrite``) are
built untracked with the C extension, however the manifest came by them:
an open reading a checkpoint and the deltas after it, an upload's commit,
a merge or split by compaction, a log cleaner's rewrite. With the pure
twin they are tracked (only the collector's cost differs): the values are
checked on both."""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import native
from s3stream import StreamStore
from s3stream.chain import RangeLinks, Rewrite
from s3stream.chain_hash import LINK_BYTES, ChainHash
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.manifest_state import ManifestState
from s3stream.objects import ObjectKind, StoredBatch
from s3stream.store import MemoryStore
from tests.s3stream.test_compaction import bucket, uploads
from tests.s3stream.test_forks import open_fork
from tests.s3stream.test_replace_range import CONFIG as REPLACE_CONFIG
from tests.s3stream.test_stream_store import expected, new_stream, read_all

C = native.IMPLEMENTATION == "c"
__all__ = ["bucket"]  # the fixture, from test_compaction

# Uploads write stream-set objects; opens read a checkpoint and deltas after it.
CONFIG = dataclasses.replace(REPLACE_CONFIG, checkpoint_every=4)


def tracked_entries(state: ManifestState) -> list[object]:
    """Every object, tuple of ranges, range, links and rewrite of the
    state's that the collector tracks, after a collection."""
    gc.collect()
    found: list[object] = []
    for meta in state.objects.values():
        found += [meta] if gc.is_tracked(meta) else []
        found += [meta.ranges] if gc.is_tracked(meta.ranges) else []
        for r in meta.ranges:
            found += [r] if gc.is_tracked(r) else []
            links = r.links
            if links is not None:
                found += [links] if gc.is_tracked(links) else []
                if links.rewrite is not None and gc.is_tracked(links.rewrite):
                    found.append(links.rewrite)
    return found


def ranges_of(state: ManifestState) -> int:
    return sum(len(meta.ranges) for meta in state.objects.values())


@pytest.fixture
def store(tmp_path: Path, bucket: MemoryStore) -> Iterator[StreamStore]:
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as opened:
        yield opened


def test_an_uploads_committed_ranges_are_untracked(store: StreamStore) -> None:
    streams = [new_stream(store) for _ in range(3)]
    uploads(store, streams, rounds=3)
    state = store.manifest.state
    assert ranges_of(state) == 9
    assert all(r.links is not None for m in state.objects.values() for r in m.ranges)
    assert (tracked_entries(state) == []) is C


def test_an_opens_ranges_are_untracked(tmp_path: Path, bucket: MemoryStore) -> None:
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as first:
        streams = [new_stream(first) for _ in range(3)]
        uploads(first, streams, rounds=6)  # a checkpoint, then deltas after it
        written = {oid: m.to_wire() for oid, m in first.manifest.state.objects.items()}
    with StreamStore.open(tmp_path / "other", bucket, CONFIG) as second:
        state = second.manifest.state
        assert {oid: m.to_wire() for oid, m in state.objects.items()} == written
        assert ranges_of(state) == 18
        assert (tracked_entries(state) == []) is C
        for stream in streams:
            assert read_all(second, stream) == expected(stream, 0, 12)


def test_compactions_merged_and_split_ranges_are_untracked(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    config = dataclasses.replace(CONFIG, force_split_after_s=0, stream_object_bytes=8 * 1024)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        streams = [new_stream(store) for _ in range(3)]
        uploads(store, streams, rounds=8)
        store.compact()
        state = store.manifest.state
        assert {m.kind for m in state.objects.values()} == {ObjectKind.STREAM}
        assert ranges_of(state) == 3
        assert (tracked_entries(state) == []) is C
        for stream in streams:
            assert read_all(store, stream) == expected(stream, 0, 16)


def test_a_cleaners_rewritten_ranges_and_their_old_links_are_untracked(
    store: StreamStore,
) -> None:
    stream = new_stream(store)
    uploads(store, [stream], rounds=3, count=4)  # [0, 36) in three objects
    store.replace_range(stream, 12, 24, [StoredBatch(15, 18, b"clean")])
    state = store.manifest.state
    rewritten = [
        r
        for m in state.objects.values()
        for r in m.ranges
        if r.links is not None and r.links.rewrite is not None
    ]
    assert len(rewritten) == 1 and rewritten[0].links is not None
    assert rewritten[0].links.algorithm is ChainHash.BLAKE3
    assert (tracked_entries(state) == []) is C


def test_a_forks_copied_range_is_untracked(store: StreamStore) -> None:
    source = new_stream(store)
    uploads(store, [source], rounds=2, count=4)  # [0, 12) and [12, 24)
    fork = open_fork(store, source, at=18)  # [12, 18) copied into an object of the fork's
    state = store.manifest.state
    copied = [r for m in state.objects.values() for r in m.ranges if r.stream_id == fork]
    assert [(r.start_offset, r.end_offset) for r in copied] == [(12, 18)]
    assert copied[0].links is not None
    assert (tracked_entries(state) == []) is C
    assert read_all(store, fork) == expected(source, 0, 6)


links_strategy = st.builds(
    RangeLinks,
    st.sampled_from(ChainHash),
    st.binary(min_size=LINK_BYTES, max_size=LINK_BYTES),
    st.binary(min_size=LINK_BYTES, max_size=LINK_BYTES),
    st.none()
    | st.builds(
        Rewrite,
        st.binary(min_size=LINK_BYTES, max_size=LINK_BYTES),
        st.binary(min_size=LINK_BYTES, max_size=LINK_BYTES),
    ),
)
ints = st.integers(min_value=0, max_value=2**62)


@given(
    st.lists(st.tuples(ints, ints, ints, ints, st.none() | links_strategy), max_size=8),
    st.sampled_from(ObjectKind),
)
def test_entries_read_back_as_written_with_their_kinds_and_algorithms(
    fields: list[tuple[int, int, int, int, RangeLinks | None]], kind: ObjectKind
) -> None:
    ranges = tuple(RangeMeta(*f) for f in fields)
    meta = ObjectMeta(7, "o/7", kind, 4096, 0, ranges)
    read = ObjectMeta.from_wire(meta.to_wire())
    assert read == meta and read.to_wire() == meta.to_wire()
    assert read.kind is kind and type(read.kind_id) is int
    assert gc.is_tracked(read) is not C
    for r, f in zip(read.ranges, fields, strict=True):
        assert (r.stream_id, r.start_offset, r.end_offset, r.size) == f[:4]
        assert type(r.links) is type(f[4]) and r.links == f[4]
        if r.links is not None:
            assert r.links.algorithm is f[4].algorithm  # type: ignore[union-attr]
            assert type(r.links.algorithm_id) is int
        assert gc.is_tracked(r) is not C


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 50), st.none() | links_strategy),
        min_size=2,
        max_size=8,
        unique_by=lambda f: f[:2],
    ),
)
def test_replace_copy_and_pickle_give_entries_as_their_constructor_does(
    fields: list[tuple[int, int, RangeLinks | None]],
) -> None:
    """``_replace`` (through ``_make``), ``copy`` and ``pickle`` make an
    entry as its constructor does: untracked with the C extension, and an
    object given other ranges finds whether they are in order again, or
    ``range_at``'s binary search would miss a range of an object whose new
    ranges are out of order."""
    ordered = tuple(RangeMeta(s, at, at + 10, 100, links) for s, at, links in sorted(fields))
    meta = ObjectMeta(7, "o/7", ObjectKind.STREAM_SET, 4096, 0, ordered)
    assert meta.in_order
    shuffled = meta._replace(ranges=ordered[::-1])
    assert shuffled == ObjectMeta(7, "o/7", ObjectKind.STREAM_SET, 4096, 0, ordered[::-1])
    assert not shuffled.in_order
    for r in ordered:
        assert shuffled.range_at(r.stream_id, r.start_offset) is r
    entries: list[tuple[object, ...]] = [meta, shuffled, *ordered]
    entries += [r.links for r in ordered if r.links is not None]
    for entry in entries:
        for made in (copy.copy(entry), copy.deepcopy(entry), pickle.loads(pickle.dumps(entry))):
            assert made == entry and type(made) is type(entry)
            assert gc.is_tracked(made) is not C
        replaced = entry._replace()  # type: ignore[attr-defined]
        assert replaced == entry and gc.is_tracked(replaced) is not C
