"""The log cache's layout (docs/design/0156): one list of batches a stream
for the whole cache, and a block's share of each stream named by two ints,
so that what a block adds holds nothing the cyclic collector tracks; and a
restart's batches replayed from the WAL left untracked like the produce
path's (0154), with the same bytes.

The property test drives the cache with random appends, seals, uploads
(and the evictions they bring), trims and deletions, and holds its blocks,
reads and counts to a model that keeps a list a stream a block, as the
cache did before.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native
from s3stream import StreamStore, StreamStoreConfig
from s3stream.log_cache import CacheBlock, LogCache
from s3stream.objects import StoredBatch
from s3stream.store import LocalStore

C = native.IMPLEMENTATION == "c"


@dataclass
class _ModelBlock:
    block: CacheBlock
    batches: dict[int, list[StoredBatch]] = field(default_factory=dict)
    size: int = 0
    uploaded: bool = False


@dataclass
class _Model:
    max_bytes: int
    blocks: list[_ModelBlock] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)
    ends: dict[int, int] = field(default_factory=dict)
    size: int = 0

    def add(self, block: CacheBlock, stream_id: int, batch: StoredBatch) -> None:
        if not self.blocks or self.blocks[-1].block is not block:
            self.blocks.append(_ModelBlock(block))
        last = self.blocks[-1]
        last.batches.setdefault(stream_id, []).append(batch)
        last.size += len(batch.payload)
        self.size += len(batch.payload)

    def uploaded(self, block: CacheBlock) -> None:
        for kept in self.blocks:
            if kept.block is block:
                kept.uploaded = True
        while self.size > self.max_bytes and self.blocks and self.blocks[0].uploaded:
            self.size -= self.blocks.pop(0).size

    def cached(self, stream_id: int) -> list[StoredBatch]:
        if stream_id in self.deleted:
            return []
        return [b for kept in self.blocks for b in kept.batches.get(stream_id, [])]


_STREAMS = st.integers(1, 4)
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), _STREAMS, st.integers(1, 40), st.integers(1, 3)),
        st.tuples(st.just("seal")),
        st.tuples(st.just("upload")),
        st.tuples(st.just("trim"), _STREAMS),
        st.tuples(st.just("delete"), _STREAMS),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=_STEPS, max_bytes=st.integers(0, 300))
def test_the_cache_holds_what_a_list_a_stream_a_block_would(
    steps: list[tuple[object, ...]], max_bytes: int
) -> None:
    cache = LogCache(max_bytes)
    model = _Model(max_bytes)
    for step in steps:
        if step[0] == "append":
            _, stream_id, size, records = step
            assert isinstance(stream_id, int) and isinstance(size, int)
            assert isinstance(records, int)
            if stream_id in model.deleted:
                continue  # the store refuses an append to a deleted stream
            base = model.ends.get(stream_id, 0)
            payload = bytes([stream_id]) * size
            batch = native.untracked_record(StoredBatch, base, base + records, payload, None)
            model.add(cache.add(stream_id, batch), stream_id, batch)
            model.ends[stream_id] = base + records
        elif step[0] == "seal":
            cache.seal()
        elif step[0] == "upload":
            block = cache.next_to_upload()
            if block is not None:
                cache.mark_uploaded(block)
                cache.evict_all()
                model.uploaded(block)
        elif step[0] == "trim":
            stream_id = step[1]
            assert isinstance(stream_id, int)
            cache.add_trim(stream_id, model.ends.get(stream_id, 0))
        else:
            stream_id = step[1]
            assert isinstance(stream_id, int)
            cache.drop_stream(stream_id)
            model.deleted.add(stream_id)
        _agrees(cache, model)


def _agrees(cache: LogCache, model: _Model) -> None:
    assert cache.size == model.size
    # A stream's cache is kept while a block holds its batches, and no
    # longer: a deleted stream's too (no leak once its blocks are evicted).
    held = {stream_id for kept in model.blocks for stream_id in kept.batches}
    assert set(cache._streams) == held - model.deleted
    assert set(cache._deleted) == held & model.deleted
    for kept in model.blocks:
        assert cache.batches_of(kept.block) == kept.batches
        assert cache.ends_of(kept.block) == {s: b[-1].end_offset for s, b in kept.batches.items()}
    pending = [kept for kept in model.blocks if not kept.uploaded]
    assert cache.unuploaded_appends() == sum(len(b) for k in pending for b in k.batches.values())
    for stream_id in range(1, 5):
        cached = model.cached(stream_id)
        first = cached[0].base_offset if cached else None
        assert cache.first_offset(stream_id) == first
        every = [b for k in pending for b in k.batches.get(stream_id, [])]
        for offset in {0, *(b.base_offset for b in every), *(b.end_offset for b in cached)}:
            assert cache.unuploaded_bytes_of(stream_id, offset) == sum(
                len(b.payload) for b in every if b.base_offset >= offset
            )
        if first is None:
            continue
        for batch in cached:
            for offset in range(batch.base_offset, batch.end_offset):
                assert cache.covers(stream_id, offset)
                read = cache.read(stream_id, offset, 1 << 20, 1 << 62)
                assert read == [b for b in cached if b.end_offset > offset]
                assert cache.read(stream_id, offset, 0, 1 << 62) == read[:1]
                assert cache.read(stream_id, offset, 0, 1 << 62, at_least_one=False) == []


def test_what_a_block_adds_is_untracked() -> None:
    cache = LogCache(1 << 20)
    for offset in range(30):
        payload = bytes(10)
        batch = native.untracked_record(StoredBatch, offset, offset + 1, payload, None)
        cache.add(offset % 3, batch)
    block = cache.seal()
    assert block is not None
    gc.collect()
    assert not gc.is_tracked(block.firsts)
    assert not gc.is_tracked(block.counts)
    assert block.counts == {0: 10, 1: 10, 2: 10}
    # Nothing the block refers to is a container of batches of its own.
    assert not [o for o in gc.get_referents(block.__dict__) if isinstance(o, list)]
    for stream_id in range(3):
        stream = cache._streams[stream_id]
        # An array of ends: a collection visits its type, not an int a batch.
        assert len(gc.get_referents(stream.ends)) <= 1
        assert [gc.is_tracked(b) for b in stream.batches] == [not C] * 10


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[Callable[[], StreamStore]]:
    """Opens the store of one node and bucket under ``tmp_path`` (again at
    each call: a restart), uploads only when asked; closes what is open."""
    bucket = LocalStore(str(tmp_path / "bucket"))
    config = StreamStoreConfig(upload_interval_s=3600.0, compaction_interval_s=3600.0)
    stores: list[StreamStore] = []

    def opener() -> StreamStore:
        stores.append(StreamStore.open(tmp_path / "node", bucket, config))
        return stores[-1]

    yield opener
    for store in stores:
        store.close(flush=False)


def test_a_restarts_replayed_batches_are_untracked_with_the_bytes_appended(
    open_store: Callable[[], StreamStore],
) -> None:
    first = open_store()
    stream_id = first.create_stream()
    first.open_stream(stream_id, 1)
    sent = []
    for offset in range(0, 40, 4):
        payload = bytes((offset * 7 + i) % 256 for i in range(30 + offset))
        first.append(stream_id, offset, offset + 3, payload)
        sent.append((offset, offset + 4, payload))
    first.close(flush=False)  # every append in the WAL alone
    second = open_store()
    assert second.recovery.replayed_appends == len(sent)
    result = second.fetch(stream_id, 0, 1 << 20)
    assert second.reader.gets == 0  # from the log cache: the replayed batches themselves
    assert [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches] == sent
    gc.collect()
    assert [gc.is_tracked(b) for b in result.batches] == [not C] * len(sent)


def test_an_end_past_int64_is_refused_with_the_cache_as_it_was() -> None:
    cache = LogCache(0)  # every uploaded block evicted at once
    first = native.untracked_record(StoredBatch, 0, 1, b"a", None)
    cache.add(1, first)
    with pytest.raises(OverflowError):
        cache.add(1, StoredBatch(1, 1 << 63, b"x"))
    with pytest.raises(OverflowError):
        cache.add(2, StoredBatch(0, 1 << 63, b"y"))  # a stream's first batch
    assert cache.size == cache.unuploaded_bytes == 1
    assert cache.unuploaded_appends() == 1
    assert cache.first_offset(2) is None and not cache.covers(2, 0)
    second = StoredBatch(1, 2, b"b")
    cache.add(1, second)
    block = cache.seal()
    assert block is not None
    later = StoredBatch(2, 3, b"c")
    cache.add(1, later)
    following = cache.seal()
    assert following is not None
    assert cache.batches_of(block) == {1: [first, second]}
    assert cache.ends_of(block) == {1: 2}
    cache.mark_uploaded(block)
    assert cache.batches_of(following) == {1: [later]}
    assert cache.read(1, 2, 1 << 20, 1 << 62) == [later]


def test_a_store_refuses_an_end_past_int64_and_keeps_serving(
    open_store: Callable[[], StreamStore],
) -> None:
    store = open_store()
    stream_id = store.create_stream()
    store.open_stream(stream_id, 1)
    store.append(stream_id, 0, 0, b"a")
    before = store.log_cache_usage()
    with pytest.raises(OverflowError):
        store.append(stream_id, 1, 1 << 63, b"x")
    assert store.log_cache_usage().size == before.size
    assert store.log_cache_usage().unuploaded_bytes == before.unuploaded_bytes
    store.append(stream_id, 1, 1, b"b")
    store.close(flush=True)
    again = open_store()
    result = again.fetch(stream_id, 0, 1 << 20)
    assert [bytes(b.payload) for b in result.batches] == [b"a", b"b"]


def test_an_upload_traces_its_ends_when_it_evicts_its_own_block(tmp_path: Path) -> None:
    # With no room kept for reads, an upload's mark_uploaded evicts its own
    # block (and a stream whose batches were all in it): the trace's ends
    # are taken from the block before that, not from what is left after.
    config = StreamStoreConfig(
        upload_interval_s=3600.0, compaction_interval_s=3600.0, log_cache_bytes=0
    )
    store = StreamStore.open(tmp_path / "node", LocalStore(str(tmp_path / "bucket")), config)
    try:
        streams = [store.create_stream() for _ in range(3)]
        for stream_id in streams:
            store.open_stream(stream_id, 1)
        trace = store.trace_uploads()
        expected: list[dict[int, int]] = []
        for round_number in range(3):
            ends = {}
            for n, stream_id in enumerate(streams[: round_number + 1]):
                base = store.append_offsets(stream_id)[1]
                for _ in range(n + 1):
                    base = store.append(stream_id, base, base + 1, bytes(20 + n))
                ends[stream_id] = base
            store.flush()
            expected.append(ends)
        assert [upload.ends for upload in trace.uploads()] == expected
        assert store.log_cache_usage().size == 0
    finally:
        store.close(flush=False)
