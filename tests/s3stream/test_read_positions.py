"""Several readers of one stream: each reader position keeps its own
read-ahead window, positions that meet merge, and a stream keeps a bounded
number of them (docs/design/0155, "Several readers of one stream")."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import StreamStore
from s3stream.read_positions import READ_POSITIONS_PER_STREAM, ReadPosition, StreamPositions
from s3stream.store import MemoryStore
from tests.s3stream.test_read_path import (
    BATCHES,
    CONFIG,
    CountingExecutor,
    RecordingGets,
    write_stream_objects,
)
from tests.s3stream.test_stream_store import expected

UPLOADS = 4
CACHE_BYTES = 4 * 1024 * 1024
"""Room for all of the stream: nothing read ahead is evicted, so every GET
counted is one a window asked for."""
READAHEAD_BYTES = 32 * 1024
"""Less than a stream object (some 80 KB): objects are read by read-ahead
windows, not whole."""


def _read_in_turns(
    tmp_path: Path, bucket: MemoryStore, stream: int, starts: list[int], fetches: int
) -> int:
    """GETs of data objects while readers at ``starts`` fetch 4 KiB each in
    turns, ``fetches`` times each, every read-ahead settled between fetches."""
    recording = RecordingGets(bucket)
    config = dataclasses.replace(
        CONFIG, block_cache_bytes=CACHE_BYTES, readahead_bytes=READAHEAD_BYTES
    )
    with StreamStore.open(tmp_path / f"reader-{len(starts)}", recording, config) as store:
        workers = CountingExecutor(store.reader._executor)
        store.reader._executor = workers
        offsets = list(starts)
        for _ in range(fetches):
            for i, offset in enumerate(offsets):
                result = store.fetch(stream, offset, 4096)
                workers.until_idle()
                got = [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
                assert got == expected(stream, offset, result.next_offset - offset, per_batch=1)
                offsets[i] = result.next_offset
    return len(recording.gets)


def test_two_readers_of_one_stream_far_apart_keep_their_read_ahead(
    tmp_path: Path,
) -> None:
    # Two consumer groups replaying one history two objects apart. Both
    # start inside an object (not at its first offset, which would read
    # the whole object at once), so the blocks come by read-ahead alone.
    bucket = MemoryStore()
    stream = write_stream_objects(tmp_path, bucket, uploads=UPLOADS)
    starts = [10, 2 * BATCHES + 10]
    alone = sum(
        _read_in_turns(tmp_path / f"alone-{start}", bucket, stream, [start], 30) for start in starts
    )
    together = _read_in_turns(tmp_path / "together", bucket, stream, starts, 30)
    # Each reader's window grows as if it read alone. With one window for
    # the stream, each read took the other's for a seek and fetched a
    # span of the smallest window: several times the GETs.
    assert together <= alone + 2, (together, alone)


def test_readers_that_meet_share_one_position(tmp_path: Path) -> None:
    bucket = MemoryStore()
    stream = write_stream_objects(tmp_path, bucket, uploads=1)
    with StreamStore.open(tmp_path / "reader", bucket, CONFIG) as store:
        first = store.fetch(stream, 10, 4096).next_offset
        second = store.fetch(stream, 10, 4096).next_offset
        assert first == second
        positions = store.reader._reads[stream]
        assert len(positions) == 1  # two readers at one place: one window


def test_a_stream_keeps_a_bounded_number_of_positions(tmp_path: Path) -> None:
    # A peer reading a stream at ever new places (a seek per fetch) makes
    # the reader keep no more positions than the bound.
    bucket = MemoryStore()
    stream = write_stream_objects(tmp_path, bucket, uploads=1)
    with StreamStore.open(tmp_path / "reader", bucket, CONFIG) as store:
        for offset in range(0, BATCHES - 1, 7):
            store.fetch(stream, offset, 100)
        assert len(store.reader._reads[stream]) == READ_POSITIONS_PER_STREAM
        assert len(range(0, BATCHES - 1, 7)) > READ_POSITIONS_PER_STREAM


def test_a_streams_share_is_split_between_its_readers(tmp_path: Path) -> None:
    bucket = MemoryStore()
    stream = write_stream_objects(tmp_path, bucket, uploads=UPLOADS)
    config = dataclasses.replace(CONFIG, block_cache_bytes=CACHE_BYTES // 16)
    with StreamStore.open(tmp_path / "reader", bucket, config) as store:
        for start in (10, BATCHES + 10, 2 * BATCHES + 10):
            store.fetch(stream, start, 4096)
        reader = store.reader
        with reader._lock:
            # One stream counted (and a share to spare), its three readers
            # splitting it: all windows together stay within the cache.
            assert reader._window_limit_locked(3) == config.block_cache_bytes // 2 // 3


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 8), st.booleans(), st.integers(0, 3)),
        max_size=120,
    )
)
def test_positions_model(steps: list[tuple[int, int, bool, int]]) -> None:
    # Random reads (take at an offset, put back further on) against a
    # model: positions keyed by where they read next, at most the bound,
    # the least lately read dropped first, the stale ones dropped.
    positions = StreamPositions()
    model: dict[int, int] = {}  # end -> read clock, in order of last read
    clock = 0
    stale = 50
    for offset, advance, caught_up, read in steps:
        position = positions.take(offset, clock, stale)
        model = {end: at for end, at in model.items() if clock - at < stale}
        if offset in model:
            assert position.end == offset
            del model[offset]
        else:
            assert position.end == -1
            while len(model) >= READ_POSITIONS_PER_STREAM:
                del model[next(iter(model))]
        clock += read
        positions.put(position, offset + advance, clock, caught_up)
        model.pop(offset + advance, None)
        model[offset + advance] = clock
        assert len(positions) == len(model) <= READ_POSITIONS_PER_STREAM
        assert list(positions._by_end) == list(model)


def test_positions_that_meet_keep_the_larger_window() -> None:
    positions = StreamPositions()
    behind, ahead = positions.take(0, 0, 100), positions.take(50, 0, 100)
    ahead.window = 8192
    positions.put(ahead, 100, 1, False)
    behind.window = 2048
    positions.put(behind, 100, 2, False)
    met = positions.take(100, 2, 100)
    assert isinstance(met, ReadPosition)
    assert (met.window, len(positions)) == (8192, 0)


@pytest.mark.parametrize("caught_up", [False, True])
def test_a_caught_up_position_holds_no_share(caught_up: bool) -> None:
    positions = StreamPositions()
    positions.put(positions.take(0, 0, 100), 10, 1, caught_up)
    assert positions.reading() == (0 if caught_up else 1)


def test_positions_read_at_once_stay_within_the_bound() -> None:
    # Readers of one stream at new places at the same time (fetches on
    # several threads): each takes a position while the others are out,
    # and all of them are put back; the stream still keeps at most the
    # bound, the least lately read dropped.
    positions = StreamPositions()
    for offset in range(READ_POSITIONS_PER_STREAM - 1):
        positions.put(positions.take(offset, offset, 1000), offset * 100, offset, False)
    out = [positions.take(5000 + i, 20, 1000) for i in range(4)]
    for i, position in enumerate(out):
        positions.put(position, 6000 + i, 21 + i, False)
    assert len(positions) == READ_POSITIONS_PER_STREAM
    assert list(positions._by_end)[-4:] == [6000, 6001, 6002, 6003]
