"""replace_range: a log cleaner rewrites an uploaded range of one stream.

The replacement holds the same offsets with some batches removed (gaps); it
must read back exactly, leave other streams alone, survive restarts and
checkpoints, turn the old objects into garbage, never come undone by
compaction, and refuse to commit over ranges that changed meanwhile."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest

from native.buffers import BytesLike
from s3stream import (
    OffsetOutOfRange,
    RangeChanged,
    StoredBatch,
    StreamNotFound,
    StreamStore,
    StreamStoreConfig,
)
from s3stream.compaction import dead_objects, inputs_unchanged, merge_objects
from s3stream.manifest import load_state
from s3stream.manifest_records import CHECKPOINT_PREFIX, encode_record
from s3stream.manifest_state import InvalidOperation, ManifestState
from s3stream.objects import ObjectKind
from s3stream.store import MemoryStore, ObjectStore
from s3stream.uploader import OBJECT_PREFIX, ObjectIds, prepare_objects
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_stream_store import expected, fill, new_stream

CONFIG = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    small_object_bytes=64 * 1024,
    stream_object_bytes=64 * 1024,  # uploads write stream-set objects
    block_bytes=512,
    garbage_grace_s=0,
    log_cache_bytes=0,  # every read after upload goes to objects
)
STREAM_OBJECTS = dataclasses.replace(CONFIG, stream_object_bytes=1)  # one per stream and upload

Batch = tuple[int, int, bytes]


class HookedStore(FaultyStore):
    """Runs ``after_put`` once, after the next put of a key it accepts: a
    moment between an object's upload and its commit."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.after_put: tuple[Callable[[str], bool], Callable[[], None]] | None = None

    def put(self, key: str, data: BytesLike) -> str:
        version = super().put(key, data)
        if self.after_put is not None and self.after_put[0](key):
            hook, self.after_put = self.after_put[1], None
            hook()
        return version


@pytest.fixture
def bucket() -> HookedStore:
    return HookedStore(MemoryStore())


@pytest.fixture
def store(tmp_path: Path, bucket: HookedStore) -> Iterator[StreamStore]:
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as opened:
        yield opened


def read_stream(store: StreamStore, stream_id: int, max_bytes: int = 4096) -> list[Batch]:
    """Every batch from the start to the end, as a consumer reads: each fetch
    goes on from the last one's next offset, which must always move on."""
    out: list[Batch] = []
    offset = store.start_offset(stream_id)
    while offset < store.end_offset(stream_id):
        result = store.fetch(stream_id, offset, max_bytes)
        out += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        assert result.next_offset > offset, f"stuck at {offset}"
        offset = result.next_offset
    return out


def cleaned(batch: Batch) -> StoredBatch:
    """A rewritten batch: same offsets, new bytes (so old bytes are told apart)."""
    return StoredBatch(batch[0], batch[1], b"clean:" + batch[2][:20])


def as_tuples(batches: list[StoredBatch]) -> list[Batch]:
    return [(b.base_offset, b.end_offset, bytes(b.payload)) for b in batches]


def replace_keeping(
    store: StreamStore, stream_id: int, start: int, end: int, keep: Callable[[Batch], bool]
) -> list[Batch]:
    """Replaces ``[start, end)`` with the batches ``keep`` selects, cleaned;
    returns what the whole stream must read as afterwards."""
    before = read_stream(store, stream_id)
    new = [cleaned(b) for b in before if start <= b[0] < end and keep(b)]
    store.replace_range(stream_id, start, end, new)
    return sorted(
        [b for b in before if not start <= b[0] < end] + as_tuples(new), key=lambda b: b[0]
    )


def object_keys(bucket: ObjectStore) -> set[str]:
    return {info.key for info in bucket.list(OBJECT_PREFIX)}


