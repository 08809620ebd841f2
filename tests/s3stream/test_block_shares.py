"""An upload reads its block's batches, and then evicts older blocks, in
bounded holds of the store's lock (s3stream/block_shares.py,
docs/design/0157): the read still sees exactly the batches of its block,
and the eviction drops exactly its blocks' batches, however appends,
reads, seals, trims, stream deletions, further uploads and parts of
evictions fall between its holds.

The property tests drive the interleavings themselves: the lock they hand
the read or the eviction runs, at every release, the operations hypothesis
drew for that gap, on the one thread, against a model that keeps each
block's batches as they were appended. The stress test runs the same read
and eviction on threads of their own with a real lock, while other threads
append, seal, delete streams and read.
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import ClassVar, SupportsIndex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import StreamStore, StreamStoreConfig, uploader
from s3stream.block_shares import (
    STREAM_COST,
    evict_in_groups,
    read_block_ends,
    read_block_shares,
    share_groups,
)
from s3stream.errors import StoreFailed
from s3stream.log_cache import CacheBlock, LogCache
from s3stream.objects import StoredBatch
from s3stream.store import LocalStore

STREAMS = 6


class _Appends:
    """Appends to a log cache, remembering each block's batches by stream as
    they were put (the model), with offsets dense per stream."""

    def __init__(self, cache: LogCache) -> None:
        self.cache = cache
        self.next: dict[int, int] = {}
        self.blocks: dict[int, dict[int, list[StoredBatch]]] = {}
        self.at: dict[tuple[int, int], StoredBatch] = {}
        """Every batch appended, by (stream, base offset)."""

    def kept(self, stream_id: int, block_ids: Iterable[int]) -> list[StoredBatch]:
        """The stream's batches in the given blocks, in offset order."""
        return [b for i in sorted(block_ids) for b in self.blocks.get(i, {}).get(stream_id, [])]

    def append(self, stream_id: int, records: int = 1) -> None:
        base = self.next.get(stream_id, 0)
        batch = StoredBatch(base, base + records, bytes([stream_id]) * (1 + base % 7))
        block = self.cache.add(stream_id, batch)
        self.next[stream_id] = base + records
        self.blocks.setdefault(block.block_id, {}).setdefault(stream_id, []).append(batch)
        self.at[stream_id, base] = batch


class _Interleaving:
    """The lock handed to the read: at each release, the operations drawn
    for that gap run against the cache (on this thread: deterministic)."""

    def __init__(self, run_gap: Callable[[], None]) -> None:
        self.run_gap = run_gap
        self.held = False
        self.holds = 0

    def __enter__(self) -> bool:
        assert not self.held
        self.held = True
        self.holds += 1
        return True

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.held = False
        self.run_gap()


_OPERATION = st.one_of(
    st.tuples(st.just("append"), st.integers(1, STREAMS), st.integers(1, 3)),
    st.tuples(st.just("seal"), st.just(0), st.just(0)),
    st.tuples(st.just("upload_older"), st.just(0), st.just(0)),
    st.tuples(st.just("evict_some"), st.just(0), st.integers(1, 8)),
    st.tuples(st.just("delete"), st.integers(1, STREAMS), st.just(0)),
    st.tuples(st.just("trim"), st.integers(1, STREAMS), st.integers(0, 5)),
    st.tuples(st.just("read"), st.integers(1, STREAMS), st.integers(0, 40)),
)


def _delete_trim_or_read(cache: LogCache, name: str, stream_id: int, number: int) -> None:
    """The drawn operations both property tests run alike."""
    if name == "delete":
        cache.drop_stream(stream_id)
    elif name == "trim":
        cache.add_trim(stream_id, number)
    elif cache.covers(stream_id, number):
        cache.read(stream_id, number, 50, 1 << 40)


_SOME_APPENDS = st.lists(st.integers(1, STREAMS), min_size=1, max_size=40)
"""The streams of a block's appends, one batch each."""


