"""The sync half of a pipelined group commit (the ``fsync`` policy).

The writer thread writes a group and hands it here; this thread fdatasyncs
the segment and only then completes the group. While one fdatasync runs the
writer already writes the next group, so the disk's flush and the next
group's copy into the page cache overlap.

The hand-over is only worth its wake-up when the writer has more to write:
a group written while nothing is syncing and nothing else is queued is
synced and completed by the writer itself (``sync_here``), one thread
hand-off fewer between an append and its acknowledgement.

The contract (docs/wal-format.md, "Durability"): a group is completed only
after an fdatasync that *began* after the group's write had returned, so
the sync covers every byte of it. Groups are completed in write order. The
pipeline is two groups deep: the writer may start group k+1 only once
every byte before group k is synced (``wait_synced``), which is what the
``PRIOR_SYNCED`` flag on group k+1's first record then claims.

After a failed fdatasync nothing written since the last good one may be
acknowledged (the kernel may have dropped those dirty pages): the groups
waiting here fail, and so does every group handed over later. A sync that
raises anything else fails them the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from wal.errors import LogFailed, WalError
from wal.segment import Position, SegmentWriter

stalls = logging.getLogger("tidelog.stalls")
SLOW_SYNC_S = 0.02
"""Syncs this long or longer are logged on ``tidelog.stalls`` (DEBUG), with
the bytes they covered: each delays every acknowledgement waiting for it."""

if TYPE_CHECKING:
    from wal.group_commit import Queued, QueuedOutcome, WalStats

WAIT_SLICE = 1.0
"""How long one wait on the syncer lasts before its caller looks again; a
sync that never returns (a dead disk) then shows in the writer's stack, not
as a silent hang of every wait at once."""


class WrittenGroup(NamedTuple):
    """A group whose bytes are written, waiting for the sync that covers them."""

    group: list[Queued]
    positions: list[Position | list[Position]]
    end: int
    """The segment's write offset just past the group."""
    records: int
    """How many records the group holds (a batch's each count)."""


Settle = Callable[[list["Queued"], Sequence["QueuedOutcome"]], None]


