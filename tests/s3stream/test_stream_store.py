"""StreamStore: appends, reads, recovery, remote durability, trims and errors."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from s3stream import (
    Fenced,
    OffsetMismatch,
    OffsetOutOfRange,
    StreamNotFound,
    StreamNotOpen,
    StreamStore,
    StreamStoreConfig,
)
from s3stream.store import ObjectStore
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.faults import FaultyStore

Open = Callable[..., StreamStore]


@pytest.fixture
def open_store(tmp_path: Path, any_store: ObjectStore) -> Iterator[Open]:
    """Opens StreamStores on one object store; closes whatever is left open."""
    opened: list[StreamStore] = []

    def make(data_dir: str = "node", **config: object) -> StreamStore:
        config.setdefault("upload_interval_s", 3600.0)  # tests flush explicitly
        config.setdefault("compaction_interval_s", 3600.0)
        # A slow read on a loaded machine answered empty is not what these test.
        config.setdefault("remote_fetch_max_wait_ms", 60_000)
        store = StreamStore.open(tmp_path / data_dir, any_store, StreamStoreConfig(**config))  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close(flush=False)


def payload(stream_id: int, offset: int, size: int = 100) -> bytes:
    head = f"{stream_id}:{offset}:".encode()
    return head + bytes((offset + i) % 256 for i in range(size - len(head)))


def fill(
    store: StreamStore, stream_id: int, count: int, per_batch: int = 3, size: int = 100
) -> None:
    for _ in range(count):
        base = store.next_offset(stream_id)
        store.append(stream_id, base, base + per_batch - 1, payload(stream_id, base, size))


def read_all(
    store: StreamStore, stream_id: int, max_bytes: int = 4096
) -> list[tuple[int, int, bytes]]:
    out = []
    offset = store.start_offset(stream_id)
    while offset < store.end_offset(stream_id):
        result = store.fetch(stream_id, offset, max_bytes)
        assert result.batches, f"no data at {offset}"
        out += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        offset = result.next_offset
    return out


def expected(
    stream_id: int, start: int, count: int, per_batch: int = 3, size: int = 100
) -> list[tuple[int, int, bytes]]:
    return [
        (o, o + per_batch, payload(stream_id, o, size))
        for o in range(start, start + count * per_batch, per_batch)
    ]


def new_stream(store: StreamStore, epoch: int = 1) -> int:
    stream_id = store.create_stream()
    store.open_stream(stream_id, epoch)
    return stream_id


def test_tail_reads_come_from_the_log_cache(open_store: Open) -> None:
    store = open_store()
    a, b = new_stream(store), new_stream(store)
    fill(store, a, 20)
    fill(store, b, 5, per_batch=1)
    gets = store.reader.gets
    assert read_all(store, a) == expected(a, 0, 20)
    assert read_all(store, b) == expected(b, 0, 5, per_batch=1)
    assert store.reader.gets == gets  # no object-store read
    assert (store.end_offset(a), store.remote_end_offset(a)) == (60, 0)


def test_flush_makes_appends_remotely_durable(open_store: Open, any_store: ObjectStore) -> None:
    store = open_store()
    stream = new_stream(store)
    fill(store, stream, 10)
    assert store.remote_end_offset(stream) == 0
    assert store.flush(timeout=30)
    assert store.remote_end_offset(stream) == 30
    assert [i.key for i in any_store.list(OBJECT_PREFIX)]  # an object exists


def test_fresh_data_dir_recovers_everything_uploaded(open_store: Open) -> None:
    first = open_store("one", block_bytes=512)
    streams = [new_stream(first) for _ in range(4)]
    for i, stream in enumerate(streams):
        fill(first, stream, 10 + i)
    first.close()  # flushes
    second = open_store("two")  # a new machine: no WAL, only the bucket
    assert second.recovery.replayed_appends == 0
    assert second.streams() == streams
    for i, stream in enumerate(streams):
        assert read_all(second, stream, max_bytes=300) == expected(stream, 0, 10 + i)
    assert second.reader.gets > 0  # served from objects


def test_wal_replays_what_was_not_uploaded(open_store: Open) -> None:
    first = open_store()
    stream = new_stream(first)
    fill(first, stream, 5)
    assert first.flush(timeout=30)
    fill(first, stream, 7)
    first.close(flush=False)  # the last 7 appends are only in the WAL
    second = open_store()
    assert second.recovery.replayed_appends == 7
    assert read_all(second, stream) == expected(stream, 0, 12)
    assert second.flush(timeout=30)  # the replayed appends are uploaded again
    assert second.remote_end_offset(stream) == 36


def test_wal_is_trimmed_once_its_data_is_committed(open_store: Open) -> None:
    store = open_store(wal_segment_bytes=64 * 1024)
    stream = new_stream(store)
    fill(store, stream, 300, size=1000)
    assert len(store.wal.segments) > 3
    assert store.flush(timeout=30)
    assert len(store.wal.segments) <= 2  # the active segment (and the one it rolled from)


def test_appends_are_checked(open_store: Open) -> None:
    store = open_store()
    stream = store.create_stream()
    with pytest.raises(StreamNotOpen):
        store.append(stream, 0, 0, b"x")
    store.open_stream(stream, 1)
    store.append(stream, 0, 4, b"x")
    with pytest.raises(OffsetMismatch) as caught:
        store.append(stream, 4, 5, b"y")
    assert (caught.value.expected, caught.value.found) == (5, 4)
    with pytest.raises(StreamNotFound):
        store.append(999, 0, 0, b"x")
    with pytest.raises(ValueError, match="last offset"):
        store.append(stream, 5, 4, b"x")
    with pytest.raises(OffsetOutOfRange):
        store.fetch(stream, 6)
    assert store.fetch(stream, 5).batches == []  # the end: nothing yet, not an error
    assert [bytes(b.payload) for b in store.fetch(stream, 2).batches] == [b"x"]


def test_fetch_returns_at_least_one_batch_and_respects_max_bytes(open_store: Open) -> None:
    store = open_store()
    stream = new_stream(store)
    fill(store, stream, 10, size=100)
    assert len(store.fetch(stream, 0, max_bytes=1).batches) == 1
    assert len(store.fetch(stream, 0, max_bytes=350).batches) == 3
    store.flush(timeout=30)
    fresh = open_store("cold")
    assert len(fresh.fetch(stream, 0, max_bytes=1).batches) == 1
    assert len(fresh.fetch(stream, 3, max_bytes=350).batches) == 3


def test_trim_is_durable_and_hides_the_prefix(open_store: Open) -> None:
    store = open_store()
    stream = new_stream(store)
    fill(store, stream, 10)
    store.trim(stream, 9)
    with pytest.raises(OffsetOutOfRange):
        store.fetch(stream, 8)
    assert read_all(store, stream) == expected(stream, 9, 7)
    with pytest.raises(OffsetOutOfRange):
        store.trim(stream, 31)
    store.close(flush=False)
    again = open_store()  # from the WAL's trim record
    assert again.start_offset(stream) == 9
    assert again.flush(timeout=30)
    again.close()
    fresh = open_store("fresh")  # from the manifest
    assert fresh.start_offset(stream) == 9
    assert read_all(fresh, stream) == expected(stream, 9, 7)


def test_deleted_stream_is_gone_after_restart(open_store: Open) -> None:
    store = open_store()
    keep, drop = new_stream(store), new_stream(store)
    fill(store, keep, 3)
    fill(store, drop, 3)
    store.delete_stream(drop)
    with pytest.raises(StreamNotFound):
        store.fetch(drop, 0)
    store.close(flush=False)
    again = open_store()
    assert again.streams() == [keep]
    assert read_all(again, keep) == expected(keep, 0, 3)


def test_stream_epochs_fence_older_openers(open_store: Open) -> None:
    store = open_store()
    stream = new_stream(store, epoch=3)
    store.open_stream(stream, 3)  # the same owner reopening
    with pytest.raises(Fenced) as caught:
        store.open_stream(stream, 2)
    assert (caught.value.epoch, caught.value.newer_epoch) == (2, 3)
    store.close()
    with pytest.raises(Fenced):
        open_store("other").open_stream(stream, 1)


def test_a_newer_writer_fences_the_older(open_store: Open) -> None:
    old = open_store("old")
    stream = new_stream(old)
    fill(old, stream, 4)
    assert old.flush(timeout=30)
    new = open_store("new")
    assert new.manifest.epoch > old.manifest.epoch
    fill(old, stream, 2)  # still acknowledged from the old writer's WAL ...
    with pytest.raises(Fenced):
        old.flush(timeout=30)  # ... but its next commit finds the newer epoch
    with pytest.raises(Fenced):
        fill(old, stream, 1)
    assert read_all(new, stream) == expected(stream, 0, 4)
    new.open_stream(stream, 2)
    fill(new, stream, 1)
    assert new.flush(timeout=30)


def test_async_appends_and_fetches(open_store: Open) -> None:
    store = open_store()
    streams = [new_stream(store) for _ in range(3)]

    async def produce(stream: int, count: int) -> None:
        for offset in range(count):
            end = await store.append_async(stream, offset, offset, payload(stream, offset))
            assert end == offset + 1

    async def main() -> None:
        await asyncio.gather(*(produce(s, 50) for s in streams))
        for stream in streams:
            result = await store.fetch_async(stream, 0, 10**6)
            assert [b.base_offset for b in result.batches] == list(range(50))
        store.flush(timeout=30)
        cold = open_store("cold")
        result = await cold.fetch_async(streams[0], 10, 10**6)
        assert [b.base_offset for b in result.batches] == list(range(10, 50))

    asyncio.run(main())


def test_async_reads_at_the_end_or_out_of_range_need_no_fetch_thread(open_store: Open) -> None:
    """A caught-up consumer reads at the end of each partition; with the
    data in objects only (a new machine: an empty log cache), such reads,
    and reads out of range, are answered at once, never on a fetch thread
    (here shut down, so a read sent to one would fail)."""
    first = open_store("one")
    stream = new_stream(first)
    fill(first, stream, 4)
    first.close()  # flushes
    cold = open_store("two")
    end = cold.next_offset(stream)
    cold._fetcher._pool.shutdown()

    async def main() -> None:
        at_end = await cold.fetch_async(stream, end, 10**6)
        assert (at_end.batches, at_end.next_offset) == ([], end)
        with pytest.raises(OffsetOutOfRange):
            await cold.fetch_async(stream, end + 1, 10**6)

    asyncio.run(main())


class CountingGets(FaultyStore):
    """Counts how many object GETs are in flight at once; each takes a while."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.most_in_flight = 0
        self._count_lock = threading.Lock()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        with self._count_lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            threading.Event().wait(0.02)  # a slow store: lets concurrent GETs overlap
            return super().get(key, start, end)
        finally:
            with self._count_lock:
                self.in_flight -= 1


