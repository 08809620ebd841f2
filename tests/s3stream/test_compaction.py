"""Compaction and retention: merges, splits, trims by time and bytes, and
deletion only after the grace period; the data read back never changes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from s3stream import OffsetOutOfRange, Retention, StreamStore, StreamStoreConfig
from s3stream.compaction import merge_objects
from s3stream.manifest_state import ManifestState
from s3stream.objects import ObjectKind, StoredBatch, parse_object
from s3stream.store import MemoryStore, ObjectStore
from s3stream.uploader import OBJECT_PREFIX, ObjectIds, add_ops, object_key, prepare_objects
from tests.s3stream.test_stream_store import expected, fill, new_stream, read_all

CONFIG = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    small_object_bytes=64 * 1024,
    stream_object_bytes=8 * 1024,
    block_bytes=1024,
    garbage_grace_s=0,
    log_cache_bytes=0,  # every read after upload goes to objects
)


@pytest.fixture
def bucket() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def store(tmp_path: Path, bucket: MemoryStore) -> Iterator[StreamStore]:
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as opened:
        yield opened


def uploads(store: StreamStore, streams: list[int], rounds: int, count: int = 2) -> None:
    for _ in range(rounds):
        for stream in streams:
            fill(store, stream, count)
        assert store.flush(timeout=30)


def object_keys(bucket: ObjectStore) -> set[str]:
    return {info.key for info in bucket.list(OBJECT_PREFIX)}


def test_small_objects_are_merged(store: StreamStore, bucket: MemoryStore) -> None:
    streams = [new_stream(store) for _ in range(3)]
    uploads(store, streams, rounds=8)
    before = object_keys(bucket)
    assert len(store.manifest.state.objects) == 8
    store.compact()
    state = store.manifest.state
    assert len(state.objects) == 1
    for stream in streams:
        assert read_all(store, stream) == expected(stream, 0, 16)
    # The grace period is 0 here, so the same pass deleted the inputs.
    assert object_keys(bucket) == {meta.key for meta in state.objects.values()}
    assert not before & object_keys(bucket)
    assert state.garbage == {}


class CountedDeletes(MemoryStore):
    """A memory store counting its deletion requests (one per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[list[str]] = []

    def delete(self, key: str) -> None:
        self.requests.append([key])
        super().delete(key)

    def delete_many(self, keys: Sequence[str]) -> None:
        self.requests.append(list(keys))
        for key in keys:
            super().delete(key)


def test_expired_garbage_goes_in_one_request(tmp_path: Path) -> None:
    bucket = CountedDeletes()
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        streams = [new_stream(store) for _ in range(3)]
        uploads(store, streams, rounds=8)
        inputs = {meta.key for meta in store.manifest.state.objects.values()}
        store.compact()
        deleted = [keys for keys in bucket.requests if keys and keys[0].startswith(OBJECT_PREFIX)]
        assert len(deleted) == 1 and set(deleted[0]) == inputs
        assert store.manifest.state.garbage == {}
        for stream in streams:
            assert read_all(store, stream) == expected(stream, 0, 16)


def test_big_streams_are_split_into_stream_objects(store: StreamStore) -> None:
    busy, quiet = new_stream(store), new_stream(store)
    for _ in range(6):  # each upload: 3 KB of busy, 100 B of quiet; merged: 18 KB of busy
        fill(store, busy, 6, size=500)
        fill(store, quiet, 1)
        assert store.flush(timeout=30)
    store.compact()
    kinds = sorted(
        (meta.kind, tuple(r.stream_id for r in meta.ranges))
        for meta in store.manifest.state.objects.values()
    )
    assert kinds == [(ObjectKind.STREAM_SET, (quiet,)), (ObjectKind.STREAM, (busy,))]
    assert read_all(store, busy) == expected(busy, 0, 36, size=500)
    assert read_all(store, quiet) == expected(quiet, 0, 6)


def test_retention_by_bytes_keeps_at_least_the_limit(store: StreamStore) -> None:
    stream = new_stream(store)
    uploads(store, [stream], rounds=10, count=3)  # 10 objects of 300 payload bytes
    store.set_retention(stream, Retention(bytes=1000))
    store.compact()
    start = store.start_offset(stream)
    kept = read_all(store, stream)
    assert start > 0
    stored = sum(16 + len(b[2]) for b in kept)  # the size in objects: entry header + bytes
    assert stored >= 1000
    assert stored < 1000 + 3 * 116  # whole uploads are dropped: at most one more is kept
    assert kept == [b for b in expected(stream, 0, 30) if b[0] >= start]
    with pytest.raises(OffsetOutOfRange):
        store.fetch(stream, 0)


def test_retention_by_time_drops_old_objects_only(store: StreamStore, bucket: MemoryStore) -> None:
    stream, other = new_stream(store), new_stream(store)
    uploads(store, [stream, other], rounds=3)
    time.sleep(0.05)
    fill(store, stream, 2)  # newer than the limit, and not uploaded yet
    store.set_retention(stream, Retention(ms=20))
    store.compact()
    assert store.start_offset(stream) == 18  # every uploaded offset was too old
    assert read_all(store, stream) == expected(stream, 18, 2)
    assert read_all(store, other) == expected(other, 0, 6)  # no retention set


def test_retention_tells_its_start_listeners_which_streams_it_moved(
    store: StreamStore,
) -> None:
    """Retention moves a start offset no caller asked for: the store's start
    listeners hear of the streams it moved, once it is committed (a reader
    then finds the new start), and of no other."""
    trimmed, kept = new_stream(store), new_stream(store)
    uploads(store, [trimmed, kept], rounds=3)
    heard: list[tuple[set[int], int]] = []
    store.add_start_listener(lambda streams: heard.append((streams, store.start_offset(trimmed))))
    store.set_retention(trimmed, Retention(bytes=1))
    store.compact()
    assert heard == [({trimmed}, store.start_offset(trimmed))]
    store.compact()  # nothing more past its limits: no one is told
    assert len(heard) == 1
    assert store.start_offset(trimmed) > 0
    assert store.start_offset(kept) == 0


def test_fully_trimmed_and_deleted_streams_free_their_objects(
    store: StreamStore, bucket: MemoryStore
) -> None:
    keep, drop = new_stream(store), new_stream(store)
    uploads(store, [drop], rounds=3)
    uploads(store, [keep, drop], rounds=1)
    store.delete_stream(drop)
    store.compact()
    store.compact()
    remaining = list(store.manifest.state.objects.values())
    assert len(remaining) == 1  # the three objects of only the deleted stream are gone
    assert {r.stream_id for r in remaining[0].ranges} == {keep, drop}
    assert object_keys(bucket) == {remaining[0].key}
    assert read_all(store, keep) == expected(keep, 0, 2)
    store.trim(keep, store.end_offset(keep))  # now nothing in it can be read
    store.flush(timeout=30)
    store.compact()
    assert not store.manifest.state.objects
    assert object_keys(bucket) == set()


def test_removed_objects_stay_readable_during_the_grace_period(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    config = StreamStoreConfig(
        upload_interval_s=3600, compaction_interval_s=3600, garbage_grace_s=3600
    )
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=4)
        before = store.manifest.state  # what an in-flight read looked up
        store.compact()
        assert len(store.manifest.state.objects) == 1
        for key in {meta.key for meta in before.objects.values()}:
            assert key in object_keys(bucket)
        batches = store.reader.read(before, stream, 0, 1 << 20, 24)
        assert [b.base_offset for b in batches] == list(range(0, 24, 3))


def test_orphans_of_older_writers_are_deleted_on_open(tmp_path: Path, bucket: MemoryStore) -> None:
    with StreamStore.open(tmp_path / "a", bucket, CONFIG) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=1)
        epoch = store.manifest.epoch
    orphan = object_key(epoch, 999, ObjectKind.STREAM_SET)
    bucket.put(orphan, b"an upload that never committed")
    with StreamStore.open(tmp_path / "b", bucket, CONFIG) as store:
        assert store.recovery.orphans_deleted == 1
        assert orphan not in object_keys(bucket)
        assert read_all(store, stream) == expected(stream, 0, 2)


