"""The header index region through uploads and merges (s3stream/header_index.py,
s3stream/lookup.py): for any split into uploads, some indexed and some not,
and any merge with or without the stream's indexer, the candidates list
only batches holding the value, and every batch holding it is listed or
inside a stretch to scan; fully indexed data needs no scan."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.compaction import merge_objects
from s3stream.header_index import Indexer, Unindexable, key_hash, name_hash
from s3stream.lookup import header_candidates
from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch
from s3stream.store import MemoryStore
from s3stream.uploader import ObjectIds, add_ops, prepare_objects

STREAM = 7
OTHER = 8
NAME = "h"
VALUES = [b"a", b"b", b"c"]
UNREADABLE = b"!"
"""A payload the indexer cannot read: the object must then cover nothing."""


def _keys(batches: Sequence[StoredBatch]) -> list[tuple[int, int]]:
    if any(bytes(b.payload) == UNREADABLE for b in batches):
        raise Unindexable("a batch that does not decode")
    return [(key_hash(NAME, bytes(b.payload)), b.base_offset) for b in batches]


INDEXER = Indexer((name_hash(NAME),), _keys)


def _upload(
    bucket: MemoryStore,
    state: ManifestState,
    ids: ObjectIds,
    batches: list[StoredBatch],
    indexed: bool,
) -> None:
    neighbour = [
        StoredBatch(state.streams[OTHER].end_offset, state.streams[OTHER].end_offset + 1, b"a")
    ]
    objects = prepare_objects(
        [(STREAM, batches), (OTHER, neighbour)],
        state=state,
        epoch=1,
        ids=ids,
        now_ms=1,
        block_bytes=64,
        stream_object_bytes=1 << 20,
        indexers={STREAM: INDEXER, OTHER: INDEXER} if indexed else {},
    )
    for prepared in objects:
        bucket.put(prepared.meta.key, prepared.data)
    for op in add_ops(objects):
        state.apply(op)


def _check(bucket: MemoryStore, state: ManifestState, payloads: list[bytes]) -> list[object]:
    all_scans: list[object] = []
    for value in VALUES:
        found = header_candidates(bucket, state, STREAM, 0, len(payloads), NAME, value)
        holding = {o for o, p in enumerate(payloads) if p == value}
        assert set(found.offsets) <= holding
        scanned = {o for start, end in found.scans for o in range(start, end)}
        assert holding <= set(found.offsets) | scanned
        all_scans += found.scans
    return all_scans


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([*VALUES, UNREADABLE]), min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=5),
    st.booleans(),
    st.booleans(),
)
def test_candidates_hold_every_batch_with_the_value_and_no_other(
    payloads: list[bytes],
    cuts: list[tuple[int, bool]],
    first_indexed: bool,
    merge_indexed: bool,
) -> None:
    bucket = MemoryStore()
    state = ManifestState()
    state.apply(["create_stream", STREAM, 0])
    state.apply(["create_stream", OTHER, 0])
    ids = ObjectIds(1)
    batches = [StoredBatch(i, i + 1, p) for i, p in enumerate(payloads)]
    flags = dict(cuts)
    bounds = [0, *sorted({c for c, _ in cuts if 0 < c < len(batches)}), len(batches)]
    for begin, end in itertools.pairwise(bounds):
        _upload(bucket, state, ids, batches[begin:end], flags.get(begin, first_indexed))
    scans = _check(bucket, state, payloads)
    all_indexed = all(flags.get(b, first_indexed) for b in bounds[:-1])
    if all_indexed and UNREADABLE not in payloads:
        assert scans == []
    # A merge of everything, with the stream's indexer or carrying the
    # inputs' entries: the same answers; it covers what all inputs covered.
    merged = merge_objects(
        bucket,
        state,
        sorted(state.objects),
        ids=ids,
        now_ms=2,
        block_bytes=64,
        stream_object_bytes=1 << 20,
        indexers={STREAM: INDEXER} if merge_indexed else {},
    )
    for prepared in merged:
        bucket.put(prepared.meta.key, prepared.data)
    for object_id in sorted(state.objects):
        state.apply(["remove_object", object_id, 0])
    for op in add_ops(merged):
        state.apply(op)
    scans = _check(bucket, state, payloads)
    if UNREADABLE not in payloads and (merge_indexed or all_indexed):
        assert scans == []
