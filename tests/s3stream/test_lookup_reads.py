"""What a lookup reads of an object's data (s3stream/lookup.py): in a
format version 4 object each matching batch alone, one ranged GET of its
entry, and nothing else of the data; in a version 3 object the matching
batches' whole blocks; a ranged read whose bytes fail their CRC32C is read
again in its block, and damage to the stored batch is a CorruptObject."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.compaction import merge_objects
from s3stream.errors import CorruptObject
from s3stream.header_index import Indexer, key_hash, name_hash, parse_region, region_end
from s3stream.lookup import Candidates, committed_batches, header_candidates
from s3stream.manifest_state import ManifestState
from s3stream.objects import ENTRY_HEADER, StoredBatch, parse_object, read_chain
from s3stream.store import MemoryStore
from s3stream.uploader import ObjectIds, PreparedObject, add_ops, prepare_objects
from tests.s3stream.test_spec import doc_object

STREAM = 7
NAME = "h"
VALUES = [b"a", b"b", b"c", b"d"]
BLOCK_BYTES = 256


def _keys(batches: Sequence[StoredBatch]) -> list[tuple[int, int]]:
    return [(key_hash(NAME, bytes(b.payload[:1])), b.base_offset) for b in batches]


INDEXER = Indexer((name_hash(NAME),), _keys)


class RecordingStore(MemoryStore):
    """A memory store that notes every ranged GET, and can damage the
    response to chosen ranges (a fault the real store cannot make on cue)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[str, int, int | None]] = []
        self.damaged: set[tuple[str, int, int | None]] = set()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self.gets.append((key, start, end))
        data = super().get(key, start, end)
        if (key, start, end) in self.damaged:
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data


def _as_version_3(prepared: PreparedObject) -> PreparedObject:
    """The same object as a format version 3 writer laid it out (header
    index keys without spans), built by the document's rules."""
    data = b"".join(prepared.data)
    index, blocks = parse_object(prepared.meta.key, data)
    runs: list[tuple[int, list[StoredBatch]]] = []
    for info, batches in zip(index.blocks, blocks, strict=True):
        if (
            runs
            and runs[-1][0] == info.stream_id
            and runs[-1][1][-1].end_offset == (batches[0].base_offset)
        ):
            runs[-1][1].extend(batches)
        else:
            runs.append((info.stream_id, list(batches)))
    end = region_end(prepared.meta.key, data, len(data))
    assert end is not None
    region = [(k.stream_id, list(k.names), k.keys) for k in parse_region("x", data, end)]
    old = doc_object(
        int(index.kind),
        runs,
        BLOCK_BYTES,
        read_chain(prepared.meta.key, data),
        version=3,
        header_index=region,
    )
    return PreparedObject(prepared.meta._replace(size=len(old)), [old])


def _written(
    payloads: list[bytes], cuts: list[int], version: int
) -> tuple[RecordingStore, ManifestState]:
    bucket = RecordingStore()
    state = ManifestState()
    state.apply(["create_stream", STREAM, 0])
    ids = ObjectIds(1)
    batches = [StoredBatch(i, i + 1, p) for i, p in enumerate(payloads)]
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(batches)}), len(batches)]
    for begin, end in itertools.pairwise(bounds):
        objects = prepare_objects(
            [(STREAM, batches[begin:end])],
            state=state,
            epoch=1,
            ids=ids,
            now_ms=1,
            block_bytes=BLOCK_BYTES,
            stream_object_bytes=1 << 20,
            indexers={STREAM: INDEXER},
        )
        if version == 3:
            objects = [_as_version_3(o) for o in objects]
        for prepared in objects:
            bucket.put(prepared.meta.key, prepared.data)
        for op in add_ops(objects):
            state.apply(op)
    return bucket, state


def _lookup(
    bucket: RecordingStore, state: ManifestState, count: int, value: bytes
) -> tuple[Candidates, list[StoredBatch]]:
    """The candidates, then the batches read for them (``bucket.gets`` then
    holds the reads of the data alone)."""
    found = header_candidates(bucket, state, STREAM, 0, count, NAME, value)
    assert found.scans == []  # everything is indexed
    bucket.gets.clear()
    return found, list(committed_batches(bucket, state, STREAM, found))


