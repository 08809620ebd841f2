"""The read path with its largest read (reader.LARGEST_READ_BYTES) made
small: whatever the objects' and blocks' sizes, the cap and the reads, the
reader gives the batches a whole-object parse gives, its GETs stay within
the cap (one block larger than it alone excepted), no block is fetched
twice while the cache could hold it, the cached blocks keep no more bytes
alive than the cache's bound, and no claimed block is left pending;
on a damaged object it fails as the reader without the cap fails."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3stream import reader as reader_module
from s3stream.block_cache import BlockCache
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.manifest_state import ManifestState
from s3stream.objects import (
    FOOTER_SIZE,
    ObjectKind,
    StoredBatch,
    encode_object,
    parse_object,
)
from s3stream.reader import ObjectReader
from s3stream.store import MemoryStore

STREAM = 1
OTHER = 2
FORK = 3
"""A fork of STREAM: it shares the ranges of all but STREAM's last object,
and holds the first batches of that one in an object of its own (as
s3stream/forking.py copies the range holding its fork point)."""
NO_CAP = 1 << 62


class RecordingStore(MemoryStore):
    """A MemoryStore that records every GET as (key, start, end)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[tuple[str, int, int | None]] = []
        self._gets_lock = threading.Lock()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        with self._gets_lock:
            self.gets.append((key, start, end))
        return super().get(key, start, end)


class CountingExecutor(ThreadPoolExecutor):
    """A pool that can wait until every task, and every task its tasks
    submitted, has ended (read-ahead submits more read-ahead)."""

    def __init__(self) -> None:
        super().__init__(2)
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._idle:
            self._pending += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except RuntimeError:  # shut down
            with self._idle:
                self._pending -= 1
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def wait_idle(self) -> None:
        with self._idle:
            assert self._idle.wait_for(lambda: self._pending == 0, timeout=30)


@dataclass(frozen=True)
class Layout:
    """Objects holding one stream's batches in order (a stream-set object
    holds another stream's run beside it)."""

    objects: list[tuple[ObjectKind, list[StoredBatch]]]
    block_bytes: int
    fork_cut: int
    """How many batches of STREAM's last object FORK holds in its own."""

    def batches(self) -> list[StoredBatch]:
        return [b for _, run in self.objects for b in run]

    def fork_batches(self) -> list[StoredBatch]:
        return [b for _, run in self.objects[:-1] for b in run] + self.objects[-1][1][
            : self.fork_cut
        ]


def _run(start: int, sizes: list[tuple[int, int]]) -> list[StoredBatch]:
    out = []
    offset = start
    for count, length in sizes:
        head = f"{offset}:".encode()
        payload = (head + bytes([offset % 251]) * length)[: max(length, 1)]
        out.append(StoredBatch(offset, offset + count, payload))
        offset += count
    return out


@st.composite
def layouts(draw: st.DrawFn, cap: int) -> Layout:
    block_bytes = draw(st.integers(64, 2 * cap))
    # Batches up to 3 caps long: some alone make a block larger than the cap.
    batch = st.tuples(st.integers(1, 3), st.integers(1, 3 * cap))
    runs = draw(st.lists(st.lists(batch, min_size=1, max_size=40), min_size=1, max_size=3))
    objects = []
    offset = 0
    for sizes in runs:
        kind = draw(st.sampled_from([ObjectKind.STREAM, ObjectKind.STREAM, ObjectKind.STREAM_SET]))
        run = _run(offset, sizes)
        objects.append((kind, run))
        offset = run[-1].end_offset
    fork_cut = draw(st.integers(1, len(objects[-1][1])))
    return Layout(objects, block_bytes, fork_cut)


