"""The pipelined fsync policy: the next group is written while the previous
one's fdatasync runs, and an append is acknowledged only after a sync that
began once its bytes were written.

Every segment write and sync is wrapped: a write is noted when it returns,
a sync notes how far its segment was written when it began, and each
acknowledgement checks, as it happens, that a finished sync covered it.
Syncs are slowed so that writes overlap them.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest

from tests.wal.conftest import payloads
from wal import Append, LogFailed, LogIOError, Position, WalError, WriteAheadLog
from wal.format import RECORD_HEADER_SIZE
from wal.group_commit import STREAMING_AFTER, GroupCommitter
from wal.segment import SegmentWriter
from wal.syncer import Syncer

OpenLog = Callable[..., WriteAheadLog]
SLOW_SYNC_S = 0.003
OVERLAP_ROUNDS = 5
"""Rounds of appends the overlap test may take to see a write during a sync."""


@dataclass
class Disk:
    """What was written and synced, per segment, as the log did it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    written: dict[int, int] = field(default_factory=dict)
    synced: dict[int, int] = field(default_factory=dict)
    syncing: int = 0
    writes_during_a_sync: int = 0
    fail_sync_number: int | None = None
    syncs: int = 0
    violations: list[str] = field(default_factory=list)

    def check_ack(self, position: Position, size: int) -> None:
        with self.lock:
            covered = self.synced.get(position.segment, 0)
            if covered < position.offset + size:
                self.violations.append(f"{position} acknowledged, synced only to {covered}")


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    state = Disk()
    write, sync = SegmentWriter.write, SegmentWriter.sync

    def noting_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        with state.lock:
            if state.syncing:
                state.writes_during_a_sync += 1
        write(self, buffers)
        with state.lock:
            state.written[self.sequence] = self.write_offset

    def noting_sync(self: SegmentWriter) -> None:
        with state.lock:
            began_at = state.written.get(self.sequence, 0)
            state.syncing += 1
            state.syncs += 1
            number = state.syncs
        try:
            time.sleep(SLOW_SYNC_S)
            if number == state.fail_sync_number:
                raise OSError(errno.EIO, "Input/output error")
            sync(self)
        finally:
            with state.lock:
                state.syncing -= 1
        with state.lock:
            done = max(state.synced.get(self.sequence, 0), began_at)
            state.synced[self.sequence] = done

    monkeypatch.setattr(SegmentWriter, "write", noting_write)
    monkeypatch.setattr(SegmentWriter, "sync", noting_sync)
    yield state


def _append_from_threads(
    log: WriteAheadLog, disk: Disk, threads: int, each: int
) -> list[tuple[bytes, Future[Position]]]:
    submitted: list[tuple[bytes, Future[Position]]] = []
    lock = threading.Lock()

    def appender(number: int) -> None:
        for i in range(each):
            payload = b"%03d-%05d-" % (number, i) + bytes(100 + (i * 37) % 300)
            size = RECORD_HEADER_SIZE + len(payload)
            try:
                future = log.submit(payload)
            except WalError:
                return
            future.add_done_callback(
                lambda f, size=size: f.exception() is None and disk.check_ack(f.result(), size)
            )
            with lock:
                submitted.append((payload, future))
            try:
                future.result(timeout=30)
            except WalError:
                return

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return submitted


def test_no_acknowledgement_precedes_the_sync_that_covers_it_and_writes_overlap_syncs(
    open_log: OpenLog, disk: Disk
) -> None:
    log = open_log(segment_bytes=32 * 1024)  # rolls too: groups span segments
    # The writer hands a group to the sync thread only if it sees more
    # queued, and on a loaded machine the appenders may come back too late
    # for that every time in one round: a few rounds, until a write overlaps.
    submitted: list[tuple[bytes, Future[Position]]] = []
    for _ in range(OVERLAP_ROUNDS):
        submitted += _append_from_threads(log, disk, threads=12, each=40)
        if disk.writes_during_a_sync:
            break
    assert len(submitted) % (12 * 40) == 0
    assert disk.violations == []
    assert disk.writes_during_a_sync > 0, "the next group was never written during a sync"
    assert log.stats.segments_rolled > 0
    log.close()
    replayed = payloads(open_log(segment_bytes=32 * 1024))
    assert sorted(replayed) == sorted(payload for payload, _ in submitted)


