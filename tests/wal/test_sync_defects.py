"""A write or sync that raises something other than an OSError (a defect in
a segment or below it) fails the log as a failed fdatasync does: its groups
and every later one fail in write order, the next append is refused, and
close() returns. Raised on the writer or the sync thread, it once left that
thread's drain, and every waiter behind it, waiting for ever.

Every wait here is bounded only so that a hang fails the test instead of
stopping the run; nothing asserts how long anything took.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.wal.conftest import payloads
from wal import LogDefect, LogFailed, Position, WalError, WriteAheadLog
from wal.group_commit import GroupCommitter
from wal.segment import SegmentWriter

OpenLog = Callable[..., WriteAheadLog]
BOUND_S = 30.0
"""Long enough for any loaded machine; reached only when something hangs."""


class Defect(RuntimeError):
    """What the broken segment's sync raises."""


def _sync_raising_once(
    monkeypatch: pytest.MonkeyPatch, *, on_thread: str | None = None
) -> list[str]:
    """Makes the next segment sync (on ``on_thread`` only, if named) raise a
    Defect, once; returns the names of the threads whose sync raised."""
    sync = SegmentWriter.sync
    raised_on: list[str] = []

    def raising_sync(self: SegmentWriter) -> None:
        name = threading.current_thread().name
        if not raised_on and on_thread in (None, name):
            raised_on.append(name)
            raise Defect("the segment's sync broke")
        sync(self)

    monkeypatch.setattr(SegmentWriter, "sync", raising_sync)
    return raised_on


def _failed_by_the_defect(future: Future[Position]) -> LogFailed:
    """The future's error: the defect itself for the groups its sync
    covered, LogFailed naming it for every later one."""
    error = future.exception(timeout=BOUND_S)  # raises TimeoutError if nothing answers
    assert isinstance(error, LogFailed), error
    defect = error if isinstance(error, LogDefect) else error.cause
    assert isinstance(defect, LogDefect) and isinstance(defect.cause, Defect), error
    return error


def _close_returns(log: WriteAheadLog) -> None:
    closer = threading.Thread(target=log.close, name="closer", daemon=True)
    closer.start()
    closer.join(BOUND_S)
    assert not closer.is_alive(), "close() did not return"


def _failed_for_good(log: WriteAheadLog, open_log: OpenLog) -> None:
    """The next append is refused, as after a failed fsync, close()
    returns, and what was synced before the failure is kept."""
    with pytest.raises(LogFailed):
        log.submit(b"refused after the failure")
    _close_returns(log)
    assert payloads(open_log(segment_bytes=1 << 20))[:1] == [b"before"]


@pytest.fixture
def open_log(tmp_path: Path) -> Iterator[OpenLog]:
    """Opens logs in tmp_path; closes them after, each within the bound (a
    close that hangs fails the test rather than the run)."""
    opened: list[WriteAheadLog] = []

    def opener(**options: object) -> WriteAheadLog:
        log = WriteAheadLog(tmp_path / "wal", **options)  # type: ignore[arg-type]
        opened.append(log)
        return log

    yield opener
    for log in opened:
        _close_returns(log)


def test_a_sync_the_writer_makes_that_raises_fails_its_group_and_every_later_append(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=1 << 20)
    log.append(b"before")  # synced: kept whatever follows
    raised_on = _sync_raising_once(monkeypatch)
    assert isinstance(_failed_by_the_defect(log.submit(b"lost")), LogDefect)
    assert raised_on == ["wal-group-commit"]  # a lone group: the writer's own sync
    _failed_for_good(log, open_log)


def test_a_sync_on_the_sync_thread_that_raises_fails_its_groups_then_the_later_ones_in_order(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first group is handed to the sync thread (an append is queued
    behind it while it is written), whose sync raises; the second group,
    written meanwhile, fails after it."""
    log = open_log(segment_bytes=1 << 20)
    log.append(b"before")
    write = SegmentWriter.write
    futures: dict[bytes, Future[Position]] = {}
    completed: list[bytes] = []

    def submit(payload: bytes) -> None:
        futures[payload] = future = log.submit(payload)
        future.add_done_callback(lambda _: completed.append(payload))

    def queue_the_second_then_write(self: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
        if b"second" not in futures:
            submit(b"second")  # queued behind the first group: it goes to the sync thread
        write(self, buffers)

    monkeypatch.setattr(SegmentWriter, "write", queue_the_second_then_write)
    raised_on = _sync_raising_once(monkeypatch, on_thread="wal-sync")
    submit(b"first")
    assert isinstance(_failed_by_the_defect(futures[b"first"]), LogDefect)  # the sync's own
    _failed_by_the_defect(futures[b"second"])  # handed over before or after the failure
    assert raised_on == ["wal-sync"]
    assert completed == [b"first", b"second"]
    _failed_for_good(log, open_log)


def test_a_timed_sync_that_raises_under_the_interval_policy_fails_the_log(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``interval`` the writer syncs on its own once the interval has
    passed since a write; that sync raising once ended the writer thread,
    and every append after it waited for a writer that was gone."""
    failed, timed = threading.Event(), threading.Event()
    committer_failed = GroupCommitter._failed
    sync_for_interval = GroupCommitter._sync_for_interval

    def noting_failure(self: GroupCommitter, failure: WalError) -> None:
        committer_failed(self, failure)
        failed.set()

    def noted_timed_sync(self: GroupCommitter) -> None:
        timed.set()
        sync_for_interval(self)

    monkeypatch.setattr(GroupCommitter, "_failed", noting_failure)
    monkeypatch.setattr(GroupCommitter, "_sync_for_interval", noted_timed_sync)
    sync = SegmentWriter.sync

    def timed_sync_raises(self: SegmentWriter) -> None:
        if timed.is_set():
            raise Defect("the segment's sync broke")
        sync(self)  # a sync made with a write, when the interval had passed before it

    monkeypatch.setattr(SegmentWriter, "sync", timed_sync_raises)
    log = open_log(segment_bytes=1 << 20, durability="interval", sync_interval_ms=20.0)
    for attempt in range(100):
        syncs = log.stats.syncs
        log.append(b"written-%d" % attempt)  # acknowledged once written
        if log.stats.syncs == syncs:
            break  # left unsynced: the timed sync follows
    assert failed.wait(BOUND_S), "the timed sync's failure never failed the log"
    with pytest.raises(LogFailed) as refused:
        log.submit(b"refused after the failure")
    assert isinstance(refused.value.cause, LogDefect)
    assert isinstance(refused.value.cause.cause, Defect)
    _close_returns(log)
