"""Group commit: one writer thread turns many appends into one write and one sync.

Appenders only enqueue and wait on their own future; the writer takes
everything queued and writes it with one pwritev (a group of 2 MiB or more
with a few: ``SegmentWriter.write``). A batch append is queued
as one item, its records already laid out back to back by the appender
(``PendingBatch``): the writer stamps their segment in one native call and
completes the batch's one waiter. Under the ``fsync`` policy
the sync thread (``wal/syncer.py``) then fdatasyncs and completes the group
while the writer already writes the next one, or, when nothing else is
queued and nothing is syncing, the writer syncs and completes it itself
(no hand-off to wait for); under ``interval`` and ``none`` the writer
completes the group itself. After a failed write or
sync the log fails for good: the state of the file is unknown (a failed
fsync may have dropped dirty pages), so nothing later may be acknowledged.
A write or sync that raises something other than an OSError fails the log
the same way (``LogDefect`` carrying it), on whichever thread it raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import functools
import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from native import stamp_wal_records
from wal.closing import Closing
from wal.doorbell import Doorbell
from wal.errors import DiskFull, LogClosed, LogDefect, LogFailed, LogIOError, WalError
from wal.format import (
    FLAG_PRIOR_SYNCED,
    FLAG_SYNCED,
    RECORD_HEADER_SIZE,
    encode_placed_record_header,
)
from wal.histogram import PlainHistogram
from wal.loop_call import LoopCall
from wal.segment import Position, SegmentWriter
from wal.syncer import Syncer, WrittenGroup

log = logging.getLogger("tidelog.wal")


class Durability(enum.Enum):
    """When an append is acknowledged."""

    FSYNC = "fsync"
    """After an fdatasync that began once its group was written (the default)."""
    INTERVAL = "interval"
    """After its group is written; a sync follows within the interval."""
    NONE = "none"
    """After its group is written; synced only on segment roll and close."""


GROUP_SIZE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
"""Appends per group commit."""
HOLD_LIMIT_S = 0.005
"""The longest a hold keeps the writer from taking queued appends."""
STREAMING_AFTER = 2
"""Groups in a row with appends arriving during a sync before the writer
leaves every sync to the sync thread (docs/design/0033): one such group is
as likely a lone appender's chance arrival, which a hand-off would only
delay."""


@dataclass
class WalStats:
    """Counters, each kept by one thread at a time: the writer's
    (bytes_written, segments_rolled) and, under ``fsync``, whichever thread
    is syncing (the rest: the sync thread's, or the writer's when it syncs
    a group itself; the writer's under the other policies)."""

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
"""What one record's append comes to: its position once durable, or why not."""


class PendingBatch(NamedTuple):
    """The records of one batch append, queued as one: framed back to back
    by the appender (``native.frame_wal_records``), stamped with their
    segment by the writer, acknowledged together through one waiter with
    every record's position in order (or with the group's error). A tuple,
    its waiter first, as a ``PendingAppend``'s: ``_WAITER`` reads either."""

    waiter: Future[list[Position]] | asyncio.Future[list[Position]]
    frame: bytearray
    records: int
    tag: BatchTags | None
    """The records' tags, if any record has one: the commit hook gets
    each with its record's outcome. Named as ``PendingAppend.tag``, so a
    group's tagged appends, of either kind, are found by one test."""


class BatchTags(list[object]):
    """The tags of a batch's records, one per record (None where untagged)."""


QueuedOutcome = Position | list[Position] | WalError
"""A queued append's outcome: a batch's is the list of its records' positions."""
Waiter = Future[Position] | asyncio.Future[Position] | LoopCall
"""A thread waits on a concurrent future; a coroutine on its event loop's
future; a LoopCall is settled on its loop as such a future is."""
LoopWaiter = asyncio.Future[Any] | LoopCall
CommitHook = Callable[[list[object], list[Outcome]], None]
"""Called once per group with the tags of its tagged appends and their
outcomes (a batch's records each with its own), before any waiter of the
group is woken: on the sync thread or the writer thread under ``fsync``,
on the writer thread under the other policies."""


class PendingAppend(NamedTuple):
    """One queued append. A tuple, made by ``new_pending_append`` (one C
    call): it is made once per append, and a class of its own built it in
    a Python ``__init__``, a frame and eight stores (docs/design/0104)."""

    waiter: Waiter
    record_type: int
    address: bytes
    """The header's stream id and offsets, packed (and so checked) by the
    appender: ``wal.format.encode_record_address``."""
    payload: bytes | memoryview
    payload_crc: int
    """The CRC32C of prefix then payload: the record's payload on disk."""
    length: int
    """The bytes of prefix and payload, counted once when checked."""
    tag: object = None
    prefix: bytes = b""


new_pending_append = cast(
    Callable[[tuple[Any, ...]], PendingAppend], functools.partial(tuple.__new__, PendingAppend)
)
"""A ``PendingAppend`` of all eight fields, in order, made in one C call:
a NamedTuple's own call runs a Python ``__new__``."""
new_pending_batch = cast(
    Callable[[tuple[Any, ...]], PendingBatch], functools.partial(tuple.__new__, PendingBatch)
)
"""A ``PendingBatch`` of all four fields, in order, made as
``new_pending_append`` makes its tuple."""
new_position = cast(
    Callable[[tuple[int, int]], Position], functools.partial(tuple.__new__, Position)
)
"""A ``Position`` (segment, offset), made as ``new_pending_append`` makes
its tuple: the writer makes one per append."""


Queued = PendingAppend | PendingBatch


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
        self._queue: deque[Queued] = deque()
        self._lock = threading.Lock()
        """Guards the queue and the state below; taken bare (a Condition's
        own ``with`` is two Python calls per append)."""
        self._doorbell = Doorbell(self._lock)
        """The writer sleeps on it; appenders, holds and the close ring it."""
        self._closing = False
        self._closed = Closing("GroupCommitter")
        self._sealed = False
        self._holds = 0
        self._held_since = 0.0
        self._failure: WalError | None = None
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._syncer: Syncer | None = None
        if durability is Durability.FSYNC:
            self._syncer = Syncer(segment, self._settle, self._classify, self._failed, self.stats)
        self._previous_group_start: int | None = None
        """Where the last group written into the active segment began (pipelined)."""
        self._busy_syncs = 0
        """Pipelined: how many groups in a row had appends arrive while a
        sync ran (after a sync made here, or a sync still running when the
        group's write ended). From STREAMING_AFTER on, appends stream in: the
        next group's sync goes to the sync thread too, so the write after it
        overlaps it instead of waiting for it."""
        self._thread = threading.Thread(target=self._run, name="wal-group-commit", daemon=True)
        self._thread.start()

    @property
    def active_segment(self) -> int:
        return self._segment.sequence

    def submit(self, pending: PendingAppend) -> None:
        with self._lock:
            if self._failure is not None:
                raise LogFailed(self._failure)
            if self._closing:
                raise LogClosed
            self._queue.append(pending)
            if len(self._queue) == 1:
                self._doorbell.ring()

    def submit_batch(self, batch: PendingBatch) -> None:
        """Queues the records of one batch as one: they land in one group,
        back to back."""
        with self._lock:
            if self._failure is not None:
                raise LogFailed(self._failure)
            if self._closing:
                raise LogClosed
            self._queue.append(batch)
            if len(self._queue) == 1:
                self._doorbell.ring()

    def close(self) -> None:
        """Commits everything queued, syncs, and stops the writer thread; a
        close cut short is finished by the next call (wal/closing.py)."""
        if self._closed.finished:
            return
        with self._lock:
            self._closing = True
            self._doorbell.ring()
        self._closed.step("writer", self._thread.join)
        if self._syncer is not None:
            self._closed.step("syncer", self._syncer.stop)
        try:
            self._closed.step("seal", self._seal, atomic=True)
        finally:
            self._closed.step("segment", self._close_segment)
        self._closed.finish()

    def _close_segment(self) -> None:
        self._sealed = True  # a closed segment is sealed no more
        self._segment.close()

    def _seal(self) -> None:
        # At most once: a seal cut short or failed leaves the segment as a
        # crash does (recovery reads its tail record by record), never two.
        if self._failure is None and not self._sealed:
            self._sealed = True
            # A seal (written after a sync) lets recovery prove that every
            # record of this segment was synced, the last group's included.
            self._segment.seal()

    def hold(self) -> None:
        """Keeps the writer from taking the queue until ``release``, for at most
        HOLD_LIMIT_S from the first hold: appends made meanwhile share one
        group. Appends still queue in the order they are made."""
        with self._lock:
            if self._holds == 0:
                self._held_since = time.monotonic()
            self._holds += 1

    def release(self) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds == 0 and self._queue:
                self._doorbell.ring()

    def _wait_for_holds(self) -> None:
        """Under the lock, with appends queued: waits while a hold lasts, up to its limit."""
        while self._holds and not self._closing:
            remaining = self._held_since + HOLD_LIMIT_S - time.monotonic()
            if remaining <= 0:
                return
            self._doorbell.sleep(remaining)

    def _next_group(self) -> list[Queued] | None:
        """Waits for appends; None when closing with nothing left to write."""
        with self._lock:
            if self._queue:
                self._wait_for_holds()
            while not self._queue and not self._closing:
                if self._durability is Durability.INTERVAL and self._unsynced:
                    remaining = self._last_sync + self._sync_interval - time.monotonic()
                    if remaining <= 0 or not self._doorbell.sleep(remaining):
                        return []
                else:
                    self._doorbell.sleep()
                if self._queue:
                    self._wait_for_holds()
            if not self._queue:
                return None
            group = list(self._queue)
            self._queue.clear()
            return group

    def _run(self) -> None:
        while (group := self._next_group()) is not None:
            if self._failure is not None:
                self._drain_syncer()
                self._fail(group, LogFailed(self._failure))
            elif group:
                try:
                    self._commit(group)
                except Exception as error:
                    # A defect rather than the disk (those are classified in
                    # _commit): the log fails as on a failed write, so that
                    # this group and every append after it are answered
                    # instead of waiting on a writer that is gone.
                    log.exception("the WAL's writer failed")
                    failure = LogFailed(error)
                    self._failed(failure)
                    self._drain_syncer()
                    self._fail(group, failure)
            else:
                self._sync_for_interval()
            # Not kept while the writer waits for the next append: the group
            # holds its appends' payloads, which the caller and the log cache
            # are done with once settled (an idle writer kept a whole group's
            # bytes alive past the cache's eviction).
            del group

    def _failed(self, failure: WalError) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = failure

    def _commit(self, group: list[Queued]) -> None:
        if self._syncer is not None:
            self._commit_pipelined(group, self._syncer)
            return
        try:
            positions, records = self._write(group)
            if self._durability is Durability.FSYNC or (
                self._durability is Durability.INTERVAL
                and time.monotonic() - self._last_sync >= self._sync_interval
            ):
                self._sync()
        except Exception as error:
            # A WalError here is a roll that found no room for the next segment.
            failure = error if isinstance(error, WalError) else self._classify(error)
            self._failed(failure)
            self._fail(group, failure)
            return
        self.stats.appends += records
        self.stats.groups += 1
        self.stats.group_appends.observe(records)
        self._settle(group, positions)

    def _commit_pipelined(self, group: list[Queued], syncer: Syncer) -> None:
        """Writes the group; syncs and completes it here if nothing else is
        queued, nothing is syncing and appends are not streaming in, else
        hands it to the sync thread so the next group's write overlaps its
        sync (docs/design/0033)."""
        try:
            positions, records = self._write(group)
        except Exception as error:
            failure = error if isinstance(error, WalError) else self._classify(error)
            self._failed(failure)
            self._drain_syncer()
            self._fail(group, failure)
            return
        written = WrittenGroup(group, positions, self._segment.write_offset, records)
        # Racy looks at the queue and the syncer are enough: an append queued
        # just after them is taken by the next turn, after this group's sync,
        # as it would be if it had come a moment later; a wrong guess about
        # streaming costs one thread hand-off or one write not overlapped.
        overlapped = syncer.busy  # this group's write overlapped a sync
        streaming = self._busy_syncs >= STREAMING_AFTER
        if self._queue or streaming or not syncer.sync_here(written, self._synced_here):
            syncer.hand_over(written)
            self._note_sync(busy=overlapped or bool(self._queue))

    def _synced_here(self) -> None:
        """After a sync the writer made, before its group's waiters wake
        (what they append next is no arrival during the sync): appends that
        came meanwhile had their write wait for it."""
        self._note_sync(busy=bool(self._queue))

    def _note_sync(self, *, busy: bool) -> None:
        self._busy_syncs = self._busy_syncs + 1 if busy else 0

    def _drain_syncer(self) -> None:
        """Lets the groups in flight complete first, so groups are reported
        (to the hook and their waiters) in write order, failed ones too."""
        if self._syncer is not None:
            self._syncer.drain()

    def _first_record_flags(self) -> int:
        """What the group's first record may claim about the bytes before it:
        recovery tells damage from a torn write by it."""
        if self._syncer is None:
            return 0 if self._unsynced else FLAG_SYNCED
        return self._pipelined_flags(self._syncer)

    def _pipelined_flags(self, syncer: Syncer) -> int:
        """Waits until every byte before the previous group is synced (the
        pipeline is two groups deep) and returns what the next group's first
        record may claim: SYNCED if its previous group is synced too (the disk
        kept up), else PRIOR_SYNCED."""
        if self._previous_group_start is not None:
            syncer.wait_synced(self._previous_group_start)
        if syncer.synced_end >= self._segment.write_offset:
            return FLAG_SYNCED
        return FLAG_PRIOR_SYNCED

    def _roll_segment(self) -> None:
        """Seals the full segment and opens the next. Pipelined, the groups in
        flight are synced and completed first, so the sync thread never
        touches a closed segment."""
        if self._syncer is not None:
            self._syncer.drain()
            if self._syncer.failure is not None:
                raise LogFailed(self._syncer.failure)
        self._segment = self._roll(self._segment)  # syncs the full segment
        if self._syncer is not None:
            self._syncer.switch(self._segment)
        self.stats.segments_rolled += 1

    def _write(self, group: list[Queued]) -> tuple[list[Position | list[Position]], int]:
        """Writes the group's records; returns each queued append's position
        (a batch's: its records') and how many records were written."""
        flags = self._first_record_flags()
        positions: list[Position | list[Position]] = []
        buffers: list[bytes | memoryview] = []
        offset = group_start = self._segment.write_offset
        sequence = self._segment.sequence
        limit = self._segment_limit
        written = 0
        records = 0
        for pending in group:
            if isinstance(pending, PendingBatch):
                frame = pending.frame
                start = 0
                placed: list[Position] = []
                while start < len(frame):
                    end, stamped = stamp_wal_records(
                        frame, start, limit - offset, sequence, offset, flags, Position
                    )
                    if not stamped:
                        # The rest starts in the next segment, which holds any
                        # record: frame_wal_records refused longer ones.
                        offset = group_start = self._roll_within_group(buffers)
                        sequence = self._segment.sequence
                        flags = FLAG_SYNCED
                        continue
                    buffers.append(memoryview(frame)[start:end])
                    placed += stamped
                    offset += end - start
                    written += end - start
                    flags = 0
                    start = end
                positions.append(placed)
                records += pending.records
                continue
            # Unpacked in one step: a field read by name is a descriptor
            # look-up on the type, five of them per append.
            _, record_type, address, payload, payload_crc, length, _, prefix = pending
            size = RECORD_HEADER_SIZE + length
            written += size
            if offset + size > limit:
                offset = group_start = self._roll_within_group(buffers)
                sequence = self._segment.sequence
                flags = FLAG_SYNCED
            buffers.append(
                encode_placed_record_header(
                    address, sequence, record_type, length, payload_crc, flags
                )
            )
            flags = 0
            if prefix:
                buffers.append(prefix)
            buffers.append(payload)
            positions.append(new_position((sequence, offset)))
            offset += size
            records += 1
        self._segment.write(buffers)
        self.stats.bytes_written += written
        self._unsynced = True
        self._previous_group_start = group_start
        return positions, records

    def _roll_within_group(self, buffers: list[bytes | memoryview]) -> int:
        """Writes the group's records so far (``buffers``, emptied) into the
        full segment and rolls; returns the new segment's write offset."""
        self._segment.write(buffers)
        buffers.clear()
        self._roll_segment()
        return self._segment.write_offset

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
        except Exception as error:  # raised on, it would end the writer thread
            self._failed(self._classify(error))

    def _classify(self, error: Exception, segment: SegmentWriter | None = None) -> WalError:
        """What a failed write or sync fails its groups with. Anything but an
        OSError is a defect, not the disk's answer: logged, and the log fails
        all the same, since nothing written since the last good sync can be
        vouched for."""
        path = (segment or self._segment).path
        if not isinstance(error, OSError):
            log.error("a write or sync of %s raised %r", path, error, exc_info=error)
            return LogDefect("writing", path, error)
        if error.errno == errno.ENOSPC:
            return DiskFull(path)
        return LogIOError("writing", path, error)

    def _fail(self, group: list[Queued], error: WalError) -> None:
        self._settle(group, [error] * len(group))

    def _settle(self, group: list[Queued], outcomes: Sequence[QueuedOutcome]) -> None:
        if self._on_commit is not None:
            tagged = [i for i, pending in enumerate(group) if pending.tag is not None]
            if tagged:
                tags = [group[i].tag for i in tagged]
                tag_outcomes = [outcomes[i] for i in tagged]
                if BatchTags in map(type, tags):
                    tags, record_outcomes = _each_record_tagged(tags, tag_outcomes)
                else:  # single appends only: each outcome is a Position or an error
                    record_outcomes = cast(list[Outcome], tag_outcomes)
                try:
                    self._on_commit(tags, record_outcomes)
                except Exception:  # the appends are durable all the same: their waiters still wake
                    log.exception("the WAL's commit hook failed")
        _settle(group, outcomes)


def _each_record_tagged(
    tags: list[object], outcomes: list[QueuedOutcome]
) -> tuple[list[object], list[Outcome]]:
    """The tags and outcomes of a group's tagged appends, a batch's tags
    spread over its records (each with its own position)."""
    record_tags: list[object] = []
    record_outcomes: list[Outcome] = []
    for tag, outcome in zip(tags, outcomes, strict=True):
        if not isinstance(tag, BatchTags):
            record_tags.append(tag)
            record_outcomes.append(cast(Outcome, outcome))
            continue
        for index, record_tag in enumerate(tag):
            if record_tag is not None:
                record_tags.append(record_tag)
                record_outcomes.append(outcome[index] if isinstance(outcome, list) else outcome)
    return record_tags, record_outcomes


_WAITER = operator.itemgetter(0)
"""A queued append's waiter, of either kind (each a tuple, its waiter first)."""
_GET_LOOP = operator.methodcaller("get_loop")
_SET_FUTURE_RESULT = asyncio.Future.set_result


def _settle(group: list[Queued], outcomes: Sequence[QueuedOutcome]) -> None:
    """Completes every waiter of a group: threads at once, coroutines in one
    call per event loop (each cross-thread call writes to the loop's wakeup
    pipe, so one per append would cost a syscall per append)."""
    if len(group) == 1:
        # A lone appender's group (a batch call awaited before the next): its
        # waiter is woken without the sorting by loop below.
        _settle_one(group[0].waiter, outcomes[0])
        return
    # The usual group, every waiter on one event loop, is told apart and
    # handed over whole, its waiters and outcomes as they are: C's loops
    # over the group (map, set), not a Python step and a pair per append.
    waiters: list[Future[Any] | LoopWaiter] = list(map(_WAITER, group))
    kinds = set(map(type, waiters))
    if Future not in kinds:
        loops = set(map(_GET_LOOP, waiters))
        if len(loops) == 1:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                if all(issubclass(kind, LoopCall) for kind in kinds):
                    # The server's every group: its calls made in one turn.
                    loops.pop().call_soon_threadsafe(_call_on_loop, waiters, outcomes)
                else:
                    loops.pop().call_soon_threadsafe(
                        _settle_on_loop, waiters, outcomes, kinds == {asyncio.Future}
                    )
            return
    by_loop: dict[asyncio.AbstractEventLoop, tuple[list[LoopWaiter], list[Any]]] = {}
    for waiter, outcome in zip(waiters, outcomes, strict=True):
        if isinstance(waiter, Future):
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
            continue
        loop_waiters, loop_outcomes = by_loop.setdefault(waiter.get_loop(), ([], []))
        loop_waiters.append(waiter)
        loop_outcomes.append(outcome)
    for loop, (loop_waiters, loop_outcomes) in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle_on_loop, loop_waiters, loop_outcomes, False)