def test_a_failed_sync_fails_every_group_it_or_a_later_sync_would_cover(
    open_log: OpenLog, disk: Disk
) -> None:
    disk.fail_sync_number = 6
    log = open_log(segment_bytes=1 << 20)
    submitted = _append_from_threads(log, disk, threads=8, each=30)
    outcomes = [future.exception(timeout=30) for _, future in submitted]
    acked = [payload for (payload, _), error in zip(submitted, outcomes, strict=True) if not error]
    failed = [error for error in outcomes if error is not None]
    assert disk.violations == []
    assert acked and failed
    assert all(isinstance(error, (LogIOError, LogFailed)) for error in failed)
    assert any(isinstance(error, LogIOError) and error.errno == errno.EIO for error in failed)
    with pytest.raises(LogFailed):
        log.submit(b"refused after the failure")
    log.close()
    replayed = payloads(open_log(segment_bytes=1 << 20))
    assert set(acked) <= set(replayed)  # nothing acknowledged is lost


class _SyncThreadWakes(threading.Condition):
    """A Condition that counts the returns from its waits on the sync thread."""

    wakes = 0

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if threading.current_thread().name == "wal-sync":
            _SyncThreadWakes.wakes += 1
        return woke


@pytest.fixture
def sync_thread_wakes(monkeypatch: pytest.MonkeyPatch) -> type[_SyncThreadWakes]:
    """Counts how often the sync thread wakes, for logs opened after it."""
    _SyncThreadWakes.wakes = 0
    monkeypatch.setattr(threading, "Condition", _SyncThreadWakes)
    return _SyncThreadWakes


def test_a_group_with_nothing_syncing_or_queued_is_synced_by_the_writer_alone(
    open_log: OpenLog, disk: Disk, sync_thread_wakes: type[_SyncThreadWakes]
) -> None:
    completed_on: list[str] = []

    def on_commit(tags: list[object], outcomes: list[object]) -> None:
        completed_on.append(threading.current_thread().name)
        for size, outcome in zip(tags, outcomes, strict=True):
            assert isinstance(outcome, Position) and isinstance(size, int)
            disk.check_ack(outcome, size)  # before any waiter of the group wakes

    log = open_log(segment_bytes=1 << 20, on_commit=on_commit)
    for i in range(20):  # one at a time: each group is alone
        payload = b"alone-%d" % i
        log.append(payload, tag=RECORD_HEADER_SIZE + len(payload))
    # One hand-off per group (appender -> writer), none to the sync thread.
    assert completed_on == ["wal-group-commit"] * 20
    assert sync_thread_wakes.wakes == 0
    assert (log.stats.groups, log.stats.syncs, log.stats.appends) == (20, 20, 20)
    assert disk.syncs == 20
    assert disk.violations == []
    log.close()
    assert payloads(open_log(segment_bytes=1 << 20)) == [b"alone-%d" % i for i in range(20)]