def _store(layout: Layout) -> tuple[RecordingStore, ManifestState]:
    store = RecordingStore()
    state = ManifestState()
    state.apply(["create_stream", STREAM, 0])
    state.apply(["create_stream", OTHER, 0])
    for object_id, (kind, run) in enumerate(layout.objects, start=1):
        streams = [(STREAM, run)]
        if kind is ObjectKind.STREAM_SET:
            other_start = 1000 * object_id
            streams.append((OTHER, _run(other_start, [(1, 100), (2, 300)])))
        encoded = encode_object(kind, streams, layout.block_bytes)
        key = f"objects/{object_id:04d}"
        store.put(key, encoded.data)
        ranges = tuple(
            RangeMeta(r.stream_id, r.start_offset, r.end_offset, r.size) for r in encoded.ranges
        )
        meta = ObjectMeta(object_id, key, kind, encoded.size, 0, ranges)
        state.apply(["add_object", meta.to_wire()])
    state.apply(["create_stream", FORK, 0])
    for meta in list(state.objects.values())[:-1]:
        (held,) = [r for r in meta.ranges if r.stream_id == STREAM]
        state.apply(["share_range", FORK, STREAM, held.start_offset, meta.object_id])
    copied = encode_object(
        ObjectKind.STREAM, [(FORK, layout.fork_batches()[-layout.fork_cut :])], layout.block_bytes
    )
    key = f"objects/{state.next_object_id:04d}"
    store.put(key, copied.data)
    ranges = tuple(
        RangeMeta(r.stream_id, r.start_offset, r.end_offset, r.size) for r in copied.ranges
    )
    meta = ObjectMeta(state.next_object_id, key, ObjectKind.STREAM, copied.size, 0, ranges)
    state.apply(["add_object", meta.to_wire()])
    return store, state


def _whole_object_batches(store: MemoryStore, state: ManifestState) -> list[StoredBatch]:
    """The stream's batches from whole-object parses: what reads must give."""
    out = []
    for meta in sorted(state.objects.values(), key=lambda m: m.object_id):
        index, blocks = parse_object(meta.key, store.get(meta.key))
        for info, batches in zip(index.blocks, blocks, strict=True):
            if info.stream_id == STREAM:
                out += [StoredBatch(b.base_offset, b.end_offset, bytes(b.payload)) for b in batches]
    return out


def _expected(
    batches: list[StoredBatch], offset: int, max_bytes: int, end: int
) -> list[StoredBatch]:
    """What ObjectReader.read answers, from the stream's batches in order."""
    out: list[StoredBatch] = []
    budget = max_bytes
    for batch in batches:
        if batch.end_offset <= offset:
            continue
        if batch.end_offset > end or (out and len(batch.payload) > budget) or budget <= 0:
            break
        out.append(batch)
        budget -= len(batch.payload)
    return out


@contextmanager
def _reader(
    store: MemoryStore, cap: int, suffix: int, readahead: int, cache_bytes: int
) -> Iterator[tuple[ObjectReader, BlockCache, CountingExecutor]]:
    executor = CountingExecutor()
    cache = BlockCache(cache_bytes)
    try:
        with (
            mock.patch.object(reader_module, "LARGEST_READ_BYTES", cap),
            mock.patch.object(reader_module, "SUFFIX_READ_BYTES", suffix),
        ):
            reader = ObjectReader(
                store,
                cache,
                executor,
                readahead_bytes=readahead,
                readahead_span_bytes=_span(readahead),
            )
            yield reader, cache, executor
            executor.wait_idle()
    finally:
        executor.shutdown(wait=True)