def _settle_one(waiter: Future[Any] | LoopWaiter, outcome: QueuedOutcome) -> None:
    if isinstance(waiter, Future):
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        if isinstance(waiter, LoopCall):
            waiter.get_loop().call_soon_threadsafe(_call_on_loop, (waiter,), (outcome,))
        else:
            waiter.get_loop().call_soon_threadsafe(_settle_on_loop, (waiter,), (outcome,), False)


def _call_on_loop(calls: Sequence[LoopCall], outcomes: Sequence[Any]) -> None:
    """On the calls' loop: each call's ``durable`` with its append's
    outcome (a position, or the group's WalError), in group order, all of
    a group's in the one turn of the loop its hand-off woke. Called here
    straight, where ``_settle_on_loop`` asks each waiter ``cancelled``
    (never, for a call) and calls its ``set_result``, which calls
    ``durable``: two Python calls an append fewer (docs/design/0159).
    What a call raises is reported as ``LoopCall.set_result`` reports it;
    SystemExit and KeyboardInterrupt stop the loop once the rest of the
    group is settled, or their appends, durable, would never be answered:
    from the call, or from the loop's exception handler its report ran
    (asyncio lets those two out of a handler), as ``_settle_on_loop``
    finishes a group past a ``set_result`` that raised either."""
    for index, call in enumerate(calls):
        try:
            try:
                call.durable(outcomes[index])
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as error:  # a CancelledError too, as asyncio's Handle
                call.report(error)
        except BaseException:
            log.exception("an append's durable call raised; settling the rest of its group")
            _call_on_loop(calls[index + 1 :], outcomes[index + 1 :])
            raise