def odd_batches(batch: Batch) -> bool:
    return (batch[0] // 3) % 2 == 1


def uploads(store: StreamStore, streams: list[int], rounds: int, count: int = 4) -> None:
    for _ in range(rounds):
        for stream in streams:
            fill(store, stream, count)
        assert store.flush(timeout=30)


def assert_ranges_tile(store: StreamStore, stream_id: int) -> None:
    """The stream's committed ranges follow on from each other: no overlap
    (nothing replaced came back) and no hole."""
    ranges = store.committed_ranges(stream_id)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), ranges


# -- replacing and reading ---------------------------------------------------


def test_replace_inside_a_shared_stream_set_object(store: StreamStore) -> None:
    a, b = new_stream(store), new_stream(store)
    uploads(store, [a, b], rounds=3)  # three stream-set objects holding both streams
    assert store.committed_ranges(a) == [(0, 12), (12, 24), (24, 36)]
    shared = store.manifest.state.ranges[a].find(12)
    assert shared is not None
    want = replace_keeping(store, a, 12, 24, odd_batches)
    assert read_stream(store, a) == want
    assert [x[0] for x in want] == [0, 3, 6, 9, 15, 21, 24, 27, 30, 33]  # 12 and 18 are gone
    assert read_stream(store, b) == expected(b, 0, 12)  # the other stream: untouched
    state = store.manifest.state
    assert shared[2] in state.objects  # still b's data
    assert state.dropped == {(a, 12, shared[2])}
    assert store.committed_ranges(a) == [(0, 12), (12, 24), (24, 36)]
    new_object = state.objects[state.ranges[a].entries[1][2]]
    assert new_object.kind is ObjectKind.STREAM
    assert [(r.stream_id, r.start_offset, r.end_offset) for r in new_object.ranges] == [(a, 12, 24)]
    assert store.remote_end_offset(a) == store.end_offset(a) == 36


def test_replace_across_stream_objects(tmp_path: Path, bucket: HookedStore) -> None:
    with StreamStore.open(tmp_path / "node", bucket, STREAM_OBJECTS) as store:
        stream, other = new_stream(store), new_stream(store)
        uploads(store, [stream, other], rounds=4)
        kinds = {meta.kind for meta in store.manifest.state.objects.values()}
        assert kinds == {ObjectKind.STREAM}
        old = {oid for s, _, oid in store.manifest.state.ranges[stream].entries if s in (12, 24)}
        want = replace_keeping(store, stream, 12, 36, odd_batches)
        assert store.committed_ranges(stream) == [(0, 12), (12, 36), (36, 48)]
        assert read_stream(store, stream) == want
        assert read_stream(store, other) == expected(other, 0, 16)
        assert set(dead_objects(store.manifest.state)) == old


@pytest.mark.parametrize("readahead_bytes", [0, 64 * 1024 * 1024], ids=["plain", "readahead"])
def test_a_read_in_a_gap_returns_the_next_batch(
    tmp_path: Path, bucket: HookedStore, readahead_bytes: int
) -> None:
    config = dataclasses.replace(STREAM_OBJECTS, readahead_bytes=readahead_bytes)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=3)  # stream objects [0, 12) [12, 24) [24, 36)
        # Keep 15 and 18: gaps at the start (12) and at the end (21) of the range.
        want = replace_keeping(store, stream, 12, 24, lambda b: b[0] in (15, 18))
        fill(store, stream, 2)  # [36, 42) in the log cache only
        assert read_stream(store, stream) == want + expected(stream, 36, 2)
        for offset, first in [(12, 15), (13, 15), (16, 15), (19, 18), (21, 24), (23, 24)]:
            result = store.fetch(stream, offset, max_bytes=1)
            assert [b.base_offset for b in result.batches] == [first], offset
        # A gap at the end of the committed data: the read goes on into the cache.
        want = replace_keeping(store, stream, 24, 36, lambda b: b[0] == 24)
        assert [b.base_offset for b in store.fetch(stream, 27, max_bytes=1).batches] == [36]
        assert read_stream(store, stream) == want
        gets = store.reader.gets
        assert read_stream(store, stream) == want  # again: from the block cache
        assert store.reader.gets == gets