def _span(readahead: int) -> int:
    return max(1, readahead // 4)


def _plain(batches: list[StoredBatch]) -> list[tuple[int, int, bytes]]:
    return [(b.base_offset, b.end_offset, bytes(b.payload)) for b in batches]


def _reads(end: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    return st.lists(st.tuples(st.integers(0, end), st.integers(1, 1 << 16)), max_size=6)


def _replay(
    reader: ObjectReader, state: ManifestState, stream: int, start: int, max_bytes: int
) -> list[Any]:
    """A consumer catching up from ``start``: every batch once, in order."""
    end = state.streams[stream].end_offset
    got: list[StoredBatch] = []
    offset = start
    while offset < end:
        batches = reader.read(state, stream, offset, max_bytes, end)
        assert batches, f"nothing read at {offset}"
        got += batches
        offset = batches[-1].end_offset
    return _plain(got)


def _check_gets(store: RecordingStore, state: ManifestState, cap: int, span: int) -> None:
    """Every GET of a stream object reads at most the cap (of a stream-set
    object, at most a span): the whole of an object no larger than it, its
    tail, its index, or blocks within it; only one block larger is read
    alone beyond it."""
    for key, start, end in store.gets:
        meta = next(m for m in state.objects.values() if m.key == key)
        data = store.get_versioned(key)[0]
        index, _ = parse_object(key, data)
        assert end is not None and end <= meta.size, (key, start, end, meta.size)
        if (start, end) == (0, meta.size):
            assert meta.size <= cap, (key, meta.size)  # the whole object
            continue
        if end - start <= (cap if meta.kind is ObjectKind.STREAM else max(span, cap)):
            continue
        blocks = [(b.position, b.position + b.size) for b in index.blocks]
        index_region = (meta.size - FOOTER_SIZE - 40 * len(index.blocks), meta.size - FOOTER_SIZE)
        assert (start, end) in blocks or (start, end) == index_region, (key, start, end, cap)


def _check_no_block_read_twice(store: RecordingStore, state: ManifestState, suffix: int) -> None:
    """With a cache that holds every block, each block is fetched once (a
    tail GET that the index is parsed from does not count)."""
    for meta in state.objects.values():
        index, _ = parse_object(meta.key, store.get_versioned(meta.key)[0])
        tail_start = max(0, meta.size - suffix)
        fetches = [
            (start, end)
            for key, start, end in store.gets
            if key == meta.key and not (tail_start > 0 and (start, end) == (tail_start, meta.size))
        ]
        for block in index.blocks:
            covering = [
                f for f in fetches if f[0] <= block.position and block.position + block.size <= f[1]
            ]
            assert len(covering) <= 1, (meta.key, block, covering)


CAPS = st.integers(256, 8192)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), CAPS)
def test_capped_reads_give_the_whole_objects_batches(data: st.DataObject, cap: int) -> None:
    layout = data.draw(layouts(cap))
    suffix = data.draw(st.integers(FOOTER_SIZE, cap))
    readahead = data.draw(st.sampled_from([0, cap // 2, 4 * cap, 64 * cap]))
    store, state = _store(layout)
    assert _plain(_whole_object_batches(store, state)) == _plain(layout.batches())
    stream = data.draw(st.sampled_from([STREAM, FORK]))
    batches = layout.batches() if stream == STREAM else layout.fork_batches()
    end = state.streams[stream].end_offset
    total = sum(m.size for m in state.objects.values())
    roomy = data.draw(st.booleans())
    cache_bytes = 4 * total if roomy else data.draw(st.integers(1, total))
    start = data.draw(st.integers(0, end - 1))
    replay_bytes = data.draw(st.integers(1, 4 * cap))
    reads = data.draw(_reads(end))
    store.gets.clear()
    with _reader(store, cap, suffix, readahead, cache_bytes) as (reader, cache, executor):
        assert _replay(reader, state, stream, start, replay_bytes) == _plain(
            [b for b in batches if b.end_offset > start]
        )
        for offset, max_bytes in reads:
            got = reader.read(state, stream, offset, max_bytes, end)
            assert _plain(got) == _plain(_expected(batches, offset, max_bytes, end))
        executor.wait_idle()
        assert cache.in_flight() == 0
        assert not reader._index_loads
        assert _kept_alive(cache) <= cache.max_bytes
    _check_gets(store, state, cap, _span(readahead))
    if roomy:
        _check_no_block_read_twice(store, state, suffix)


def _kept_alive(cache: BlockCache) -> int:
    """The bytes the cached blocks keep alive: each batch's payload is a
    view of the buffer its block was parsed from, each buffer counted once
    (the cache's bound, docs/design/0155: also for a GET over half of it)."""
    buffers: dict[int, int] = {}
    for batches, *_ in [*cache._read.values(), *cache._unread.values()]:
        for batch in batches:
            buffer = getattr(batch.payload, "obj", batch.payload)
            buffers[id(buffer)] = len(buffer)
    return sum(buffers.values())


def _outcomes(
    store: MemoryStore,
    state: ManifestState,
    stream: int,
    cap: int,
    suffix: int,
    readahead: int,
    reads: list[tuple[int, int]],
) -> list[Any]:
    """What each read answers: its batches, or its error's type and object."""
    end = state.streams[stream].end_offset
    out: list[Any] = []
    with _reader(store, cap, suffix, readahead, 1 << 30) as (reader, cache, executor):
        for offset, max_bytes in reads:
            try:
                out.append(_plain(reader.read(state, stream, offset, max_bytes, end)))
            except Exception as error:
                out.append((type(error).__name__, getattr(error, "key", None)))
        executor.wait_idle()
        assert cache.in_flight() == 0
    return out


DAMAGE = st.sampled_from(["flip", "truncate", "delete", "extend"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), CAPS, DAMAGE)
def test_a_damaged_object_fails_capped_reads_as_it_fails_whole_ones(
    data: st.DataObject, cap: int, damage: str
) -> None:
    layout = data.draw(layouts(cap))
    suffix = data.draw(st.integers(FOOTER_SIZE, cap))
    readahead = data.draw(st.sampled_from([cap // 2, 4 * cap, 64 * cap]))
    store, state = _store(layout)
    meta = data.draw(st.sampled_from(sorted(state.objects.values(), key=lambda m: m.object_id)))
    stored = store.get(meta.key)
    if damage == "flip":
        at = data.draw(st.integers(0, len(stored) - 1))
        store.put(meta.key, stored[:at] + bytes([stored[at] ^ 0x5A]) + stored[at + 1 :])
    elif damage == "truncate":
        store.put(meta.key, stored[: data.draw(st.integers(0, len(stored) - 1))])
    elif damage == "extend":
        store.put(meta.key, stored + bytes(data.draw(st.integers(1, 2 * cap))))
    else:
        store.delete(meta.key)
    stream = data.draw(st.sampled_from([STREAM, FORK]))
    end = state.streams[stream].end_offset
    # Reads at each object's first offset (where a stream object is read
    # whole, or in spans when larger than the cap) and anywhere.
    starts = [start for start, _, _ in state.ranges[stream].entries]
    reads = [(s, 1 << 20) for s in sorted(starts)] + data.draw(_reads(end))
    capped = _outcomes(store, state, stream, cap, suffix, readahead, reads)
    whole = _outcomes(store, state, stream, NO_CAP, suffix, readahead, reads)
    assert capped == whole


def test_a_read_ahead_the_pool_refuses_leaves_no_block_claimed() -> None:
    # The store shuts its read pool while fetches may still run: a read-ahead
    # then cannot be handed to a worker. Its claimed blocks must not stay
    # claimed, or every later read of them waits, without end, for a load
    # nobody runs.
    cap = 1024
    sizes = [(1, 300)] * 40
    layout = Layout([(ObjectKind.STREAM, _run(0, sizes))], 512, 40)
    store, state = _store(layout)
    end = state.streams[STREAM].end_offset
    with _reader(store, cap, 256, 16 * cap, 1 << 20) as (reader, cache, executor):
        executor.shutdown(wait=True)
        got = reader.read(state, STREAM, 10, 4 * cap, end)
        assert _plain(got) == _plain(_expected(layout.batches(), 10, 4 * cap, end))
        assert cache.in_flight() == 0


def test_blocks_kept_from_a_tail_over_half_the_cache_keep_only_themselves_alive() -> None:
    # A read of 60 KB near a stream object's end, into a cache of 100 KB:
    # the blocks it keeps from the index's tail span more than half the
    # cache. Copied out as one span, the cache counted them by their sizes
    # while any one of them kept the whole span alive; another 95 KB read
    # after them left one of them, and the span, beside a full cache.
    store = RecordingStore()
    state = ManifestState()
    state.apply(["create_stream", STREAM, 0])
    offset = 0
    for object_id in (1, 2):
        run = _run(offset, [(1, 1000)] * 70)
        encoded = encode_object(ObjectKind.STREAM, [(STREAM, run)], 1024)
        key = f"objects/{object_id:04d}"
        store.put(key, encoded.data)
        ranges = tuple(
            RangeMeta(r.stream_id, r.start_offset, r.end_offset, r.size) for r in encoded.ranges
        )
        meta = ObjectMeta(object_id, key, ObjectKind.STREAM, encoded.size, 0, ranges)
        state.apply(["add_object", meta.to_wire()])
        offset = run[-1].end_offset
    cache = BlockCache(100_000)
    with ThreadPoolExecutor(2) as executor:
        reader = ObjectReader(store, cache, executor, readahead_bytes=0)
        assert len(reader.read(state, STREAM, 14, 60_000, offset)) == 60
        assert store.gets[0][1] > 0  # the index's tail, not the whole object
        assert _kept_alive(cache) <= cache.max_bytes
        assert reader.read(state, STREAM, 70, 95_000, offset)
        assert _kept_alive(cache) <= cache.max_bytes