@settings(max_examples=300, deadline=None)
@given(
    before=st.lists(_OPERATION, max_size=60),
    group_batches=st.integers(STREAM_COST + 1, STREAM_COST + 6),
    max_bytes=st.integers(0, 200),
    data=st.data(),
)
def test_an_upload_reads_its_blocks_batches_whatever_falls_between_its_holds(
    before: list[tuple[str, int, int]], group_batches: int, max_bytes: int, data: st.DataObject
) -> None:
    cache = LogCache(max_bytes)
    appends = _Appends(cache)
    target: list[CacheBlock] = []

    def apply(operation: tuple[str, int, int]) -> None:
        name, stream_id, number = operation
        if name == "append":
            appends.append(stream_id, number)
        elif name == "seal":
            cache.seal()
        elif name == "upload_older":
            # Uploads go in order: only a block older than the one being
            # read can be marked uploaded (and evicted) while it is read.
            block = cache.next_to_upload()
            if block is not None and (not target or block.block_id < target[0].block_id):
                cache.mark_uploaded(block)
        elif name == "evict_some":
            cache.evict_queued(number, 1)
        else:
            _delete_trim_or_read(cache, name, stream_id, number)

    for operation in before:
        apply(operation)
    # Older sealed blocks not uploaded yet, whose uploads evict in the gaps,
    # then the block read: its appends sealed, waiting for its upload.
    older = data.draw(st.lists(_SOME_APPENDS, max_size=3))
    for streams in [*older, data.draw(_SOME_APPENDS)]:
        for stream_id in streams:
            appends.append(stream_id)
        sealed = cache.seal()
    assert sealed is not None
    target.append(sealed)

    def run_gap() -> None:
        for operation in data.draw(st.lists(_OPERATION, max_size=6)):
            apply(operation)

    lock = _Interleaving(run_gap)
    got = read_block_shares(lock, cache, sealed, group_batches)
    assert got == appends.blocks[sealed.block_id]
    assert lock.holds == len(list(share_groups(sealed, group_batches)))


def test_a_blocks_shares_are_cut_into_groups_of_bounded_cost() -> None:
    cache = LogCache(1 << 30)
    appends = _Appends(cache)
    for i in range(1000):
        appends.append(1 + i % 3 if i < 900 else 4 + i % 50)  # long shares, then short ones
    block = cache.seal()
    assert block is not None
    groups = list(share_groups(block, 64))
    for group in groups:
        assert sum(length + STREAM_COST for _, _, length in group) <= 64
    pieces = [piece for group in groups for piece in group]
    for stream_id, count in block.counts.items():
        mine = [(skip, length) for s, skip, length in pieces if s == stream_id]
        assert [skip for skip, _ in mine] == [sum(n for _, n in mine[:i]) for i in range(len(mine))]
        assert sum(length for _, length in mine) == count
    assert read_block_shares(threading.Lock(), cache, block, 64) == appends.blocks[block.block_id]


def _holds_what_its_blocks_hold(cache: LogCache, appends: _Appends, exact: bool) -> None:
    """Every block still in the cache reads back its batches as appended;
    each stream's list ends with its last batch and holds every batch of
    those blocks, and (``exact``: no eviction under way) nothing else; a
    stream no block holds has no cache left."""
    blocks = list(cache._blocks)
    for block in blocks:
        assert cache.batches_of(block) == appends.blocks.get(block.block_id, {})
    live = {b.block_id for b in blocks}
    for stream_id in range(1, STREAMS + 1):
        held = cache._streams.get(stream_id) or cache._deleted.get(stream_id)
        kept = appends.kept(stream_id, live)
        if held is None:
            assert not kept
            continue
        everything = appends.kept(stream_id, appends.blocks)
        got = held.batches[held.gone :]  # the slots before are emptied, under way
        assert len(held.ends) == len(held.batches)
        assert list(held.ends[held.gone :]) == [b.end_offset for b in got]
        assert got == everything[len(everything) - len(got) :]  # a suffix: no slot reused
        assert len(got) >= len(kept) and (len(got) == len(kept) or not exact)
        if stream_id in cache._streams:
            first = cache.first_offset(stream_id)
            assert first is not None
            assert cache.read(stream_id, first, 1 << 30, 1 << 40) == got


_EVICTION_GAP = st.one_of(
    st.tuples(st.just("append"), st.integers(1, STREAMS), st.integers(1, 3)),
    st.tuples(st.just("seal"), st.just(0), st.just(0)),
    st.tuples(st.just("upload"), st.just(0), st.just(0)),
    st.tuples(st.just("read_block"), st.just(0), st.integers(STREAM_COST + 1, STREAM_COST + 4)),
    st.tuples(st.just("delete"), st.integers(1, STREAMS), st.just(0)),
    st.tuples(st.just("trim"), st.integers(1, STREAMS), st.integers(0, 5)),
    st.tuples(st.just("read"), st.integers(1, STREAMS), st.integers(0, 40)),
)