def test_a_gap_at_the_very_end_moves_the_reader_to_the_end(store: StreamStore) -> None:
    stream = new_stream(store)
    uploads(store, [stream], rounds=2)
    replace_keeping(store, stream, 12, 24, lambda b: b[0] == 12)
    result = store.fetch(stream, 15)
    assert (result.batches, result.next_offset) == ([], 24)


def test_the_log_cache_does_not_serve_replaced_bytes(tmp_path: Path, bucket: HookedStore) -> None:
    config = dataclasses.replace(CONFIG, log_cache_bytes=1 << 20)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=2)
        gets = store.reader.gets
        assert read_stream(store, stream) == expected(stream, 0, 8)
        assert store.reader.gets == gets  # all of it is in the log cache
        want = replace_keeping(store, stream, 0, 12, odd_batches)
        fill(store, stream, 1)
        assert read_stream(store, stream) == want + expected(stream, 24, 1)


# -- durability ------------------------------------------------------------------


def test_restart_and_a_fresh_data_dir_keep_the_replacement(
    tmp_path: Path, any_store: ObjectStore
) -> None:
    with StreamStore.open(tmp_path / "one", any_store, CONFIG) as store:
        a, b = new_stream(store), new_stream(store)
        uploads(store, [a, b], rounds=3)
        want = replace_keeping(store, a, 0, 24, odd_batches)
        dropped = store.manifest.state.dropped
        assert len(dropped) == 2
        fill(store, a, 1)  # in the WAL only
        store.close(flush=False)
    with StreamStore.open(tmp_path / "one", any_store, CONFIG) as store:  # the same WAL
        assert store.recovery.replayed_appends == 1
        assert store.manifest.state.dropped == dropped
        assert read_stream(store, a) == want + expected(a, 36, 1)
        assert read_stream(store, b) == expected(b, 0, 12)
    with StreamStore.open(tmp_path / "two", any_store, CONFIG) as store:  # a new machine
        assert read_stream(store, a) == want + expected(a, 36, 1)
        assert read_stream(store, b) == expected(b, 0, 12)
        assert_ranges_tile(store, a)


def test_a_checkpoint_keeps_dropped_ranges_dropped(
    tmp_path: Path, memory_store: MemoryStore
) -> None:
    config = dataclasses.replace(CONFIG, checkpoint_every=1)  # every version is checkpointed
    with StreamStore.open(tmp_path / "one", memory_store, config) as store:
        a, b = new_stream(store), new_stream(store)
        uploads(store, [a, b], rounds=2)
        want = replace_keeping(store, a, 12, 24, odd_batches)
        replaced_at = store.manifest.state.seq
        dropped = store.manifest.state.dropped
    newest = max(int(i.key.rsplit("/", 1)[1]) for i in memory_store.list(CHECKPOINT_PREFIX))
    assert newest >= replaced_at  # loading starts from a checkpoint written after the drop
    state = load_state(memory_store)
    assert state.dropped == dropped
    assert [entry[:2] for entry in state.ranges[a].entries] == [(0, 12), (12, 24)]
    with StreamStore.open(tmp_path / "two", memory_store, config) as store:
        assert read_stream(store, a) == want
        assert read_stream(store, b) == expected(b, 0, 8)


# -- the manifest -----------------------------------------------------------------


def add(object_id: int, *ranges: tuple[int, int, int]) -> list[object]:
    wire = [[s, start, end, 10] for s, start, end in ranges]
    return ["add_object", [object_id, f"objects/{object_id}", 1, 100, 0, wire]]


def sample_state() -> ManifestState:
    state = ManifestState()
    for op in [
        ["create_stream", 1, 0],
        ["create_stream", 2, 0],
        add(1, (1, 0, 10), (2, 0, 5)),
        add(2, (1, 10, 20)),
        add(3, (1, 0, 10)),  # the replacement of stream 1's range in object 1
        ["drop_range", 1, 0, 1],
    ]:
        state.apply(op)
    return state


