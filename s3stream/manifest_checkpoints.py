"""The manifest's checkpoints: every ``checkpoint_every`` versions the
whole state is written to ``manifest/checkpoint/<N>`` so an opener reads
one checkpoint plus a few deltas, not the whole history; the deltas and
checkpoints it makes unnecessary are then deleted (docs/object-format.md,
"Checkpoints and clean-up"). Either runs in the commit that reached the
checkpoint, or, with background clean-up, on a thread of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from s3stream.checkpoint_encoding import CheckpointEncoder
from s3stream.checkpoint_reading import KeptEntries
from s3stream.manifest_records import (
    CHECKPOINT_PREFIX,
    LOG_PREFIX,
    checkpoint_key,
    delta_key,
    framed_record,
    seq_of,
)
from s3stream.manifest_state import ManifestState
from s3stream.store import ObjectStore, ObjectStoreError
from wal.thread_priority import NORMAL, ThreadPriority

log = logging.getLogger("tidelog.manifest")


class CheckpointWriter:
    """Writes one writer's checkpoints and deletes what they made unnecessary."""

    def __init__(
        self,
        store: ObjectStore,
        stop: threading.Event,
        background_cleanup: bool = False,
        cleanup_priority: ThreadPriority = NORMAL,
    ) -> None:
        self.store = store
        self._stop = stop
        self._background_cleanup = background_cleanup
        self._cleaner: threading.Thread | None = None
        """Writes checkpoints and deletes what they made unnecessary, off the
        commit path (with background cleanup); None when it has nothing to do."""
        self._pending_checkpoint: ManifestState | None = None
        """The newest state the cleaner is still to checkpoint."""
        self._cleanup_changed = threading.Condition()
        self._cleanup_priority = cleanup_priority
        """The cleaner's: no commit waits for it (wal/thread_priority.py)."""
        self._checkpoints: list[int] | None = None
        """The checkpoints in the store: those listed at open, and ours since
        (None: not known, they are listed). One a newer writer wrote while
        this one caught up is missed, and left to the next writer's clean-up."""
        self._deleted_through: int | None = None
        """Every delta up to this version is deleted, but for kept fences
        (None: not known yet, the deltas are listed)."""
        self._checkpoint_encoder = CheckpointEncoder()

    def opened(self, checkpoints: Iterable[int], kept: KeptEntries | None) -> None:
        """The checkpoints an open listed, and the streams and objects of
        the one it read as that checkpoint packed them (for the next
        checkpoint's encoder, docs/design/0145, 0150)."""
        self._checkpoints = list(checkpoints)
        self._checkpoint_encoder.prime(kept)

    def checkpoint(self, state: ManifestState) -> None:
        """Writes the full state, then deletes what it makes unnecessary:
        in the commit, or, with background cleanup, on the cleanup thread,
        so that the commit (and every remote acknowledgement behind it)
        waits for neither the checkpoint's PUT nor its deletions."""
        if not self._background_cleanup:
            self._write_checkpoint(state)
            return
        with self._cleanup_changed:
            # A checkpoint still waiting for the thread is replaced by this
            # newer one: either shortens an open as well.
            self._pending_checkpoint = state
            if self._cleaner is None or not self._cleaner.is_alive():
                # Started by whichever thread committed: its priority is
                # set from the opener's, not inherited from that thread.
                self._cleaner = self._cleanup_priority.thread(
                    self._checkpoint_in_background, "s3stream-manifest-cleanup"
                )
                self._cleaner.start()

    def _checkpoint_in_background(self) -> None:
        while True:
            with self._cleanup_changed:
                state, self._pending_checkpoint = self._pending_checkpoint, None
                if state is None:
                    self._cleaner = None
                    self._cleanup_changed.notify_all()
                    return
            self._write_checkpoint(state)

    def _write_checkpoint(self, state: ManifestState) -> None:
        """Deltas up to the previous checkpoint are deleted, not up to this
        one, so an opener that listed the older checkpoint can still read on.
        Failures only cost a longer open next time, so they are logged."""
        try:
            data = framed_record(self._checkpoint_encoder.encode(state))
        except Exception:
            # A checkpoint only shortens the next open: an encoder that
            # failed part way must neither fail the commit that reached it
            # (its version is written) nor end the clean-up thread, whose
            # end join_cleanup waits for. What it kept is not trusted: the
            # next checkpoint packs the whole state afresh.
            log.exception("manifest checkpoint at version %d: encoding failed", state.seq)
            self._checkpoint_encoder = CheckpointEncoder()
            return
        try:
            self.store.put(checkpoint_key(state.seq), data)
        except ObjectStoreError as error:
            log.warning("manifest checkpoint at version %d failed: %s", state.seq, error)
            return
        self._clean_up(state)

    def _clean_up(self, state: ManifestState) -> None:
        """Deletes the checkpoints older than the last two and the deltas up
        to the older of those two (the newest delta is never among them, so
        a commit's check of the version before its own never misses it).

        A fence that has left ``fence_versions`` is deleted only after every
        delta before it: a writer that it fenced and that comes back finds
        its own last version gone once its next put succeeds in the fence's
        place (docs/object-format.md, "Checkpoints and clean-up"). Such
        fences can only lie below the oldest kept one, so the deltas there
        go one at a time, in version order; the rest, in one request
        (``delete_many``), since their order does not matter.

        The checkpoints are those listed at open and this writer's own; the
        deltas are listed at the first clean-up only, and after it those to
        delete are the versions from where the last one ended: a list of a
        few hundred keys costs botocore more CPU time than all the rest of
        the clean-up, and moto's server as much again. No fence leaves the
        kept ones in between: only a fence changes them, and a fence ends
        this writer's commits."""
        try:
            if self._checkpoints is None:
                self._checkpoints = [seq_of(i.key) for i in self.store.list(CHECKPOINT_PREFIX)]
            checkpoints = self._checkpoints = sorted({*self._checkpoints, state.seq})
            if len(checkpoints) < 2:
                return
            keep_from = checkpoints[-2]
            self.store.delete_many([checkpoint_key(seq) for seq in checkpoints[:-2]])
            self._checkpoints = checkpoints[-2:]
            kept = set(state.fence_versions)  # where fenced writers' commits collide
            in_order_below = min(kept, default=keep_from + 1)
            if self._deleted_through is None:
                deltas = sorted(seq_of(info.key) for info in self.store.list(LOG_PREFIX))
            else:
                deltas = list(range(self._deleted_through + 1, keep_from + 1))
            deletable = [seq for seq in deltas if seq <= keep_from and seq not in kept]
            for seq in deletable:
                if seq >= in_order_below:
                    break
                if self._background_cleanup and self._stop.is_set():
                    return  # closing: the next writer's checkpoints finish it
                self.store.delete(delta_key(seq))
            self.store.delete_many([delta_key(s) for s in deletable if s >= in_order_below])
            self._deleted_through = max(keep_from, self._deleted_through or 0)
        except ObjectStoreError as error:
            log.warning("manifest checkpoint at version %d: cleanup failed: %s", state.seq, error)

    def join_cleanup(self, timeout: float | None = None) -> None:
        """Waits (at most ``timeout`` seconds) for the background checkpoints
        and their deletions, if any are running or waiting."""
        with self._cleanup_changed:
            self._cleanup_changed.wait_for(lambda: self._cleaner is None, timeout)