@settings(max_examples=300, deadline=None)
@given(
    blocks=st.lists(_SOME_APPENDS, min_size=1, max_size=5),
    group_batches=st.integers(1, STREAM_COST + 6),
    max_bytes=st.integers(0, 200),
    data=st.data(),
)
def test_an_eviction_in_groups_drops_exactly_its_blocks_whatever_falls_between_its_holds(
    blocks: list[list[int]], group_batches: int, max_bytes: int, data: st.DataObject
) -> None:
    cache = LogCache(max_bytes)
    appends = _Appends(cache)
    for streams in blocks:
        for stream_id in streams:
            appends.append(stream_id, 1 + stream_id % 2)
        cache.seal()

    def upload() -> None:
        block = cache.next_to_upload()
        if block is not None:
            cache.mark_uploaded(block)  # its evictions queued behind those under way

    def run_gap() -> None:
        for name, stream_id, number in data.draw(st.lists(_EVICTION_GAP, max_size=6)):
            if name == "append":
                appends.append(stream_id, number)
            elif name == "seal":
                cache.seal()
            elif name == "upload":
                upload()
            elif name == "read_block":
                # A later block read for its upload, in groups of its own.
                block = cache.next_to_upload()
                if block is not None:
                    got = read_block_shares(threading.Lock(), cache, block, number)
                    assert got == appends.blocks.get(block.block_id, {})
                    assert read_block_ends(threading.Lock(), cache, block, 2) == {
                        s: b[-1].end_offset for s, b in got.items()
                    }
            else:
                _delete_trim_or_read(cache, name, stream_id, number)
        _holds_what_its_blocks_hold(cache, appends, exact=False)
        queued_since.append(cache.evicting)

    for _ in range(data.draw(st.integers(1, len(blocks)))):
        upload()
    queued_since = [cache.evicting]
    """Per gap, whether an eviction waited once it was over (the last:
    one queued after the drain's last hold, for its own upload to drop)."""
    lock = _Interleaving(run_gap)
    evict_in_groups(lock, cache, group_batches)
    assert cache.evicting == queued_since[-1]
    evict_in_groups(threading.Lock(), cache, group_batches)
    _holds_what_its_blocks_hold(cache, appends, exact=True)


def test_an_evictions_hold_drops_a_bounded_group() -> None:
    cache = LogCache(0)
    appends = _Appends(cache)
    for i in range(1000):
        appends.append(1 + i % 3 if i < 900 else 4 + i % 50)  # long shares, then short ones
    block = cache.seal()
    assert block is not None
    cache.mark_uploaded(block)
    parts = []
    while cache.evicting:
        parts.append(cache.evict_queued(64, STREAM_COST))
    for part in parts:
        assert sum(len(dropped) + STREAM_COST for dropped in part) <= 64
    assert sorted(b for part in parts for dropped in part for b in dropped) == sorted(
        b for batches in appends.blocks[block.block_id].values() for b in batches
    )
    assert not cache._streams


def test_a_share_cut_across_holds_deletes_its_streams_front_once() -> None:
    # Deleting each hold's piece moved the rest of the stream's list (and
    # of its ends) every hold: one hot stream of small batches cost its
    # list's length a hold, some hundred holds a block.
    cache = LogCache(0)
    appends = _Appends(cache)
    for _ in range(1000):
        appends.append(1)
    evicted = cache.seal()
    for _ in range(300):
        appends.append(1)
    kept = cache.seal()
    assert evicted is not None and kept is not None
    cache.mark_uploaded(evicted)
    deletions = []

    class _Counted(list[StoredBatch]):
        def __delitem__(self, key: SupportsIndex | slice) -> None:
            deletions.append(key)
            super().__delitem__(key)

    held = cache._streams[1]
    held.batches = _Counted(held.batches)
    everything = appends.kept(1, [evicted.block_id, kept.block_id])
    while cache.evicting:
        cache.evict_queued(64, STREAM_COST)
        # Between holds: from the first batch still cached to the last, as
        # appended; the later block's share where its lookup finds it.
        first = cache.first_offset(1)
        assert first is not None and cache.covers(1, first)
        assert cache.read(1, first, 1 << 30, 1 << 40) == [
            b for b in everything if b.base_offset >= first
        ]
        assert cache.batches_of(kept) == appends.blocks[kept.block_id]
    assert len(deletions) == 1
    assert held.batches == appends.blocks[kept.block_id][1]