payload_lists = st.lists(
    st.tuples(st.sampled_from(VALUES), st.integers(0, 120)).map(lambda p: p[0] * (1 + p[1])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(payload_lists, st.lists(st.integers(0, 40), max_size=4), st.sampled_from(VALUES))
def test_a_lookup_reads_only_the_matching_batches(
    payloads: list[bytes], cuts: list[int], value: bytes
) -> None:
    bucket, state = _written(payloads, cuts, version=4)
    _, batches = _lookup(bucket, state, len(payloads), value)
    holding = [o for o, p in enumerate(payloads) if p[:1] == value]
    assert [b.base_offset for b in batches] == holding
    assert [bytes(b.payload) for b in batches] == [payloads[o] for o in holding]
    # At most one GET per matching batch (matching batches that lie end to
    # end share one), of exactly their entries: the data read is the
    # matching batches' bytes and their 16-byte entry headers, no more.
    assert len(bucket.gets) <= len(holding)
    assert sum(e - s for _, s, e in bucket.gets if e is not None) == sum(
        ENTRY_HEADER.size + len(payloads[o]) for o in holding
    )
    runs = sum(1 for i, o in enumerate(holding) if i == 0 or holding[i - 1] != o - 1)
    assert len(bucket.gets) >= runs


@settings(max_examples=25, deadline=None)
@given(payload_lists, st.lists(st.integers(0, 40), max_size=4), st.sampled_from(VALUES))
def test_version_3_objects_are_answered_from_whole_blocks(
    payloads: list[bytes], cuts: list[int], value: bytes
) -> None:
    bucket, state = _written(payloads, cuts, version=3)
    found, batches = _lookup(bucket, state, len(payloads), value)
    holding = [o for o, p in enumerate(payloads) if p[:1] == value]
    assert found.spans == {}
    # Whole blocks: their other batches come too (the caller checks each
    # batch's records against the value).
    read = {b.base_offset: bytes(b.payload) for b in batches}
    assert [b.base_offset for b in batches] == sorted(read)
    assert {o: read.get(o) for o in holding} == {o: payloads[o] for o in holding}
    # Each GET is a block, at least the batch it was read for.
    assert len(bucket.gets) <= len(holding)
    assert sum(e - s for _, s, e in bucket.gets if e is not None) >= sum(
        ENTRY_HEADER.size + len(payloads[o]) for o in holding
    )


def test_a_damaged_ranged_read_is_read_again_in_its_block(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payloads = [v * 40 for v in VALUES * 8]
    bucket, state = _written(payloads, [10, 20], version=4)
    found = header_candidates(bucket, state, STREAM, 0, len(payloads), NAME, b"b")
    assert found.spans
    (object_id,) = {o for s, e, o in state.ranges[STREAM].entries if s <= found.offsets[0] < e}
    key = state.objects[object_id].key
    span = found.spans[found.offsets[0]]
    bucket.damaged.add((key, span.position, span.position + span.size))
    bucket.gets.clear()
    batches = list(committed_batches(bucket, state, STREAM, found))
    assert [bytes(b.payload) for b in batches] == [p for p in payloads if p[:1] == b"b"]
    # The damaged batch cost one more GET: its whole block, bigger than it.
    assert len(bucket.gets) == len(found.offsets) + 1
    retried = bucket.gets[1]
    assert retried[0] == key and retried[2] is not None
    assert retried[1] <= span.position and retried[2] >= span.position + span.size
    assert retried[2] - retried[1] > span.size
    assert f"offset {found.offsets[0]} of {key} failed its check" in caplog.text


def test_a_damaged_stored_batch_is_a_corrupt_object() -> None:
    payloads = [v * 40 for v in VALUES * 8]
    bucket, state = _written(payloads, [], version=4)
    found = header_candidates(bucket, state, STREAM, 0, len(payloads), NAME, b"c")
    (object_id,) = state.objects
    key = state.objects[object_id].key
    span = found.spans[found.offsets[1]] if found.spans else None
    assert span is not None
    data = bytearray(bucket.get(key))
    data[span.position + span.size - 1] ^= 0x01  # the payload's last byte
    bucket.put(key, bytes(data))
    with pytest.raises(CorruptObject, match="block checksum mismatch"):
        list(committed_batches(bucket, state, STREAM, found))


@settings(max_examples=15, deadline=None)
@given(payload_lists, st.lists(st.integers(0, 40), max_size=4), st.sampled_from(VALUES))
def test_a_merge_of_version_3_objects_lists_each_batch_alone(
    payloads: list[bytes], cuts: list[int], value: bytes
) -> None:
    bucket, state = _written(payloads, cuts, version=3)
    # Without the stream's indexer: the merge carries its inputs' keys and
    # locates their batches in the object it writes.
    merged = merge_objects(
        bucket,
        state,
        sorted(state.objects),
        ids=ObjectIds(100),
        now_ms=2,
        block_bytes=BLOCK_BYTES,
        stream_object_bytes=1 << 20,
        indexers={},
    )
    for prepared in merged:
        bucket.put(prepared.meta.key, prepared.data)
    for object_id in sorted(state.objects):
        state.apply(["remove_object", object_id, 0])
    for op in add_ops(merged):
        state.apply(op)
    found, batches = _lookup(bucket, state, len(payloads), value)
    holding = [o for o, p in enumerate(payloads) if p[:1] == value]
    assert sorted(found.spans or {}) == holding
    assert [bytes(b.payload) for b in batches] == [payloads[o] for o in holding]
    assert sum(e - s for _, s, e in bucket.gets if e is not None) == sum(
        ENTRY_HEADER.size + len(payloads[o]) for o in holding
    )


def test_batches_end_to_end_are_read_in_one_get() -> None:
    payloads = [b"a" * 40] * 3 + [b"b" * 40] * 5 + [b"a" * 40] * 2
    bucket, state = _written(payloads, [], version=4)
    _, batches = _lookup(bucket, state, len(payloads), b"a")
    assert [b.base_offset for b in batches] == [0, 1, 2, 8, 9]
    assert len({k for k, _, _ in bucket.gets}) == 1
    entry = ENTRY_HEADER.size + 40
    first, second = sorted((s, e) for _, s, e in bucket.gets if e is not None)
    assert (first[1] - first[0], second[1] - second[0]) == (3 * entry, 2 * entry)
    assert second[0] - first[1] == 5 * entry  # the "b" batches between, unread