def test_drop_range_leaves_the_object_and_survives_the_wire_format() -> None:
    state = sample_state()
    assert state.ranges[1].entries == [(0, 10, 3), (10, 20, 2)]
    assert 1 in state.objects and state.ranges[2].entries == [(0, 5, 1)]
    assert state.dropped == {(1, 0, 1)}
    wire = msgpack.unpackb(encode_record(state.to_wire())[12:], strict_map_key=False)
    again = ManifestState.from_wire(wire)
    assert again == state
    assert again.ranges[1].entries == state.ranges[1].entries
    assert again.ranges[2].entries == state.ranges[2].entries
    assert dead_objects(state) == []
    state.apply(["delete_stream", 2])  # object 1 has nothing live left
    assert dead_objects(state) == [1]
    state.apply(["remove_object", 1, 0])
    assert state.dropped == set()  # forgotten with its object


def test_a_checkpoint_without_dropped_ranges_still_loads() -> None:
    state = ManifestState()
    for op in [["create_stream", 1, 0], add(1, (1, 0, 10)), add(2, (1, 10, 20))]:
        state.apply(op)
    wire = state.to_wire()
    del wire["dropped"]  # as written before drop_range existed
    old = ManifestState.from_wire(wire)
    assert old == state
    assert old.ranges[1].entries == [(0, 10, 1), (10, 20, 2)]


@pytest.mark.parametrize(
    "op",
    [["drop_range", 9, 0, 1], ["drop_range", 1, 0, 9], ["drop_range", 1, 5, 1]],
    ids=["unknown stream", "unknown object", "no such range"],
)
def test_drop_range_of_something_absent_is_invalid(op: list[object]) -> None:
    state = sample_state()
    state.apply(["drop_range", 2, 0, 1])
    with pytest.raises(InvalidOperation):
        state.apply(op)
    with pytest.raises(InvalidOperation):
        state.apply(["drop_range", 2, 0, 1])  # already dropped


# -- compaction never brings replaced data back ---------------------------------


def test_merging_stream_set_objects_copies_only_live_ranges(store: StreamStore) -> None:
    a, b = new_stream(store), new_stream(store)
    uploads(store, [a, b], rounds=4)
    want = replace_keeping(store, a, 12, 24, odd_batches)
    store.compact()  # the four small stream-set objects merge into one
    state = store.manifest.state
    sets = [m for m in state.objects.values() if m.kind is ObjectKind.STREAM_SET]
    assert len(sets) == 1
    assert [(r.stream_id, r.start_offset, r.end_offset) for r in sets[0].ranges] == [
        (a, 0, 12),
        (a, 24, 48),
        (b, 0, 48),
    ]
    assert state.dropped == set()  # the objects holding dropped ranges are gone
    assert read_stream(store, a) == want
    assert read_stream(store, b) == expected(b, 0, 16)
    assert_ranges_tile(store, a)


def test_force_splits_copy_only_live_ranges(tmp_path: Path, bucket: HookedStore) -> None:
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        a, b = new_stream(store), new_stream(store)
        uploads(store, [a, b], rounds=3)
        want = replace_keeping(store, a, 0, 12, odd_batches)
    config = dataclasses.replace(CONFIG, force_split_after_s=0)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        store.compact()
        kinds = {meta.kind for meta in store.manifest.state.objects.values()}
        assert kinds == {ObjectKind.STREAM}
        assert read_stream(store, a) == want
        assert read_stream(store, b) == expected(b, 0, 12)
        assert_ranges_tile(store, a)


def test_stream_object_merges_keep_the_gaps(tmp_path: Path, bucket: HookedStore) -> None:
    config = dataclasses.replace(STREAM_OBJECTS, stream_object_max_bytes=1 << 20)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=4)
        want = replace_keeping(store, stream, 12, 24, lambda b: b[0] == 15)  # gaps both sides
        store.compact()
        objects = list(store.manifest.state.objects.values())
        assert len(objects) == 1  # all four merged, the replacement too
        # The replacement stays a range of its own: its hash chain starts
        # afresh (docs/tamper-evidence.md), so its links stay with it.
        assert [(r.start_offset, r.end_offset) for r in objects[0].ranges] == [
            (0, 12),
            (12, 24),
            (24, 48),
        ]
        store.compact()
        assert list(store.manifest.state.objects) == [objects[0].object_id]  # nothing to merge
        assert store.committed_ranges(stream) == [(0, 12), (12, 24), (24, 48)]
        assert read_stream(store, stream) == want
        assert [b.base_offset for b in store.fetch(stream, 12, max_bytes=1).batches] == [15]
        assert [b.base_offset for b in store.fetch(stream, 18, max_bytes=1).batches] == [24]