class Syncer:
    """Owns the sync thread and the groups written but not yet synced."""

    def __init__(
        self,
        segment: SegmentWriter,
        settle: Settle,
        classify: Callable[[Exception, SegmentWriter], WalError],
        on_failure: Callable[[WalError], None],
        stats: WalStats,
    ) -> None:
        self._segment = segment
        self._settle = settle
        self._classify = classify
        self._on_failure = on_failure
        self._stats = stats
        self._lock = lock = threading.Lock()
        self._cond = threading.Condition(lock)
        """The writer waits on it for syncs and completions (``wait_synced``, ``drain``)."""
        self._work = threading.Condition(lock)
        """The sync thread waits on it for groups: a sync the writer made
        itself, and each completion, leave the sync thread asleep."""
        self._written: deque[WrittenGroup] = deque()
        self._syncing = False
        self._stopping = False
        self.failure: WalError | None = None
        self.synced_end = segment.write_offset
        """Every byte of the segment before this offset is synced."""
        self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
        self._thread.start()

    # -- the writer's side ----------------------------------------------

    def hand_over(self, written: WrittenGroup) -> None:
        """Queues a written group for the next sync (or fails it if a sync has
        failed: its bytes may never reach the disk)."""
        with self._cond:
            failure = self.failure
            if failure is None:
                self._written.append(written)
                self._work.notify()
                return
        # The failed sync's groups, written before this one, may still be
        # failing on the sync thread: they are answered first (write order).
        self.drain()
        self._settle(written.group, [LogFailed(failure)] * len(written.group))

    @property
    def busy(self) -> bool:
        """Whether a sync is running or groups wait for one: a racy look
        (unlocked), for the writer's guess whether appends stream in."""
        return self._syncing or bool(self._written)

    def sync_here(self, written: WrittenGroup, synced: Callable[[], None]) -> bool:
        """Syncs and completes ``written`` on the calling (writer's) thread if
        nothing is syncing or waiting to be synced; False, doing nothing, if
        the sync thread is busy (or a sync failed): then ``hand_over``.

        The contract holds as on the sync thread: the sync begins after the
        group's write returned, and every group handed over before it is
        already completed, so groups still complete in write order.

        Only the writer waits on this syncer (``wait_synced``, ``drain``),
        and it is busy here: the sync's end is recorded in one step, with
        nobody to notify, and the group's waiters are woken last, so that
        the writer is ready for the next group by the time they run;
        ``synced`` is called between the sync and that wake-up."""
        with self._lock:
            if self._written or self._syncing or self.failure is not None:
                return False
            self._syncing = True
            segment = self._segment
        if not self._sync([written], segment):
            return True
        with self._lock:
            self.synced_end = written.end
            self._syncing = False
        synced()
        self._settle_synced(written)
        return True

    def wait_synced(self, offset: int) -> None:
        """Returns once every byte before ``offset`` is synced; raises the
        sync's failure if one failed first."""
        # Unlocked first (the writer asks before every group): within a
        # segment synced_end only grows and a failure only appears, and the
        # writer, the caller, is the one that switches segments.
        if self.synced_end >= offset and self.failure is None:
            return
        with self._cond:
            while self.synced_end < offset and self.failure is None:
                self._cond.wait(WAIT_SLICE)
            if self.failure is not None:
                raise LogFailed(self.failure)

    def drain(self) -> None:
        """Returns once every group handed over is synced and completed (or
        failed); then nothing of the segment is in flight."""
        with self._cond:
            while self._written or self._syncing:
                self._cond.wait(WAIT_SLICE)

    def switch(self, segment: SegmentWriter) -> None:
        """The writer rolled into ``segment`` (after a drain and the old
        segment's seal): later syncs are of it."""
        with self._cond:
            self._segment = segment
            self.synced_end = segment.write_offset

    def stop(self) -> None:
        """Syncs and completes what was handed over, then ends the thread."""
        with self._cond:
            self._stopping = True
            self._work.notify()
        self._thread.join()

    # -- the sync thread ------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._sync_and_settle(*batch)
            del batch  # its groups' payloads, not kept while the next is awaited

    def _sync_and_settle(self, segment: SegmentWriter, groups: list[WrittenGroup]) -> None:
        """One fdatasync covering ``groups``, then their completion (under
        ``_syncing``, which the caller set)."""
        if not self._sync(groups, segment):
            return
        with self._cond:
            # The writer may go on at once; drain still waits for the settling.
            self.synced_end = groups[-1].end
            self._cond.notify_all()
        for written in groups:
            self._settle_synced(written)
        with self._cond:
            self._syncing = False
            self._cond.notify_all()

    def _sync(self, groups: list[WrittenGroup], segment: SegmentWriter) -> bool:
        """One fdatasync covering ``groups`` (under ``_syncing``, which the
        caller set); False, the groups failed, if it failed."""
        # Only the syncing thread moves it (under _syncing): read unlocked.
        synced_before = self.synced_end
        started = time.monotonic()
        try:
            segment.sync()
        except Exception as error:
            # Not only an OSError: whatever the sync raised, it is not known
            # to have covered the groups, and a sync left unanswered would
            # keep _syncing set, so every drain (the writer's, the close's)
            # and every waiter of these groups would wait for ever.
            self._failed(groups, self._classify(error, segment))
            return False
        finished = time.monotonic()
        if finished - started >= SLOW_SYNC_S:
            stalls.debug(
                "WAL sync of segment %d took %.1f ms, %.1f KiB written in %d groups",
                segment.sequence,
                (finished - started) * 1000,
                (groups[-1].end - synced_before) / 1024,
                len(groups),
            )
        self._stats.syncs += 1
        self._stats.fsync_seconds.observe(finished - started)
        return True

    def _settle_synced(self, written: WrittenGroup) -> None:
        """Counts a synced group and completes it."""
        self._stats.appends += written.records
        self._stats.groups += 1
        self._stats.group_appends.observe(written.records)
        self._settle(written.group, written.positions)

    def _next_batch(self) -> tuple[SegmentWriter, list[WrittenGroup]] | None:
        """Every group written so far (the sync that follows covers them all)."""
        with self._cond:
            while not self._written and not self._stopping:
                self._work.wait()
            if not self._written:
                return None
            groups = list(self._written)
            self._written.clear()
            self._syncing = True
            return self._segment, groups

    def _failed(self, groups: list[WrittenGroup], failure: WalError) -> None:
        with self._cond:
            if self.failure is None:
                self.failure = failure
            groups += self._written  # written after the failed sync's start: as unsafe
            self._written.clear()
        self._on_failure(failure)  # before any waiter wakes: later appends are refused
        for written in groups:
            self._settle(written.group, [failure] * len(written.group))
        with self._cond:
            self._syncing = False
            self._cond.notify_all()
