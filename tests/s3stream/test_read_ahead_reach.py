"""Read-ahead that is read before it is evicted: what a reader fetches
ahead reaches as far as its position's window, not the window's limit, so
readers arriving one by one do not fetch more than the cache keeps for
them; an index read takes a stream object's end only where the reader
keeps the blocks it brings; a failed read does not grow its reader's
window (docs/design/0155, "Read-ahead read before it is evicted")."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from s3stream import StreamStore
from s3stream.block_cache import BlockCache
from s3stream.reader import INDEX_TAIL_BYTES
from s3stream.store import MemoryStore, ObjectStore, ObjectStoreError
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.test_read_path import (
    BATCHES,
    CONFIG,
    CountingExecutor,
    RecordingGets,
    write_stream_objects,
)
from tests.s3stream.test_read_share import write_streams
from tests.s3stream.test_stream_store import expected

READERS = 4
UPLOADS = 2
FETCH_BYTES = 8 * 1024


@pytest.fixture
def bucket() -> MemoryStore:
    return MemoryStore()


def test_readers_arriving_one_by_one_fetch_each_byte_about_once(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    # Four consumers of streams of their own, round-robin, a block cache of
    # a third of the objects: each reader's window is sized by the readers
    # counted so far, and the first ones used to fetch (whole objects, a
    # 64 KiB suffix kept up to the limit) what the later ones' read-ahead
    # then pushed out unread.
    streams = write_streams(tmp_path, bucket, READERS, UPLOADS)
    recording = RecordingGets(bucket)
    with StreamStore.open(tmp_path / "probe", bucket, CONFIG) as probe:
        object_bytes = sum(meta.size for meta in probe.manifest.state.objects.values())
    config = dataclasses.replace(CONFIG, block_cache_bytes=object_bytes // 3)
    with StreamStore.open(tmp_path / "reader", recording, config) as reader:
        workers = CountingExecutor(reader.reader._executor)
        reader.reader._executor = workers
        offsets = dict.fromkeys(streams, 0)
        while offsets:
            for stream, offset in list(offsets.items()):
                result = reader.fetch(stream, offset, FETCH_BYTES)
                workers.until_idle()
                got = [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
                assert got == expected(stream, offset, result.next_offset - offset, per_batch=1)
                offsets[stream] = result.next_offset
                if result.next_offset >= UPLOADS * BATCHES:
                    del offsets[stream]
        evicted_unread = reader.block_cache.evicted_unread
    fetched = sum(end - start for _, start, end in recording.gets if end is not None)
    # Main's reader: 227 blocks (a third of the objects' bytes) evicted
    # unread, 1.70 times the objects' bytes fetched; this one's some 110
    # (most of them the first reader's object, read whole while it read
    # alone) and 1.1-1.2.
    assert evicted_unread * CONFIG.block_bytes < object_bytes // 5
    assert fetched < 1.25 * object_bytes, fetched / object_bytes


def test_an_index_read_at_an_objects_start_takes_a_small_tail(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    # A reader starting a stream object whose window ends well before its
    # last 64 KiB keeps none of the blocks a 64 KiB suffix brings: it reads
    # the footer and the index only. (Another stream is being read: a
    # reader alone reads the object whole.)
    first, second = write_streams(tmp_path, bucket, READERS, UPLOADS)[:2]
    recording = RecordingGets(bucket)
    with StreamStore.open(tmp_path / "reader", recording, CONFIG) as reader:
        assert reader.fetch(first, 0, 1024).batches
        recording.gets.clear()
        assert reader.fetch(second, 0, 1024).batches
        state = reader.manifest.state
        meta = state.objects[state.ranges[second].find(0)[2]]
        assert meta.size > 4 * CONFIG.readahead_span_bytes + 64 * 1024
    assert recording.gets[0] == (meta.key, meta.size - INDEX_TAIL_BYTES, meta.size)
    fetched = sum(end - start for key, start, end in recording.gets if key == meta.key)
    assert fetched < 2 * INDEX_TAIL_BYTES + CONFIG.readahead_span_bytes


@contextmanager
def _reader_of_a_failing_store(
    tmp_path: Path, bucket: MemoryStore
) -> Iterator[tuple[int, StreamStore, RecordingGets, CountingExecutor]]:
    """A stream of two objects, and a store reading it through a store
    that fails on cue, its read-ahead workers counted."""
    stream = write_stream_objects(tmp_path, bucket, uploads=2)
    failing = RecordingGets(bucket)
    config = dataclasses.replace(CONFIG, block_cache_bytes=1024 * 1024)
    with StreamStore.open(tmp_path / "reader", failing, config) as reader:
        workers = CountingExecutor(reader.reader._executor)
        reader.reader._executor = workers
        yield stream, reader, failing, workers


def test_a_failed_read_leaves_its_window_as_it_was(tmp_path: Path, bucket: MemoryStore) -> None:
    with _reader_of_a_failing_store(tmp_path, bucket) as (stream, reader, failing, workers):
        offset = reader.fetch(stream, 0, 1024).next_offset
        workers.until_idle()
        positions = reader.reader._reads[stream]
        before = positions._by_end[offset].window
        # Its next blocks gone from the cache, and the store failing: the
        # read that goes on from there fails, again and again.
        reader.reader.block_cache = BlockCache(reader.block_cache.max_bytes)
        failing.fail("get", OBJECT_PREFIX)
        for _ in range(3):
            with pytest.raises(ObjectStoreError):
                reader.reader.read(reader.manifest.state, stream, offset, 1024, 2 * BATCHES)
            workers.until_idle()
            assert positions._by_end[offset].window == before
        failing.heal()
        # Healed, the read goes on with the window doubled once from there.
        state = reader.manifest.state
        assert reader.reader.read(state, stream, offset, 1024, 2 * BATCHES)
        workers.until_idle()
        (position,) = (p for p in positions._by_end.values() if p.end > offset)
        assert position.window == min(2 * before, reader.reader._window_limit())


def test_a_reads_own_blocks_come_in_spans(tmp_path: Path, bucket: MemoryStore) -> None:
    # A read of 8 KiB whose window is still 2 KiB (half a span): its
    # read-ahead covers what it asks for, in spans of up to 4 KiB, where
    # the blocks past the window were loaded one GET each.
    first, second = write_streams(tmp_path, bucket, READERS, UPLOADS)[:2]
    recording = RecordingGets(bucket)
    config = dataclasses.replace(CONFIG, readahead_bytes=32 * 1024)
    with StreamStore.open(tmp_path / "reader", recording, config) as reader:
        workers = CountingExecutor(reader.reader._executor)
        reader.reader._executor = workers
        assert reader.fetch(first, 0, 1024).batches
        workers.until_idle()
        recording.gets.clear()
        result = reader.fetch(second, 0, FETCH_BYTES)
        workers.until_idle()
        state = reader.manifest.state
        meta = state.objects[state.ranges[second].find(0)[2]]
    assert sum(len(b.payload) for b in result.batches) > FETCH_BYTES - 1024
    blocks = [(start, end) for key, start, end in recording.gets if key == meta.key]
    assert blocks[0][1] == meta.size  # the index
    # Here 4 (spans, and the blocks the batches' headers add past 8 KiB);
    # main's reader 10: its window's one span, then a GET a block.
    assert len(blocks[1:]) <= FETCH_BYTES // CONFIG.readahead_span_bytes + 2, blocks


def test_a_new_readers_failed_read_leaves_it_a_window_that_grows(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    # The first read of a reader fails (the store refusing for a while):
    # its position had no window yet, and one kept with that window
    # doubled it from nothing, read after read, with no read-ahead past
    # each read's own bytes from then on.
    with _reader_of_a_failing_store(tmp_path, bucket) as (stream, reader, failing, workers):
        state = reader.manifest.state
        failing.fail("get", OBJECT_PREFIX)
        with pytest.raises(ObjectStoreError):
            reader.reader.read(state, stream, 0, 1024, 2 * BATCHES)
        workers.until_idle()
        failing.heal()
        offset, windows = 0, []
        for _ in range(3):
            batches = reader.reader.read(state, stream, offset, 1024, 2 * BATCHES)
            workers.until_idle()
            offset = batches[-1].end_offset
            windows.append(reader.reader._reads[stream]._by_end[offset].window)
    first = reader.reader._initial_window
    assert windows == [first, 2 * first, 4 * first]


class HeldGets(RecordingGets):
    """Holds every GET of one object until released."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.held_key = ""
        self.holding = threading.Event()
        self.release = threading.Event()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        if key == self.held_key:
            self.holding.set()
            assert self.release.wait(30)
        return super().get(key, start, end)