def test_a_group_with_appends_queued_behind_it_goes_to_the_sync_thread_in_write_order(
    open_log: OpenLog, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    completed: list[tuple[str, object]] = []
    log: WriteAheadLog | None = None
    queued_behind: list[Future[Position]] = []
    write = SegmentWriter.write

    def write_then_queue_one(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        write(self, buffers)
        if log is not None and not queued_behind:
            # Queued while the first group is written: the writer has more
            # to write, so that group's sync goes to the sync thread.
            queued_behind.append(log.submit(b"second", tag="second"))

    def on_commit(tags: list[object], outcomes: list[object]) -> None:
        completed.extend((threading.current_thread().name, tag) for tag in tags)

    log = open_log(segment_bytes=1 << 20, on_commit=on_commit)
    monkeypatch.setattr(SegmentWriter, "write", write_then_queue_one)
    first = log.submit(b"first", tag="first")
    assert first.result(timeout=30) < queued_behind[0].result(timeout=30)
    assert [tag for _, tag in completed] == ["first", "second"]
    assert completed[0][0] == "wal-sync"
    assert disk.violations == []


def test_appends_arriving_during_the_writers_syncs_send_the_next_sync_to_the_sync_thread(
    open_log: OpenLog, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append that came while the writer synced a group itself waited
    for that sync before its write. Once that happens STREAMING_AFTER
    groups in a row, appends stream in: the next group's sync goes to the
    sync thread (a write after it may overlap it). A group whose write
    overlapped no sync, with nothing queued behind it, ends the stream: the
    one after it is synced by the writer again."""
    assert STREAMING_AFTER == 2
    completed: list[tuple[str, object]] = []
    log: WriteAheadLog | None = None
    arrived_during_sync: list[Future[Position]] = []
    sync = SegmentWriter.sync

    def sync_then_queue_one(self: SegmentWriter) -> None:
        if log is not None and len(arrived_during_sync) < STREAMING_AFTER:
            name = b"arrived-%d" % len(arrived_during_sync)
            arrived_during_sync.append(log.submit(name, tag=name))
        sync(self)

    def on_commit(tags: list[object], outcomes: list[object]) -> None:
        completed.extend((threading.current_thread().name, tag) for tag in tags)

    log = open_log(segment_bytes=1 << 20, on_commit=on_commit)
    monkeypatch.setattr(SegmentWriter, "sync", sync_then_queue_one)
    log.submit(b"first", tag=b"first").result(timeout=30)
    arrived_during_sync[0].result(timeout=30)
    arrived_during_sync[1].result(timeout=30)
    log.submit(b"last", tag=b"last").result(timeout=30)
    assert completed == [
        ("wal-group-commit", b"first"),  # arrived-0 came during its sync
        ("wal-group-commit", b"arrived-0"),  # arrived-1 came during its sync
        ("wal-sync", b"arrived-1"),  # streaming: handed over, overlapping nothing
        ("wal-group-commit", b"last"),
    ]
    assert disk.violations == []
    log.close()
    assert payloads(open_log(segment_bytes=1 << 20)) == [
        b"first",
        b"arrived-0",
        b"arrived-1",
        b"last",
    ]


def _hold_the_next_write(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Event, threading.Event]:
    """Makes the writer's next write wait: (set once it waits, set to let it
    go on). Appends queued meanwhile make the next group together."""
    writing = threading.Event()
    go_on = threading.Event()
    write = SegmentWriter.write

    def first_write_waits(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        if not writing.is_set():
            writing.set()
            assert go_on.wait(30)
        write(self, buffers)

    monkeypatch.setattr(SegmentWriter, "write", first_write_waits)
    return writing, go_on


def test_a_group_of_appends_from_one_event_loop_wakes_that_loop_once(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=1 << 20)
    writing, go_on = _hold_the_next_write(monkeypatch)

    async def appends() -> tuple[list[str], list[Position]]:
        loop = asyncio.get_running_loop()
        hops: list[str] = []
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(callback: Callable[..., object], *args: object) -> asyncio.Handle:
            if threading.current_thread().name.startswith("wal-"):  # the log's threads
                hops.append(threading.current_thread().name)
            return call_soon_threadsafe(callback, *args)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
        first = log.submit(b"first")  # a thread's future: completed without the loop
        assert await asyncio.to_thread(writing.wait, 30)
        # Queued while the writer is busy with the first group: one group.
        waiting = [log.submit_async(b"queued-%d" % i) for i in range(30)]
        go_on.set()
        positions = await asyncio.wait_for(asyncio.gather(*waiting), 30)
        assert first.result(timeout=30) < positions[0]
        return hops, positions

    hops, positions = asyncio.run(appends())
    assert log.stats.groups == 2
    assert len(hops) == 1, f"the loop was called {len(hops)} times for one group"
    assert hops[0] in ("wal-group-commit", "wal-sync")
    assert positions == sorted(positions)


def test_a_failed_sync_made_by_the_writer_fails_its_group_and_every_later_append(
    open_log: OpenLog, disk: Disk
) -> None:
    completed_on: list[str] = []

    def on_commit(tags: list[object], outcomes: list[object]) -> None:
        completed_on.append(threading.current_thread().name)

    log = open_log(segment_bytes=1 << 20, on_commit=on_commit)
    log.append(b"synced", tag="synced")
    disk.fail_sync_number = disk.syncs + 1  # the next append's sync, made by the writer
    with pytest.raises(LogIOError) as failed:
        log.append(b"lost", tag="lost")
    assert failed.value.errno == errno.EIO
    assert completed_on == ["wal-group-commit", "wal-group-commit"]
    with pytest.raises(LogFailed):
        log.submit(b"refused after the failure")
    assert disk.violations == []


def test_a_group_handed_over_once_a_sync_failed_fails_after_the_groups_of_that_sync(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group the writer wrote while the sync thread's fdatasync failed,
    and hands over once the failure is known, fails too, but only after
    the failed sync's own groups: groups complete in write order, failed
    ones as well, to the commit hook and to their waiters."""
    write, sync = SegmentWriter.write, SegmentWriter.sync
    failed, second_written, writer_waits = threading.Event(), threading.Event(), threading.Event()
    completed: list[bytes] = []
    futures: dict[bytes, Future[Position]] = {}
    log: WriteAheadLog | None = None

    def submit(payload: bytes) -> None:
        assert log is not None
        futures[payload] = future = log.submit(payload, tag=payload)
        future.add_done_callback(lambda _: completed.append(payload))

    def queue_the_second_then_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        if b"second" not in futures:  # the first group, handed over: one is queued behind it
            submit(b"second")
            write(self, buffers)
            return
        write(self, buffers)  # the second group, written while the first one's sync runs
        second_written.set()
        assert failed.wait(30)  # handed over once the sync failed

    def sync_fails_once_the_second_is_written(self: SegmentWriter) -> None:
        if threading.current_thread().name == "wal-sync" and not failed.is_set():
            assert second_written.wait(30)
            raise OSError(errno.EIO, "Input/output error")
        sync(self)

    committer_failed = GroupCommitter._failed

    def note_the_failure(self: GroupCommitter, failure: WalError) -> None:
        committer_failed(self, failure)
        failed.set()

    drain = Syncer.drain

    def noting_drain(self: Syncer) -> None:
        writer_waits.set()
        drain(self)

    def on_commit(tags: list[object], outcomes: list[object]) -> None:
        # The sync thread, failing the first group, lets the writer go first
        # if it would: until the second group is answered, or it waits.
        if tags == [b"first"]:
            for _ in range(3000):
                if futures[b"second"].done() or writer_waits.is_set():
                    break
                time.sleep(0.001)

    monkeypatch.setattr(GroupCommitter, "_failed", note_the_failure)
    monkeypatch.setattr(Syncer, "drain", noting_drain)
    log = open_log(segment_bytes=1 << 20, on_commit=on_commit)
    monkeypatch.setattr(SegmentWriter, "write", queue_the_second_then_write)
    monkeypatch.setattr(SegmentWriter, "sync", sync_fails_once_the_second_is_written)
    submit(b"first")
    for payload in (b"first", b"second"):
        with pytest.raises(WalError):
            futures[payload].result(timeout=30)
    assert completed == [b"first", b"second"]


class LoopThread:
    """An event loop running in a thread of its own; counts the calls the
    log's threads make into it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.hops: list[str] = []
        self.completed: list[bytes] = []
        call_soon_threadsafe = self.loop.call_soon_threadsafe

        def counted(callback: Callable[..., object], *args: object) -> asyncio.Handle:
            if threading.current_thread().name.startswith("wal-"):  # the log's threads
                self.hops.append(threading.current_thread().name)
            return call_soon_threadsafe(callback, *args)

        self.loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, log: WriteAheadLog, payload: bytes) -> asyncio.Future[Position]:
        """submit_async from the loop's own thread; notes when it completes."""

        async def queue() -> asyncio.Future[Position]:
            waiter = log.submit_async(payload)
            waiter.add_done_callback(lambda _: self.completed.append(payload))
            return waiter

        return asyncio.run_coroutine_threadsafe(queue(), self.loop).result(30)

    def results(self, waiters: list[asyncio.Future[Position]]) -> list[Position]:
        async def gathered() -> list[Position]:
            return await asyncio.wait_for(asyncio.gather(*waiters), 30)

        return asyncio.run_coroutine_threadsafe(gathered(), self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


def test_one_group_of_appends_from_two_event_loops_wakes_each_loop_once_in_order(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=1 << 20)
    writing, go_on = _hold_the_next_write(monkeypatch)
    loops = [LoopThread(), LoopThread()]
    try:
        first = log.submit(b"first")
        assert writing.wait(30)
        # Queued turn by turn while the writer is held: one group, its
        # appends alternating between the two loops.
        queued: list[list[bytes]] = [[], []]
        waiters: list[list[asyncio.Future[Position]]] = [[], []]
        for i in range(10):
            for number, loop in enumerate(loops):
                payload = b"loop-%d-%d" % (number, i)
                queued[number].append(payload)
                waiters[number].append(loop.submit(log, payload))
        go_on.set()
        positions = [loop.results(mine) for loop, mine in zip(loops, waiters, strict=True)]
        assert first.result(timeout=30) < positions[0][0]
        assert log.stats.groups == 2
        for number, loop in enumerate(loops):
            assert len(loop.hops) == 1, f"loop {number} was called {len(loop.hops)} times"
            assert loop.completed == queued[number]
        alternating = [pair[number] for pair in zip(*positions, strict=True) for number in (0, 1)]
        assert alternating == sorted(alternating)
        assert len(set(alternating)) == 20
    finally:
        go_on.set()
        for loop in loops:
            loop.close()


def test_a_failed_sync_fails_every_asyncio_waiter_and_none_is_acknowledged(
    open_log: OpenLog, disk: Disk
) -> None:
    log = open_log(segment_bytes=1 << 20)
    log.append(b"synced")
    disk.fail_sync_number = disk.syncs + 1

    async def appends() -> list[Position | BaseException]:
        waiting = [log.submit_async(b"lost-%d" % i) for i in range(20)]
        return await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 30)

    outcomes = asyncio.run(appends())
    assert all(isinstance(outcome, WalError) for outcome in outcomes), outcomes
    first = outcomes[0]
    assert isinstance(first, LogIOError) and first.errno == errno.EIO
    assert disk.violations == []


def test_a_lone_asyncio_appenders_batches_are_each_acknowledged_after_their_sync_in_order(
    open_log: OpenLog, disk: Disk, sync_thread_wakes: type[_SyncThreadWakes]
) -> None:
    """The benchmark's lone batch appender: each call's group is synced and
    completed by the writer (no sync-thread hand-off), every record of it is
    covered by a finished sync when the call returns, with the counters
    already updated, and the calls land in call order. Then a failed sync
    fails every record of its batch with the disk's error, and the log keeps
    every batch acknowledged before it."""
    log = open_log(segment_bytes=1 << 20)
    sizes = [RECORD_HEADER_SIZE + len(b"%d-%d" % (call, 0)) for call in range(8)]

    async def calls() -> list[list[Position]]:
        done = []
        for call in range(8):
            batch = [Append(b"%d-%d" % (call, i)) for i in range(10)]
            positions = await log.append_many_async(batch)
            for position in positions:
                disk.check_ack(position, sizes[call])
            assert (log.stats.groups, log.stats.appends) == (call + 1, 10 * (call + 1))
            done.append(positions)
        disk.fail_sync_number = disk.syncs + 1
        with pytest.raises(LogIOError) as failed:
            await log.append_many_async([Append(b"lost-%d" % i) for i in range(10)])
        assert failed.value.errno == errno.EIO
        assert (log.stats.groups, log.stats.appends) == (8, 80)  # none of it counted
        with pytest.raises(LogFailed):
            await log.append_many_async([Append(b"refused")])
        return done

    acknowledged = asyncio.run(calls())
    flat = [position for positions in acknowledged for position in positions]
    assert flat == sorted(flat) and len(set(flat)) == 80
    assert disk.violations == []
    assert sync_thread_wakes.wakes == 0
    log.close()
    kept = [b"%d-%d" % (call, i) for call in range(8) for i in range(10)]
    # The failed batch's bytes were written (a real failed sync may or may
    # not have kept them): after the acknowledged ones, if at all.
    assert payloads(open_log(segment_bytes=1 << 20))[:80] == kept