def kinds_by_stream(store: StreamStore) -> list[tuple[ObjectKind, tuple[int, ...]]]:
    return sorted(
        (meta.kind, tuple(r.stream_id for r in meta.ranges))
        for meta in store.manifest.state.objects.values()
    )


def compact_until_settled(store: StreamStore) -> int:
    """Compaction passes until one changes nothing; returns how many changed something."""
    for passes in range(100):
        before = set(store.manifest.state.objects)
        store.compact()
        if set(store.manifest.state.objects) == before:
            return passes
    raise AssertionError("compaction never settled")


def test_old_stream_set_objects_are_split_whatever_their_size(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    config = dataclasses.replace(CONFIG, force_split_after_s=0)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        busy, quiet = new_stream(store), new_stream(store)
        uploads(store, [busy, quiet], rounds=1)  # far below stream_object_bytes
        assert kinds_by_stream(store) == [(ObjectKind.STREAM_SET, (busy, quiet))]
        store.compact()
        assert kinds_by_stream(store) == [
            (ObjectKind.STREAM, (busy,)),
            (ObjectKind.STREAM, (quiet,)),
        ]
        assert read_all(store, busy) == expected(busy, 0, 2)
        assert read_all(store, quiet) == expected(quiet, 0, 2)


def test_young_stream_set_objects_are_not_split(store: StreamStore) -> None:
    a, b = new_stream(store), new_stream(store)
    uploads(store, [a, b], rounds=1)
    assert compact_until_settled(store) == 0  # one object, not small twice, no big stream
    assert kinds_by_stream(store) == [(ObjectKind.STREAM_SET, (a, b))]


def test_small_stream_objects_of_a_stream_merge_into_larger_ones(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    # Every upload writes a stream object of ~1.3 KB; a merge writes at most 3 KB.
    config = dataclasses.replace(CONFIG, stream_object_bytes=1, stream_object_max_bytes=3 * 1024)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream = new_stream(store)
        uploads(store, [stream], rounds=6, count=10)
        assert kinds_by_stream(store) == [(ObjectKind.STREAM, (stream,))] * 6
        assert compact_until_settled(store) > 0
        objects = list(store.manifest.state.objects.values())
        assert all(meta.kind is ObjectKind.STREAM for meta in objects)
        assert len(objects) == 3  # pairs: a third upload would pass 3 KB
        assert all(meta.size <= 3 * 1024 for meta in objects)
        assert object_keys(bucket) == {meta.key for meta in objects}
        assert read_all(store, stream) == expected(stream, 0, 60)


def test_stream_objects_merge_only_with_their_neighbours(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    # A stream-set object between two stream objects of one stream keeps them apart.
    config = dataclasses.replace(CONFIG, stream_object_bytes=1500)
    with StreamStore.open(tmp_path / "node", bucket, config) as store:
        stream, other = new_stream(store), new_stream(store)
        uploads(store, [stream], rounds=1, count=16)  # 1.6 KB: a stream object
        uploads(store, [stream, other], rounds=1, count=1)  # small: a stream-set object
        uploads(store, [stream], rounds=1, count=16)  # a stream object again
        before = kinds_by_stream(store)
        assert [kind for kind, _ in before].count(ObjectKind.STREAM) == 2
        assert compact_until_settled(store) == 0
        assert kinds_by_stream(store) == before
        assert read_all(store, stream) == expected(stream, 0, 33)


def test_a_merge_holds_its_inputs_batches_once_not_a_copy_beside_them() -> None:
    """merge_max_bytes is the most one compaction pass reads and holds
    (docs/server.md): the objects it writes take their batches, small ones
    too, as views of the bytes it read, so the pass holds each byte once."""
    bucket = MemoryStore()
    state = ManifestState()
    ids = ObjectIds(1)
    sizes = [0, 1, 100, 4095, 4096, 5000]
    written: list[bytes] = []
    for stream_id in (1, 2):
        state.apply(["create_stream", stream_id, 0])
    for round_ in range(3):
        streams = []
        for stream_id in (1, 2):
            batches = [
                StoredBatch(o, o + 1, bytes([stream_id + round_]) * size)
                for o, size in enumerate(sizes, start=round_ * len(sizes))
            ]
            written += [bytes(b.payload) for b in batches]
            streams.append((stream_id, batches))
        prepared = prepare_objects(
            streams,
            state=state,
            epoch=1,
            ids=ids,
            now_ms=1,
            block_bytes=1024,
            stream_object_bytes=1 << 20,
        )
        for p in prepared:
            bucket.put(p.meta.key, p.data)
        for op in add_ops(prepared):
            state.apply(op)
    merged = merge_objects(
        bucket,
        state,
        sorted(state.objects),
        ids=ids,
        now_ms=2,
        block_bytes=1024,
        stream_object_bytes=1 << 20,
    )
    (only,) = merged
    # Views of the bytes read: memoryviews, or with the C extension the
    # ByteSlices fetched blocks' batches are (docs/design/0154); a copy
    # would be bytes.
    viewed = sum(len(p) for p in only.data if not isinstance(p, bytes | bytearray))
    assert viewed == sum(map(len, written))
    # And the object is the batches it merged, in (stream, offset) order.
    _, blocks = parse_object(only.meta.key, b"".join(only.data))
    read = sorted((b.base_offset, bytes(b.payload)) for bs in blocks for b in bs)
    assert sorted(p for p in read) == sorted(
        (o, bytes([s + o // len(sizes)]) * sizes[o % len(sizes)])
        for s in (1, 2)
        for o in range(3 * len(sizes))
    )