def test_merge_objects_leaves_dropped_ranges_out() -> None:
    bucket = MemoryStore()
    ids = ObjectIds(1)
    state = ManifestState()
    state.apply(["create_stream", 1, 0])
    state.apply(["create_stream", 2, 0])
    batches = {s: [StoredBatch(o, o + 1, f"{s}:{o}".encode()) for o in range(4)] for s in (1, 2)}
    (prepared,) = prepare_objects(
        batches.items(),
        state=state,
        epoch=1,
        ids=ids,
        now_ms=5,
        block_bytes=64,
        stream_object_bytes=1 << 20,
    )
    bucket.put(prepared.meta.key, prepared.data)
    object_id = prepared.meta.object_id
    state.apply(["add_object", prepared.meta.to_wire()])
    before = state.copy()
    state.apply(["drop_range", 1, 0, object_id])
    assert not inputs_unchanged(before, state, [object_id])  # a merge read before the drop
    assert inputs_unchanged(state, state.copy(), [object_id])
    merged = merge_objects(
        bucket, state, [object_id], ids=ids, now_ms=10, block_bytes=64, stream_object_bytes=1 << 20
    )
    assert [[(r.stream_id, r.start_offset) for r in m.meta.ranges] for m in merged] == [[(2, 0)]]


# -- concurrency ------------------------------------------------------------------


def is_stream_object(key: str) -> bool:
    return key.endswith(".so")


def test_a_merge_committed_during_the_replace_raises_range_changed(
    store: StreamStore, bucket: HookedStore
) -> None:
    a, b = new_stream(store), new_stream(store)
    uploads(store, [a, b], rounds=3)
    before = read_stream(store, a)
    keys = object_keys(bucket)
    put: list[str] = []

    def merge_now() -> None:
        put.extend(object_keys(bucket) - keys)
        store.compact()  # merges the three stream-set objects

    bucket.after_put = (is_stream_object, merge_now)
    batches = [cleaned(x) for x in before if 12 <= x[0] < 24]
    with pytest.raises(RangeChanged) as caught:
        store.replace_range(a, 12, 24, batches)
    assert (caught.value.stream_id, caught.value.start_offset) == (a, 12)
    assert len(put) == 1 and put[0] not in object_keys(bucket)  # its object was deleted
    assert read_stream(store, a) == before  # nothing replaced
    assert store.committed_ranges(a) == [(0, 36)]
    want = replace_keeping(store, a, 0, 36, odd_batches)  # the retry, on fresh boundaries
    assert read_stream(store, a) == want


def test_a_merge_of_ranges_replaced_meanwhile_is_abandoned(
    store: StreamStore, bucket: HookedStore
) -> None:
    a, b = new_stream(store), new_stream(store)
    uploads(store, [a, b], rounds=3)
    want: list[Batch] = []

    def replace_now() -> None:
        want.extend(replace_keeping(store, a, 12, 24, odd_batches))

    # The compactor has read its inputs and put its merged object: replace then.
    bucket.after_put = (lambda key: key.endswith(".sso"), replace_now)
    merged_before = set(store.manifest.state.objects)
    store.compact()
    assert want  # the replace ran inside the merge
    state = store.manifest.state
    assert merged_before <= set(state.objects)  # the merge did not commit
    assert object_keys(bucket) == {m.key for m in state.objects.values()}  # its output deleted
    assert read_stream(store, a) == want
    store.compact()  # now the merge goes ahead without the dropped range
    assert read_stream(store, a) == want
    assert read_stream(store, b) == expected(b, 0, 12)
    assert_ranges_tile(store, a)