@pytest.mark.parametrize("readahead", [8, 0])
def test_sequential_cold_reads_run_several_gets_at_once(
    tmp_path: Path, memory_store: ObjectStore, readahead: int
) -> None:
    config = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600, block_bytes=1024)
    with StreamStore.open(tmp_path / "w", memory_store, config) as writer:
        stream = new_stream(writer)
        fill(writer, stream, 200, per_batch=1, size=500)  # > the 64 KiB an index read takes
    counting = CountingGets(memory_store)
    reader_config = dataclasses.replace(
        config, readahead_bytes=readahead * 1024, readahead_span_bytes=1024
    )
    with StreamStore.open(tmp_path / "r", counting, reader_config) as reader:
        assert read_all(reader, stream, max_bytes=1024) == expected(stream, 0, 200, 1, 500)
    if readahead:
        assert counting.most_in_flight >= 3
        assert reader.block_cache.hits > 0
    else:
        assert counting.most_in_flight == 1


def test_a_cold_reader_does_not_stall_appends(tmp_path: Path, memory_store: ObjectStore) -> None:
    gate = threading.Event()
    entered = threading.Event()

    class SlowGets(FaultyStore):
        def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
            if key.startswith(OBJECT_PREFIX):
                entered.set()
                gate.wait(30)
            return super().get(key, start, end)

    store_under = SlowGets(memory_store)
    config = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
    with StreamStore.open(tmp_path / "a", memory_store, config) as writer:
        old = new_stream(writer)
        fill(writer, old, 10)
    with StreamStore.open(tmp_path / "b", store_under, config) as store:
        hot = new_stream(store)
        reader = threading.Thread(target=store.fetch, args=(old, 0))
        reader.start()
        assert entered.wait(30)  # the cold read is stuck in the object store
        fill(store, hot, 20)  # appends are acknowledged meanwhile
        assert store.end_offset(hot) == 60 and reader.is_alive()
        gate.set()
        reader.join(30)
        assert store.flush(timeout=30)  # and uploads too


