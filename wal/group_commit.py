"""Group commit: one writer thread turns many appends into one write and one sync.

Appenders only enqueue and wait on their own future; the writer takes
everything queued, writes it with one pwritev, syncs once (per the durability
policy) and completes the whole group. After a failed write or sync the log
fails for good: the state of the file is unknown (a failed fsync may have
dropped dirty pages), so nothing later may be acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from wal.errors import DiskFull, LogClosed, LogFailed, LogIOError, WalError
from wal.format import FLAG_SYNCED, RECORD_HEADER_SIZE, encode_record_header
from wal.histogram import PlainHistogram
from wal.segment import Position, SegmentWriter

log = logging.getLogger("tidelog.wal")


class Durability(enum.Enum):
    """When an append is acknowledged."""

    FSYNC = "fsync"
    """After its group is written and fdatasync'ed (the default)."""
    INTERVAL = "interval"
    """After its group is written; a sync follows within the interval."""
    NONE = "none"
    """After its group is written; synced only on segment roll and close."""


GROUP_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Appends per group commit."""


@dataclass
class WalStats:
    """Counters kept by the writer thread."""

    appends: int = 0
    groups: int = 0
    syncs: int = 0
    bytes_written: int = 0
    segments_rolled: int = 0
    fsync_seconds: PlainHistogram = field(default_factory=PlainHistogram)
    """How long each fdatasync took."""
    group_appends: PlainHistogram = field(default_factory=lambda: PlainHistogram(GROUP_SIZE_BOUNDS))
    """How many appends each group commit wrote."""


Outcome = Position | WalError
Waiter = Future[Position] | asyncio.Future[Position]
"""A thread waits on a concurrent future; a coroutine on its event loop's future."""
CommitHook = Callable[[list[object], list[Outcome]], None]
"""Called on the writer thread once per group with the tags of its tagged
appends and their outcomes, before any waiter of the group is woken."""


class PendingAppend:
    """One queued append. A plain slotted class: it is made once per append."""

    __slots__ = (
        "end_offset",
        "payload",
        "payload_crc",
        "prefix",
        "record_type",
        "start_offset",
        "stream_id",
        "tag",
        "waiter",
    )

    def __init__(
        self,
        waiter: Waiter,
        record_type: int,
        stream_id: int,
        start_offset: int,
        end_offset: int,
        payload: bytes | memoryview,
        payload_crc: int,
        tag: object = None,
        prefix: bytes = b"",
    ) -> None:
        self.waiter = waiter
        self.tag = tag
        self.record_type = record_type
        self.stream_id = stream_id
        self.start_offset = start_offset
        self.end_offset = end_offset
        self.payload = payload
        self.payload_crc = payload_crc
        """The CRC32C of prefix then payload: the record's payload on disk."""
        self.prefix = prefix