def test_a_stream_deleted_during_the_replace(store: StreamStore, bucket: HookedStore) -> None:
    a, b = new_stream(store), new_stream(store)
    uploads(store, [a, b], rounds=1)
    keys = object_keys(bucket)
    bucket.after_put = (is_stream_object, lambda: store.delete_stream(a))
    with pytest.raises(StreamNotFound):
        store.replace_range(a, 0, 12, [StoredBatch(0, 3, b"x")])
    assert object_keys(bucket) == keys


# -- old objects --------------------------------------------------------------------


def test_replaced_objects_are_deleted_after_the_grace_period(
    tmp_path: Path, bucket: HookedStore
) -> None:
    config = dataclasses.replace(STREAM_OBJECTS, garbage_grace_s=0.3)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=3)
        old = {
            store.manifest.state.objects[oid].key
            for _, _, oid in store.manifest.state.ranges[stream].entries[:2]
        }
        before = store.manifest.state  # what an in-flight read looked up
        want = replace_keeping(store, stream, 0, 24, odd_batches)
        store.compact()
        state = store.manifest.state
        assert old <= set(state.garbage)
        assert not old & {m.key for m in state.objects.values()}
        assert old <= object_keys(bucket)  # still readable for reads already under way
        assert len(store.reader.read(before, stream, 0, 1 << 20, 24)) == 8
        time.sleep(0.35)
        store.compact()
        assert not old & object_keys(bucket)
        assert not old & set(store.manifest.state.garbage)
        assert read_stream(store, stream) == want


def test_a_replacement_trimmed_past_is_deleted(store: StreamStore, bucket: HookedStore) -> None:
    stream = new_stream(store)
    uploads(store, [stream], rounds=2)
    replace_keeping(store, stream, 0, 24, odd_batches)
    store.trim(stream, 24)
    assert store.flush(timeout=30)
    store.compact()
    assert not store.manifest.state.objects
    assert object_keys(bucket) == set()


# -- preconditions -------------------------------------------------------------------


def test_bad_arguments_are_refused_without_writing(store: StreamStore, bucket: HookedStore) -> None:
    stream = new_stream(store)
    uploads(store, [stream], rounds=2)  # committed ranges [0, 12) [12, 24)
    fill(store, stream, 2)  # [24, 30): not uploaded
    store.trim(stream, 3)
    keys = object_keys(bucket)
    one = [StoredBatch(12, 15, b"x")]
    with pytest.raises(StreamNotFound):
        store.replace_range(999, 12, 24, one)
    with pytest.raises(OffsetOutOfRange) as below:
        store.replace_range(stream, 0, 12, [StoredBatch(3, 6, b"x")])  # below the start
    assert (below.value.offset, below.value.start_offset) == (0, 3)
    with pytest.raises(OffsetOutOfRange) as beyond:
        store.replace_range(stream, 12, 30, one)  # not uploaded yet
    assert (beyond.value.offset, beyond.value.end_offset) == (30, 24)
    with pytest.raises(ValueError, match="empty range"):
        store.replace_range(stream, 12, 12, one)
    with pytest.raises(ValueError, match="boundaries"):
        store.replace_range(stream, 15, 24, [StoredBatch(15, 18, b"x")])
    with pytest.raises(ValueError, match="boundaries"):
        store.replace_range(stream, 12, 21, one)
    bad_batches = {
        "no batches": [],
        "out of order": [StoredBatch(18, 21, b"x"), StoredBatch(12, 15, b"x")],
        "overlapping": [StoredBatch(12, 15, b"x"), StoredBatch(14, 18, b"x")],
        "empty batch": [StoredBatch(12, 12, b"x")],
        "before the range": [StoredBatch(9, 12, b"x")],
        "past the range": [StoredBatch(21, 25, b"x")],
    }
    for name, batches in bad_batches.items():
        with pytest.raises(ValueError):
            store.replace_range(stream, 12, 24, batches)
            pytest.fail(name)
    assert object_keys(bucket) == keys
    assert store.committed_ranges(stream) == [(0, 12), (12, 24)]