def _settle_on_loop(
    waiters: Sequence[LoopWaiter], outcomes: Sequence[Any], futures_only: bool
) -> None:
    """On the waiters' loop: settles each with its outcome, in group order.
    ``futures_only``: every waiter is an ``asyncio.Future`` (no LoopCall)."""
    if futures_only and not isinstance(outcomes[0], BaseException):
        # A group's outcomes are all positions or all its one error. Set in
        # one C loop; a cancelled future (its coroutine gave up waiting)
        # stops it, and the Python loop below settles the rest.
        with contextlib.suppress(asyncio.InvalidStateError):
            deque(
                map(_SET_FUTURE_RESULT, cast(Sequence[asyncio.Future[Any]], waiters), outcomes),
                maxlen=0,
            )
            return
    for waiter, outcome in zip(waiters, outcomes, strict=True):
        if waiter.cancelled() or (futures_only and cast(asyncio.Future[Any], waiter).done()):
            continue  # the coroutine gave up waiting; the append itself still happened
        try:
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        except BaseException:
            # A LoopCall reports what its call raises, but lets SystemExit and
            # KeyboardInterrupt through to stop the loop: the rest of the
            # group is settled first, or their appends, durable, would never
            # be answered.
            log.exception("an append's durable call raised; settling the rest of its group")
            # Found here, not counted by every turn: this loop settles every
            # append the server's event loop waits on.
            index = next(i for i, other in enumerate(waiters) if other is waiter)
            _settle_on_loop(waiters[index + 1 :], outcomes[index + 1 :], futures_only)
            raise
