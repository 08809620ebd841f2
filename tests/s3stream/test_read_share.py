"""The read path's share of the block cache: streams read at once share it
however long their readers pause between reads, a stream that stops
reading gives its share back, and an index's suffix GET serves the blocks
it brought."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from s3stream import StreamStore
from s3stream.objects import SUFFIX_READ_BYTES
from s3stream.store import MemoryStore
from tests.s3stream.test_read_path import (
    BATCHES,
    CONFIG,
    CountingExecutor,
    RecordingGets,
    write_stream_objects,
)
from tests.s3stream.test_stream_store import expected, fill, new_stream, read_all

CACHE_BYTES = 256 * 1024
SLOW_CONSUMERS_PAUSE_S = 0.3
"""Longer than the 0.25 s of wall clock that once counted a stream as
being read: readers polling this slowly were counted gone between reads."""


@pytest.fixture
def bucket() -> MemoryStore:
    return MemoryStore()


def write_streams(tmp_path: Path, bucket: MemoryStore, count: int, uploads: int = 1) -> list[int]:
    """``count`` streams of ``uploads`` stream objects of some 80 KB each."""
    with StreamStore.open(tmp_path / "writer", bucket, CONFIG) as writer:
        streams = [new_stream(writer) for _ in range(count)]
        for _ in range(uploads):
            for stream in streams:
                fill(writer, stream, BATCHES, per_batch=1)
            assert writer.flush(timeout=30)
    return streams


def test_readers_that_pause_between_reads_keep_sharing_the_cache(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    streams = write_streams(tmp_path, bucket, 4)
    config = dataclasses.replace(CONFIG, block_cache_bytes=CACHE_BYTES)
    with StreamStore.open(tmp_path / "reader", bucket, config) as reader:
        offsets = dict.fromkeys(streams, 0)
        for _ in range(2):
            for stream in streams:
                offsets[stream] = reader.fetch(stream, offsets[stream], 4096).next_offset
            # Slow consumers: a pause a real one takes between its polls.
            threading.Event().wait(SLOW_CONSUMERS_PAUSE_S)
        # Still four at once (and a share to spare), the pause whatever.
        assert reader.reader._window_limit() == CACHE_BYTES // 5


def test_a_stream_that_stops_reading_gives_its_share_back(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    streams = write_streams(tmp_path, bucket, 4)
    config = dataclasses.replace(CONFIG, block_cache_bytes=CACHE_BYTES)
    with StreamStore.open(tmp_path / "reader", bucket, config) as reader:
        for stream in streams:
            reader.fetch(stream, 0, 4096)
        assert reader.reader._window_limit() == CACHE_BYTES // 5
        # Three consumers close; the last reads on, and once it has read
        # a block cache's worth the others no longer hold a share.
        last = streams[-1]
        offset, read = 0, 0
        while read < CACHE_BYTES:
            result = reader.fetch(last, offset, 4096)
            read += sum(len(batch.payload) for batch in result.batches)
            offset = result.next_offset
            if offset >= BATCHES:
                offset = 0  # a consumer seeking back to the start
        assert reader.reader._window_limit() == CACHE_BYTES // 2


def test_an_index_read_from_the_tail_serves_the_blocks_it_brought(
    tmp_path: Path, bucket: MemoryStore
) -> None:
    stream = write_stream_objects(tmp_path, bucket, uploads=1)
    recording = RecordingGets(bucket)
    at = BATCHES - 100  # in the object's last 10 KB: in the tail an index read takes
    with StreamStore.open(tmp_path / "reader", recording, CONFIG) as reader:
        workers = CountingExecutor(reader.reader._executor)
        reader.reader._executor = workers
        (meta,) = reader.manifest.state.objects.values()
        assert meta.size > SUFFIX_READ_BYTES
        got = []
        offset = at
        while offset < BATCHES:
            result = reader.fetch(stream, offset, 4096)
            workers.until_idle()
            got += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
            offset = result.next_offset
    assert got == expected(stream, at, BATCHES - at, per_batch=1)
    # The index's suffix GET, and nothing else: not its blocks again. It
    # takes the object's end from about the read's offset on, no more than
    # SUFFIX_READ_BYTES (docs/design/0155, "Read-ahead read before it is
    # evicted").
    ((key, start, end),) = recording.gets
    assert (key, end) == (meta.key, meta.size)
    assert meta.size - SUFFIX_READ_BYTES <= start < meta.size - (BATCHES - at) * 100


def test_an_index_looked_up_alone_keeps_no_blocks(tmp_path: Path, bucket: MemoryStore) -> None:
    # A look-up that needs only the index (a gap's end, a time) parses no block.
    write_stream_objects(tmp_path, bucket, uploads=1)
    with StreamStore.open(tmp_path / "reader", bucket, CONFIG) as reader:
        (meta,) = reader.manifest.state.objects.values()
        assert reader.reader.index(meta).blocks
        assert reader.block_cache.size == 0


def test_a_cached_read_works_out_the_streams_share_once(
    tmp_path: Path, bucket: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The share walks the streams counted at once under the reader's lock:
    # a read served from the cache pays for it once, not once more for
    # each thing sized by it.
    stream = write_stream_objects(tmp_path, bucket, uploads=1)
    config = dataclasses.replace(CONFIG, block_cache_bytes=CACHE_BYTES)
    with StreamStore.open(tmp_path / "reader", bucket, config) as store:
        assert read_all(store, stream, 4096)
        reader = store.reader
        gets = reader.gets
        worked_out = reader._window_limit_locked
        calls = []

        def counted(readers: int = 1) -> int:
            calls.append(1)
            return worked_out(readers)

        monkeypatch.setattr(reader, "_window_limit_locked", counted)
        batches = reader.read(store.manifest.state, stream, 10, 1024, BATCHES)
        assert batches and batches[0].base_offset == 10
        assert reader.gets == gets  # served from the cache
        assert len(calls) == 1


def test_a_stream_forgotten_while_it_is_read_is_answered_and_not_counted(
    tmp_path: Path, bucket: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stream deleted while a fetch of it runs: the fetch returns what it
    # read, and the deleted stream holds no share of the cache.
    streams = write_streams(tmp_path, bucket, 2)
    config = dataclasses.replace(CONFIG, block_cache_bytes=CACHE_BYTES)
    with StreamStore.open(tmp_path / "reader", bucket, config) as store:
        reader = store.reader
        store.fetch(streams[1], 0, 4096)
        read_ahead = reader._read_ahead

        def deleted_meanwhile(*args: Any) -> None:
            read_ahead(*args)
            reader.forget_stream(streams[0])

        monkeypatch.setattr(reader, "_read_ahead", deleted_meanwhile)
        batches = reader.read(store.manifest.state, streams[0], 0, 4096, BATCHES)
        assert batches and batches[0].base_offset == 0
        assert reader._window_limit() == CACHE_BYTES // 2