def test_close_is_idempotent_and_refuses_later_use(open_store: Open) -> None:
    from s3stream import StoreClosed

    store = open_store()
    stream = new_stream(store)
    store.close()
    store.close()
    with pytest.raises(StoreClosed):
        store.append(stream, 0, 0, b"x")


def test_upload_happens_by_size_and_by_age(open_store: Open) -> None:
    by_size = open_store("s", upload_bytes=4096)
    stream = new_stream(by_size)
    fill(by_size, stream, 100, per_batch=1, size=100)
    # 10 000 bytes at a 4 KiB threshold: at least two uploads happen on their own.
    deadline = threading.Event()
    for _ in range(300):
        if by_size.remote_end_offset(stream) >= 80:
            break
        deadline.wait(0.05)
    assert by_size.remote_end_offset(stream) >= 80
    by_age = open_store("a", upload_interval_s=0.05)
    other = new_stream(by_age)
    fill(by_age, other, 1)
    for _ in range(300):
        if by_age.remote_end_offset(other) == 3:
            break
        deadline.wait(0.05)
    assert by_age.remote_end_offset(other) == 3


def test_store_directory_default_is_under_the_data_dir(tmp_path: Path) -> None:
    config = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)
    with StreamStore.open(tmp_path / "d", config=config) as store:
        stream = new_stream(store)
        fill(store, stream, 2)
    assert os.path.isdir(tmp_path / "d" / "objects" / "manifest")
    with StreamStore.open(tmp_path / "d", config=config) as store:
        assert read_all(store, stream) == expected(stream, 0, 2)


def test_stored_bytes_counts_every_batch_once_wherever_it_is(open_store: Open) -> None:
    """Batches waiting in the log cache and the WAL count by their size; once
    uploaded, by their committed range (the batches and their index); a
    trim drops only whole ranges (as Kafka drops whole segments); a restart
    that replays the WAL counts what it re-uploads."""
    store = open_store()
    sid = new_stream(store)
    assert store.stored_bytes(sid) == 0
    fill(store, sid, 4, size=100)
    assert store.stored_bytes(sid) == 400
    assert store.flush(timeout=10)
    uploaded = store.stored_bytes(sid)
    assert uploaded >= 400  # the committed range, as stored
    fill(store, sid, 2, size=50)
    assert store.stored_bytes(sid) == uploaded + 100
    store.trim(sid, 3)  # inside the committed range: it stays whole
    assert store.stored_bytes(sid) == uploaded + 100
    store.close(flush=False)
    reopened = open_store()
    reopened.open_stream(sid, 2)
    assert reopened.flush(timeout=10)
    recovered = reopened.stored_bytes(sid)
    assert recovered - uploaded >= 100  # the replayed batches, uploaded
    reopened.trim(sid, 12)  # past the whole first range
    assert reopened.stored_bytes(sid) == recovered - uploaded