class GroupCommitter:
    """Owns the active segment and the writer thread."""

    def __init__(
        self,
        segment: SegmentWriter,
        roll: Callable[[SegmentWriter], SegmentWriter],
        segment_limit: int,
        durability: Durability,
        sync_interval: float,
        on_commit: CommitHook | None = None,
    ) -> None:
        self.stats = WalStats()
        self._on_commit = on_commit
        self._segment = segment
        self._roll = roll
        self._segment_limit = segment_limit
        self._durability = durability
        self._sync_interval = sync_interval
        self._queue: deque[PendingAppend] = deque()
        self._wakeup = threading.Condition(threading.Lock())
        self._closing = False
        self._failure: WalError | None = None
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="wal-group-commit", daemon=True)
        self._thread.start()

    @property
    def active_segment(self) -> int:
        return self._segment.sequence

    def submit(self, pending: PendingAppend) -> None:
        with self._wakeup:
            if self._failure is not None:
                raise LogFailed(self._failure)
            if self._closing:
                raise LogClosed
            self._queue.append(pending)
            if len(self._queue) == 1:
                self._wakeup.notify()

    def close(self) -> None:
        """Commits everything queued, syncs, and stops the writer thread."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join()
        try:
            if self._failure is None:
                # A seal (written after a sync) lets recovery prove that every
                # record of this segment was synced, the last group's included.
                self._segment.seal()
        finally:
            self._segment.close()

    def _next_group(self) -> list[PendingAppend] | None:
        """Waits for appends; None when closing with nothing left to write."""
        with self._wakeup:
            while not self._queue and not self._closing:
                if self._durability is Durability.INTERVAL and self._unsynced:
                    remaining = self._last_sync + self._sync_interval - time.monotonic()
                    if remaining <= 0 or not self._wakeup.wait(remaining):
                        return []
                else:
                    self._wakeup.wait()
            if not self._queue:
                return None
            group = list(self._queue)
            self._queue.clear()
            return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            if self._failure is not None:
                self._fail(group, LogFailed(self._failure))
            elif group:
                self._commit(group)
            else:
                self._sync_for_interval()

    def _commit(self, group: list[PendingAppend]) -> None:
        try:
            positions = self._write(group)
            if self._durability is Durability.FSYNC or (
                self._durability is Durability.INTERVAL
                and time.monotonic() - self._last_sync >= self._sync_interval
            ):
                self._sync()
        except (OSError, WalError) as error:
            # A WalError here is a roll that found no room for the next segment.
            failure = error if isinstance(error, WalError) else self._classify(error)
            with self._wakeup:
                self._failure = failure
            self._fail(group, failure)
            return
        self.stats.appends += len(group)
        self.stats.groups += 1
        self.stats.group_appends.observe(len(group))
        self._settle(group, positions)

    def _write(self, group: list[PendingAppend]) -> list[Position]:
        positions = []
        buffers: list[bytes | memoryview] = []
        offset = self._segment.write_offset
        written = 0
        # The group's first record says whether everything before it is synced
        # (always, under FSYNC): recovery tells damage from a torn write by it.
        flags = 0 if self._unsynced else FLAG_SYNCED
        for pending in group:
            length = len(pending.prefix) + len(pending.payload)
            size = RECORD_HEADER_SIZE + length
            written += size
            if offset + size > self._segment_limit:
                self._segment.write(buffers)
                buffers = []
                self._segment = self._roll(self._segment)  # syncs the full segment
                self.stats.segments_rolled += 1
                offset = self._segment.write_offset
                flags = FLAG_SYNCED
            sequence = self._segment.sequence
            buffers.append(
                encode_record_header(
                    sequence,
                    pending.record_type,
                    pending.stream_id,
                    pending.start_offset,
                    pending.end_offset,
                    length,
                    pending.payload_crc,
                    flags,
                )
            )
            flags = 0
            if pending.prefix:
                buffers.append(pending.prefix)
            buffers.append(pending.payload)
            positions.append(Position(sequence, offset))
            offset += size
        self._segment.write(buffers)
        self.stats.bytes_written += written
        self._unsynced = True
        return positions

    def _sync(self) -> None:
        started = time.monotonic()
        self._segment.sync()
        self.stats.syncs += 1
        self._unsynced = False
        self._last_sync = time.monotonic()
        self.stats.fsync_seconds.observe(self._last_sync - started)

    def _sync_for_interval(self) -> None:
        try:
            self._sync()
        except OSError as error:
            with self._wakeup:
                self._failure = self._classify(error)

    def _classify(self, error: OSError) -> WalError:
        if error.errno == errno.ENOSPC:
            return DiskFull(self._segment.path)
        return LogIOError("writing", self._segment.path, error)

    def _fail(self, group: list[PendingAppend], error: WalError) -> None:
        self._settle(group, [error] * len(group))

    def _settle(self, group: list[PendingAppend], outcomes: Sequence[Outcome]) -> None:
        if self._on_commit is not None:
            tagged = [i for i, pending in enumerate(group) if pending.tag is not None]
            if tagged:
                try:
                    self._on_commit([group[i].tag for i in tagged], [outcomes[i] for i in tagged])
                except Exception:  # the appends are durable all the same: their waiters still wake
                    log.exception("the WAL's commit hook failed")
        _settle(group, outcomes)


def _settle(group: list[PendingAppend], outcomes: Sequence[Outcome]) -> None:
    """Completes every waiter of a group: threads at once, coroutines in one
    call per event loop (each cross-thread call writes to the loop's wakeup
    pipe, so one per append would cost a syscall per append)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Position], Outcome]]] = {}
    for pending, outcome in zip(group, outcomes, strict=True):
        waiter = pending.waiter
        if isinstance(waiter, Future):
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        else:
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle_on_loop, settled)


def _settle_on_loop(settled: list[tuple[asyncio.Future[Position], Outcome]]) -> None:
    for waiter, outcome in settled:
        if waiter.cancelled():
            continue  # the coroutine gave up waiting; the append itself still happened
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
