"""Object-store outages, timeouts and lost responses: appends keep being
acknowledged from the WAL, nothing is lost, the WAL is not trimmed before
its data is in a committed object, and uploads resume when the store heals."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from s3stream import LOCAL_LATER, StoreClosed, StreamStore, StreamStoreConfig
from s3stream.store import MemoryStore, ObjectStoreError
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_stream_store import expected, fill, new_stream, payload, read_all

TIMEOUT = 30

CONFIG = StreamStoreConfig(
    upload_bytes=8 * 1024,
    upload_interval_s=0.05,
    compaction_interval_s=3600,
    wal_segment_bytes=32 * 1024,
)


LITTLE_ROOM = StreamStoreConfig(
    upload_bytes=4096, upload_interval_s=0.05, max_unuploaded_bytes=16 * 1024
)
"""A 16 KiB unuploaded bound: a few appends through an outage pass it."""


@contextmanager
def down_with_little_room(tmp_path: Path, faulty: FaultyStore) -> Iterator[tuple[StreamStore, int]]:
    """A LITTLE_ROOM store and a stream of it, its object store taking no uploads."""
    with StreamStore.open(tmp_path / "node", faulty, LITTLE_ROOM) as store:
        stream = new_stream(store)
        faulty.fail("put")
        yield store, stream


@pytest.fixture
def faulty() -> FaultyStore:
    return FaultyStore(MemoryStore())


@pytest.fixture
def node(tmp_path: Path, faulty: FaultyStore) -> Iterator[StreamStore]:
    store = StreamStore.open(tmp_path / "node", faulty, CONFIG)
    yield store
    faulty.heal()
    store.close(flush=False)


def test_appends_are_acknowledged_through_an_outage(
    tmp_path: Path, faulty: FaultyStore, node: StreamStore
) -> None:
    stream = new_stream(node)
    fill(node, stream, 10, size=500)
    assert node.flush(timeout=30)
    committed = node.remote_end_offset(stream)
    faulty.fail()  # every operation fails from now on
    fill(node, stream, 200, size=500)  # 100 KB: many upload attempts, all failing
    assert node.end_offset(stream) == 630
    assert not node.flush(timeout=0.5)
    assert node.stats.upload_errors > 0
    assert node.remote_end_offset(stream) == committed
    segments = node.wal.segments
    assert len(segments) > 3  # nothing trimmed: the WAL holds what the bucket does not
    assert read_all(node, stream) == expected(stream, 0, 210, size=500)
    faulty.heal()
    assert node.flush(timeout=30)  # uploads resume by themselves
    assert node.remote_end_offset(stream) == 630
    assert len(node.wal.segments) <= 2
    with StreamStore.open(tmp_path / "fresh", faulty.inner, CONFIG) as fresh:
        assert read_all(fresh, stream) == expected(stream, 0, 210, size=500)


def test_a_restart_during_an_outage_recovers_from_the_wal(
    tmp_path: Path, faulty: FaultyStore
) -> None:
    first = StreamStore.open(tmp_path / "node", faulty, CONFIG)
    stream = new_stream(first)
    fill(first, stream, 5)
    assert first.flush(timeout=30)
    faulty.fail("put")
    fill(first, stream, 50)
    first.close(timeout=0.3)  # cannot upload; the WAL keeps it all
    faulty.heal()
    with StreamStore.open(tmp_path / "node", faulty, CONFIG) as second:
        assert second.recovery.replayed_appends == 50
        assert second.flush(timeout=30)
    with StreamStore.open(tmp_path / "fresh", faulty.inner, CONFIG) as fresh:
        assert read_all(fresh, stream) == expected(stream, 0, 55)


def test_lost_put_responses_never_duplicate_data(
    tmp_path: Path, faulty: FaultyStore, node: StreamStore
) -> None:
    stream = new_stream(node)
    faulty.lose_put_responses = True  # every put lands, every answer is lost
    fill(node, stream, 40)
    assert not node.flush(timeout=0.5)
    faulty.heal()
    assert node.flush(timeout=30)
    with StreamStore.open(tmp_path / "fresh", faulty.inner, CONFIG) as fresh:
        assert read_all(fresh, stream) == expected(stream, 0, 40)
        ranges = fresh.manifest.state.ranges[stream].entries
        for (_, end, _), (start, _, _) in itertools.pairwise(ranges):
            assert end == start  # no overlapping (duplicated) ranges


def test_failed_reads_are_clear_errors_and_reading_resumes(
    tmp_path: Path, faulty: FaultyStore
) -> None:
    with StreamStore.open(tmp_path / "writer", faulty.inner, CONFIG) as writer:
        stream = new_stream(writer)
        fill(writer, stream, 20)
    with StreamStore.open(tmp_path / "reader", faulty, CONFIG) as reader:
        faulty.fail("get")
        with pytest.raises(ObjectStoreError) as caught:
            reader.fetch(stream, 0)
        assert caught.value.transient
        other = new_stream(reader)  # writing still works meanwhile
        fill(reader, other, 3)
        faulty.heal()
        assert read_all(reader, stream) == expected(stream, 0, 20)


def test_appends_wait_when_too_much_is_not_uploaded(tmp_path: Path, faulty: FaultyStore) -> None:
    with StreamStore.open(tmp_path / "node", faulty, LITTLE_ROOM) as store:
        stream = new_stream(store)
        faulty.fail("put")
        done = threading.Event()

        def produce() -> None:
            fill(store, stream, 100, size=1000)  # 100 KB, far over the bound
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        assert not done.wait(1.0)  # held back while the store is down
        assert store.end_offset(stream) < 300
        faulty.heal()
        assert done.wait(60)
        producer.join()
        assert store.flush(timeout=30)
        assert read_all(store, stream) == expected(stream, 0, 100, size=1000)


def test_async_appends_wait_for_room_without_blocking_the_loop(
    tmp_path: Path, faulty: FaultyStore
) -> None:
    """An async append over the unuploaded bound is accepted at once (its
    offsets stay valid) and its future resolves only once uploads made
    room; the event loop keeps running meanwhile."""
    with down_with_little_room(tmp_path, faulty) as (store, stream):

        async def main() -> None:
            futures = [
                asyncio.ensure_future(
                    store.submit_async(stream, offset, offset, payload(stream, offset, 1000))
                )
                for offset in range(100)  # 100 KB, far over the bound
            ]
            ticks = 0
            while not all(f.done() for f in futures[:10]) and ticks < 1000:
                await asyncio.sleep(0.001)  # the loop runs while the appends wait
                ticks += 1
            await asyncio.sleep(0.5)
            assert not futures[-1].done()  # held back while the store is down
            assert store.next_offset(stream) == 100  # every append accepted, in order
            faulty.heal()
            assert await asyncio.wait_for(asyncio.gather(*futures), 60) == list(range(1, 101))

        asyncio.run(main())
        assert store.flush(timeout=30)
        assert read_all(store, stream) == expected(stream, 0, 100, per_batch=1, size=1000)


def test_async_appends_paced_later_are_answered_once_durable_past_the_bound(
    tmp_path: Path, faulty: FaultyStore
) -> None:
    """With Pacing.LATER an async append over the unuploaded bound is
    answered once it is in the WAL, as submit with it returns: the wait for
    room is its caller's (wait_for_room). One paced as by default after
    them is held back until uploads make room."""
    with down_with_little_room(tmp_path, faulty) as (store, stream):

        async def main() -> None:
            later = [
                store.submit_async(
                    stream, offset, offset, payload(stream, offset, 1000), LOCAL_LATER
                )
                for offset in range(40)  # 40 KB, far over the bound
            ]
            assert await asyncio.wait_for(asyncio.gather(*later), 30) == list(range(1, 41))
            assert not store.flush(timeout=0)  # still nothing uploaded
            waiting = store.submit_async(stream, 40, 40, payload(stream, 40, 1000))
            await asyncio.sleep(0.5)
            assert not waiting.done()  # held back while the store is down
            faulty.heal()
            assert await asyncio.wait_for(waiting, 60) == 41

        asyncio.run(main())
        assert read_all(store, stream) == expected(stream, 0, 41, per_batch=1, size=1000)


def test_appends_waiting_for_room_leave_the_loops_executor_free(
    tmp_path: Path, faulty: FaultyStore
) -> None:
    """Async appends held back by an outage (more of them than the loop's
    default executor has threads) wait for room off that executor: a call
    the loop runs there meanwhile still runs, and so does a close made
    through it (as `tidelog serve` closes its engine), which answers the
    waiting appends StoreClosed instead of leaving them hung."""
    store = StreamStore.open(tmp_path / "node", faulty, LITTLE_ROOM)
    # Ends the waits should the close below never run (the failure this
    # test looks for), so that the loop's executor can shut down at all.
    rescue = threading.Timer(120, lambda: store.close(flush=False))
    rescue.start()
    try:
        stream = new_stream(store)
        faulty.fail("put")

        async def main() -> list[int | BaseException]:
            futures = [
                store.submit_async(stream, offset, offset, payload(stream, offset, 1000))
                for offset in range(64)  # far over the bound, and more than the executor's threads
            ]
            await asyncio.sleep(1.0)  # the appends are durable and waiting for room
            assert not futures[-1].done()
            loop = asyncio.get_running_loop()
            assert (
                await asyncio.wait_for(loop.run_in_executor(None, lambda: "ran"), TIMEOUT) == "ran"
            )
            await asyncio.wait_for(
                loop.run_in_executor(None, lambda: store.close(flush=False)), TIMEOUT
            )
            return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), TIMEOUT)

        outcomes = asyncio.run(main())
    finally:
        rescue.cancel()
        faulty.heal()
        store.close(flush=False)
    acked = [o for o in outcomes if isinstance(o, int)]
    assert acked == list(range(1, len(acked) + 1))  # the ones answered before the bound was hit
    assert all(isinstance(o, StoreClosed) for o in outcomes[len(acked) :])
    assert len(acked) < len(outcomes)