@contextmanager
def _switching_often() -> Iterator[None]:
    """Threads handed the GIL every few microseconds: many more
    interleavings between the read's steps and the others' a second."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def test_uploads_read_their_blocks_while_threads_append_evict_delete_and_read() -> None:
    cache = LogCache(3000)
    appends = _Appends(cache)
    lock = threading.Lock()
    changed = threading.Condition(lock)
    stop = threading.Event()
    read: list[CacheBlock] = []
    """Blocks read and checked, for the committer to mark uploaded in order."""
    wrong: list[str] = []
    rng = random.Random(157)
    blocks_wanted = 150

    def appender() -> None:
        stream = 0
        while not stop.is_set():
            with lock:
                for _ in range(rng.randrange(1, 40)):
                    stream = stream % 8 + 1
                    appends.append(stream, rng.randrange(1, 3))
                if rng.random() < 0.05 and cache.seal() is not None:
                    changed.notify_all()

    def uploader() -> None:
        uploaded = 0
        while uploaded < blocks_wanted and not stop.is_set():
            with lock:
                # The next sealed block not read yet (the committer may be
                # behind: its older blocks are marked uploaded meanwhile).
                following = None
                while following is None and not stop.is_set():
                    after = read[-1] if read else None
                    following = (
                        cache.next_to_upload() if after is None else cache.sealed_after(after)
                    )
                    if following is None:
                        changed.wait(0.1)
                if following is None:
                    return
                expected = {s: list(b) for s, b in appends.blocks[following.block_id].items()}
            got = read_block_shares(lock, cache, following, STREAM_COST + 8)
            if got != expected:
                wrong.append(f"block {following.block_id}")
            with lock:
                read.append(following)
                changed.notify_all()
            uploaded += 1

    committed: list[CacheBlock] = []

    def committer() -> None:
        while len(committed) < blocks_wanted and not stop.is_set():
            with lock:
                while len(read) <= len(committed) and not stop.is_set():
                    changed.wait(0.1)
                if stop.is_set():
                    return
                cache.mark_uploaded(read[len(committed)])
            # Evicts a group a hold while the next block is read.
            evict_in_groups(lock, cache, STREAM_COST + 8)
            committed.append(read[len(committed)])

    def deleter_and_reader() -> None:
        while not stop.is_set():
            with lock:
                stream_id = rng.randrange(1, 9)
                if rng.random() < 0.01:
                    cache.drop_stream(stream_id)
                    continue
                first = cache.first_offset(stream_id)
                if first is None:
                    continue
                # From the first batch still cached to the last appended,
                # every one as appended: none missing, none in a wrong slot.
                got = cache.read(stream_id, first, 1 << 30, 1 << 40)
                ends = [first, *(b.end_offset for b in got)]
                if ends[-1] != appends.next[stream_id] or any(
                    appends.at[stream_id, b.base_offset] is not b or b.base_offset != end
                    for b, end in zip(got, ends, strict=False)
                ):
                    wrong.append(f"stream {stream_id} read from {first}")

    def noting(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as error:
                wrong.append(repr(error))
                raise

        return run

    threads = [threading.Thread(target=noting(t)) for t in (uploader, committer)]
    helpers = [threading.Thread(target=noting(t)) for t in (appender, deleter_and_reader)]
    with _switching_often():
        for thread in threads + helpers:
            thread.start()
        try:
            for thread in threads:
                thread.join(120)
        finally:
            stop.set()
            for thread in threads + helpers:
                thread.join(30)
    assert not wrong
    assert len(read) == len(committed) == blocks_wanted
    assert not cache.evicting
    # Each stream's list holds its batches of the blocks left, no more.
    live = {block.block_id for block in cache._blocks}
    for stream_id in range(1, 9):
        held = cache._streams.get(stream_id) or cache._deleted.get(stream_id)
        assert (held.batches if held else []) == appends.kept(stream_id, live)


def test_an_eviction_hands_the_evicted_batches_back() -> None:
    cache = LogCache(10)
    appends = _Appends(cache)
    for i in range(30):
        appends.append(1 + i % 4)
    first = cache.seal()
    for i in range(30):
        appends.append(1 + i % 5)
    second = cache.seal()
    assert first is not None and second is not None
    cache.mark_uploaded(second)
    assert not cache.evicting  # the older block is not uploaded: nothing goes
    cache.mark_uploaded(first)
    assert cache.size == 0 and cache.evicting
    evicted = cache.evict_all()
    gone = [appends.blocks[block.block_id] for block in (first, second)]
    assert sorted(b for batches in evicted for b in batches) == sorted(
        b for by_stream in gone for batches in by_stream.values() for b in batches
    )
    assert cache.size == 0


class _Watched(bytes):
    """A payload that notes, as it is freed, whether the store's lock is held."""

    freed_under_lock: ClassVar[list[bool]] = []
    lock: ClassVar[threading.Lock | None] = None

    def __del__(self) -> None:
        assert self.lock is not None
        _Watched.freed_under_lock.append(self.lock.locked())