def test_readers_of_one_stream_on_two_threads_are_not_each_alone(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    # Two consumers of one stream, their fetches on two threads at once:
    # each read's position is taken out while it runs, so neither finds the
    # other's kept. Counted alone, each reached the stream's whole share at
    # once (a whole object), as a replay does.
    # (The first reader's window reaches the two objects after its first:
    # the second reads the fourth.)
    stream = write_stream_objects(tmp_path, bucket, uploads=4)
    held = HeldGets(bucket)
    with StreamStore.open(tmp_path / "reader", held, CONFIG) as reader:
        state = reader.manifest.state
        first, *_, last = sorted(state.objects.values(), key=lambda meta: meta.object_id)
        assert 3 * last.size < CONFIG.readahead_bytes < 4 * last.size
        held.held_key = first.key
        end = 4 * BATCHES
        other = threading.Thread(target=reader.reader.read, args=(state, stream, 0, 1024, end))
        other.start()
        try:
            assert held.holding.wait(30)
            assert reader.reader.read(state, stream, 3 * BATCHES, 1024, end)
        finally:
            held.release.set()
            other.join(30)
    assert (first.key, 0, first.size) in held.gets  # the one that came first: alone then
    assert (last.key, 0, last.size) not in held.gets  # its window's span instead
    assert any(key == last.key for key, *_ in held.gets)