def test_an_upload_frees_the_batches_it_evicts_after_releasing_the_stores_lock(
    tmp_path: Path,
) -> None:
    config = StreamStoreConfig(
        upload_interval_s=3600.0, compaction_interval_s=3600.0, log_cache_bytes=0
    )
    store = StreamStore.open(tmp_path / "node", LocalStore(str(tmp_path / "bucket")), config)
    try:
        _Watched.lock = store._state.lock
        _Watched.freed_under_lock.clear()
        stream_id = store.create_stream()
        store.open_stream(stream_id, 1)
        for offset in range(50):
            store.append(stream_id, offset, offset, _Watched(b"x" * 30))
        assert store.flush()
        assert store.log_cache_usage().size == 0  # uploaded, and evicted
        # Every one: the WAL's writer and sync threads keep no settled
        # group (a group's payloads) while they wait for the next.
        assert len(_Watched.freed_under_lock) == 50
        assert not any(_Watched.freed_under_lock)
    finally:
        store.close(flush=False)


def _store_evicting_all(tmp_path: Path) -> tuple[StreamStore, int]:
    """A store keeping nothing uploaded in its log cache, one stream of 20
    batches appended, not uploaded yet."""
    config = StreamStoreConfig(
        upload_interval_s=3600.0, compaction_interval_s=3600.0, log_cache_bytes=0
    )
    store = StreamStore.open(tmp_path / "node", LocalStore(str(tmp_path / "bucket")), config)
    stream_id = store.create_stream()
    store.open_stream(stream_id, 1)
    for offset in range(20):
        store.append(stream_id, offset, offset, b"x" * 30)
    return store, stream_id


def test_a_flush_returns_once_its_uploads_evictions_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The eviction held back after the commit (fault injection: it runs
    # in milliseconds, before a flush waiting on the store could look).
    committed, go_on = threading.Event(), threading.Event()
    evict = evict_in_groups

    def held_back(lock: AbstractContextManager[object], cache: LogCache) -> None:
        committed.set()
        go_on.wait(30)
        evict(lock, cache)

    monkeypatch.setattr(uploader, "evict_in_groups", held_back)
    store, stream_id = _store_evicting_all(tmp_path)
    try:
        store.flush(timeout=0)  # seals the block: the upload starts
        assert committed.wait(30)
        assert store.remote_end_offset(stream_id) == 20
        # Committed, its bytes counted off, its batches still in the lists.
        assert store.log_cache_usage().size == 0
        assert store.flush(timeout=0.05) is False
        go_on.set()
        assert store.flush(timeout=30) is True
        with store._state.lock:
            assert not store._state.cache.evicting
            assert store._state.cache.first_offset(stream_id) is None
    finally:
        go_on.set()
        store.close(flush=False)


def test_a_flush_is_told_of_an_eviction_that_failed_halfway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its wait for the eviction ends with the store's failure, not with
    # its timeout: nothing will drain the queue after the uploader stopped.
    def one_group_then_fail(lock: AbstractContextManager[object], cache: LogCache) -> None:
        with lock:
            cache.evict_queued(4, STREAM_COST)
        raise MemoryError("planted")

    monkeypatch.setattr(uploader, "evict_in_groups", one_group_then_fail)
    store, stream_id = _store_evicting_all(tmp_path)
    try:
        with pytest.raises(StoreFailed):
            store.flush(timeout=30)
        assert store.remote_end_offset(stream_id) == 20  # committed before it failed
    finally:
        store.close(flush=False)
