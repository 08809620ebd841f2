"""The manifest's one writer: opening (fencing out the writer before),
committing versions, settling a write whose answer was lost, and learning
of a takeover.

Version N of the manifest is the object ``manifest/log/<N>``, a delta of
operations written with create-if-absent. Whoever creates version N+1 is the
one writer of that version, so two writers can never both commit on top of
the same state. Opening bumps the writer epoch with such a write (a "fence"
operation); a writer holding an older epoch then loses its next commit, sees
the newer epoch and raises :class:`Fenced`. Every ``checkpoint_every``
versions the whole state is checkpointed (manifest_checkpoints.py). The
layout and encoding are in docs/object-format.md; loading a bucket's
manifest is manifest_load.py.

A writer recognises its own writes whatever happened to their answers: a
412 on a version holding its exact record is success; a version created
where checkpoints had already moved past is not. Opening first checks that
the store enforces conditional writes (conditional_probe.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from s3stream.conditional_probe import check_conditional_writes
from s3stream.errors import CorruptObject, Fenced, StoreClosed
from s3stream.manifest_checkpoints import CheckpointWriter
from s3stream.manifest_load import LoadedManifest, ManifestConflict, catch_up, load, load_state
from s3stream.manifest_records import (
    CHECKPOINT_PREFIX,
    LOG_PREFIX,
    decode_record,
    delta_key,
    encode_record,
)
from s3stream.manifest_state import ManifestState, Op
from s3stream.store import ObjectNotFound, ObjectStore, ObjectStoreError, PreconditionFailed
from s3stream.transient_retries import (
    OPEN_ATTEMPTS,
    backoff_sleep,
    retry_or_raise,
    retrying_transient,
)
from wal.thread_priority import NORMAL, ThreadPriority

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_OPEN_TIMEOUT_S",
    "LeftBehind",
    "Manifest",
    # Loading's, imported from here by the CLI and every reader from outside
    # the writer (s3stream/outside_reads.py) since loading lived here.
    "load_state",
]

log = logging.getLogger("tidelog.manifest")

DEFAULT_CHECKPOINT_EVERY = 64
DEFAULT_OPEN_TIMEOUT_S = 30.0
"""How long opening waits out a store that fails transiently (unreachable,
throttling) before it gives up: long enough for a store starting beside the
server, short enough that a wrong endpoint is reported while someone looks."""


class LeftBehind(PreconditionFailed):
    """Our put created a version that newer checkpoints had already deleted:
    other writers are far ahead, and the write does not count."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "the previous version is gone: a newer writer checkpointed past it")


class Manifest:
    """The committed state of a stream store and the only way to change it.

    ``state`` is replaced, never mutated, on each commit: readers take a
    reference and need no lock.
    """

    def __init__(
        self,
        store: ObjectStore,
        state: ManifestState,
        checkpoint_every: int,
        stop: threading.Event,
        background_cleanup: bool = False,
        cleanup_priority: ThreadPriority = NORMAL,
    ) -> None:
        self.store = store
        self.state = state
        self._checkpoint_every = checkpoint_every
        self._stop = stop
        self._writer = os.urandom(8).hex()
        self._commit_lock = threading.Lock()
        self.commit_retries = 0
        """Commits retried after a transient object-store error (metrics)."""
        self._fenced: Fenced | None = None
        self._unsettled: tuple[int, bytes, ManifestState] | None = None
        self.commits = 0
        self.conflicts: list[ManifestConflict] = []
        """Versions left out at open as contradicting the history (see load)."""
        self._tip_version: str | None = None
        """The store's version token of ``delta_key(state.seq)``, if known."""
        self._foreseen: tuple[ManifestState, list[Op], ManifestState] | None = None
        """The last ``state_after``: the state it started from, its
        operations and the state they made, which the commit of those
        operations takes if nothing committed in between."""
        self._checkpoint_writer = CheckpointWriter(
            store, stop, background_cleanup, cleanup_priority
        )

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def unsettled(self) -> bool:
        """Whether a write's outcome is unknown (its answer was lost and no
        retry has settled it yet): the version may be in the store, where
        the next opener reads it, so what it names must not be deleted.
        The next commit settles it."""
        return self._unsettled is not None

    # -- opening ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        store: ObjectStore,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        stop: threading.Event | None = None,
        owner: str = "",
        timeout: float = DEFAULT_OPEN_TIMEOUT_S,
        background_cleanup: bool = False,
        cleanup_priority: ThreadPriority = NORMAL,
    ) -> Manifest:
        """Loads the newest version and takes ownership by bumping the epoch;
        ``owner`` (the opener's data directory identity) is recorded with it.

        First checks that the store enforces conditional writes
        (ConditionalWritesNotEnforced if not; see conditional_probe.py),
        unless the store's own code checks them (the local and memory stores).
        Transient store errors are retried for up to ``timeout`` seconds.
        With ``background_cleanup``, a checkpoint's PUT and its deletions run
        on a thread of their own (join_cleanup waits for it), not in the
        commit that reached it: a commit waited on by a remote
        acknowledgement then costs its own requests only, never a
        checkpoint's PUT, a list and dozens of DELETEs; that thread runs at
        ``cleanup_priority``.
        """
        deadline = time.monotonic() + timeout
        if not store.checks_its_own_conditions:
            retrying_transient(lambda: check_conditional_writes(store), deadline)
        manifest = cls(
            store,
            ManifestState(),
            checkpoint_every,
            stop or threading.Event(),
            background_cleanup,
            cleanup_priority,
        )
        loaded: LoadedManifest | None = None
        for attempt in range(OPEN_ATTEMPTS):
            try:
                if manifest._unsettled is not None:
                    # The last fence's answer was lost: settle it (ours, or
                    # taken by someone else) rather than load again and fence
                    # once more, spending an epoch on nothing.
                    manifest._settle()
                else:
                    # After a lost race, read only the versions the winner
                    # added: a writer committing faster than a full load
                    # must not keep its successor out.
                    loaded = (
                        load(store, keep_packed=True)
                        if loaded is None
                        else catch_up(store, loaded, keep_packed=True)
                    )
                    manifest.state = loaded.state
                    manifest.conflicts = loaded.conflicts
                    manifest._tip_version = loaded.tip_version
                    manifest._checkpoint_writer.opened(loaded.checkpoints, loaded.kept)
                    # Above every epoch in the log, left-out versions' too: a
                    # writer whose versions were left out must not share it.
                    newest = max([loaded.state.epoch] + [c.epoch or 0 for c in loaded.conflicts])
                    fence: Op = ["fence", newest + 1] + ([owner] if owner else [])
                    manifest._write(loaded.state.seq + 1, [fence])
                break
            except PreconditionFailed:
                continue  # another opener or writer moved first: catch up and fence again
            except ObjectStoreError as error:
                retry_or_raise(error, attempt, deadline)
        else:
            raise ObjectStoreError("open", LOG_PREFIX, "the manifest kept moving while opening")
        state = manifest.state
        for conflict in manifest.conflicts:
            log.error(
                "manifest version %d (%s, writer %s, epoch %s) was left out: %s; "
                "two writers committed to %s (a store that ignores conditional writes?)",
                conflict.seq,
                conflict.key,
                conflict.writer,
                conflict.epoch,
                conflict.reason,
                store.url,
            )
        log.info("manifest opened at version %d, epoch %d", state.seq, manifest.epoch)
        return manifest

    # -- committing ---------------------------------------------------------

    def commit(self, ops: list[Op], *, deadline: float | None = None) -> ManifestState:
        """Writes the next version with ``ops``; returns the new state.

        Transient store errors are retried with backoff until ``deadline``
        (a time.monotonic() value; None means until the store is closed),
        then the last error is raised.
        Raises Fenced if a newer writer has taken over.
        """
        with self._commit_lock:
            attempt = 0
            written = False  # whether the unsettled write, if any, is this call's
            while True:
                if self._fenced is not None:
                    raise self._fenced
                try:
                    if self._unsettled is not None:
                        settled = self._settle()
                        if written:
                            return settled
                    written = True
                    return self._write(self.state.seq + 1, ops)
                except PreconditionFailed:
                    self._discover_fence(self.state.seq + 1)
                except ObjectStoreError as error:
                    self._wait_to_retry(error, attempt, deadline, "manifest commit")
                    attempt += 1

    def settle(self, deadline: float | None = None) -> None:
        """Settles a write whose outcome is unknown, if there is one, so what
        a caller decides next is decided from the version the store holds,
        not from the one before a write that landed. Transient store errors
        are retried as a commit retries them (until ``deadline``, else until
        the store is closed); any other is raised, the write still unsettled."""
        with self._commit_lock:
            attempt = 0
            while True:
                if self._fenced is not None:
                    raise self._fenced
                if self._unsettled is None:
                    return
                try:
                    self._settle()
                    return
                except PreconditionFailed:
                    self._discover_fence(self.state.seq + 1)
                except ObjectStoreError as error:
                    self._wait_to_retry(error, attempt, deadline, "settling a manifest write")
                    attempt += 1

    def _wait_to_retry(
        self, error: ObjectStoreError, attempt: int, deadline: float | None, what: str
    ) -> None:
        """Backs off before another try after ``error``; raises it instead
        if no retry can get past it (not transient, or past ``deadline``),
        StoreClosed if the store is closing."""
        if not error.transient:
            raise error
        if self._stop.is_set():
            raise StoreClosed from error
        if deadline is not None and time.monotonic() >= deadline:
            raise error
        self.commit_retries += 1
        log.warning("%s failed, retrying: %s", what, error)
        # Never past the deadline: the caller is answered at it.
        left = None if deadline is None else deadline - time.monotonic()
        backoff_sleep(attempt, self._stop, left)

    def check_fenced(self) -> None:
        """Raises Fenced if another writer has created the next version: one
        HEAD request, so a writer with nothing to commit still learns of a
        takeover. Transient store errors propagate (the caller tries later)."""
        with self._commit_lock:
            if self._fenced is not None:
                raise self._fenced
            if self._unsettled is not None:
                return  # the next version may be our own lost write; commit settles it
            seq = self.state.seq + 1
            try:
                self.store.head(delta_key(seq))
            except ObjectNotFound:
                return
            self._discover_fence(seq)

    def state_after(self, ops: list[Op]) -> ManifestState:
        """The state that committing ``ops`` next would make, for laying
        out the next upload while they commit (InvalidOperation if one does
        not apply). The commit of this same ``ops`` list (the same object,
        left unchanged) takes this state rather than copying and applying
        again, if nothing committed or settled in between: at 10,000
        streams a copy of the state's maps is some 0.4 ms, which an upload
        paid twice (docs/design/0140). The state is never changed after:
        whoever laid out against it reads it as the committed version."""
        with self._commit_lock:
            before = self.state
            after = _applied(before, ops)
            after.seq = before.seq + 1
            self._foreseen = (before, ops, after)
            return after

    def _write(self, seq: int, ops: list[Op]) -> ManifestState:
        foreseen, self._foreseen = self._foreseen, None
        if foreseen is not None and foreseen[0] is self.state and foreseen[1] is ops:
            state = foreseen[2]  # state_after applied them to this very state
        else:
            state = _applied(self.state, ops)
        state.seq = seq
        data = encode_record({"seq": seq, "epoch": state.epoch, "writer": self._writer, "ops": ops})
        self._unsettled = (seq, data, state)
        self._put_version(seq, data)
        self._adopt(state)
        return state

    def _settle(self) -> ManifestState:
        """Finishes a write whose outcome is unknown (its response was lost):
        writes it again, or finds it was written after all."""
        assert self._unsettled is not None
        seq, data, state = self._unsettled
        self._put_version(seq, data)
        self._adopt(state)
        return state

    def _put_version(self, seq: int, data: bytes) -> None:
        """Creates version ``seq`` holding ``data``, or finds it holds ``data`` already.

        A 412 is not proof of another writer: a store (or its client's own
        retry) may have performed an earlier attempt of this very write and
        lost the answer. The version then holds our record byte for byte
        (our writer id, this sequence number, these operations); anything
        else there is another writer's, and PreconditionFailed stands.
        A failed read-back leaves the write unsettled for the caller's retry.
        """
        try:
            version = self.store.put_if_absent(delta_key(seq), data)
        except PreconditionFailed:
            try:
                found, version = self.store.get_versioned(delta_key(seq))
            except ObjectNotFound:
                found = None  # deleted by a checkpoint: long since committed by someone
            if found != data:
                self._unsettled = None
                raise
            log.info("manifest version %d: a retried write found its own record", seq)
        self._check_not_left_behind(seq)
        self._tip_version = version

    def _check_not_left_behind(self, seq: int) -> None:
        """Raises LeftBehind unless version ``seq - 1`` is still the one we know.

        Checkpoints delete old deltas, so a writer far behind the others (a
        long pause, a partition) can create a version number that existed
        once and was deleted: the put succeeds, yet every loader skips it, as
        it lies below a newer checkpoint. Deletion goes in version order and
        never reaches the newest version, so the version before ours is then
        gone too, or is another such writer's stray put (a new version
        token): either way not the one we loaded or wrote.
        """
        if seq <= 1:
            return
        try:
            found = self.store.head(delta_key(seq - 1)).version
        except ObjectNotFound:
            found = None
        expected = self._tip_version
        if found is None or (expected is not None and found.strip('"') != expected.strip('"')):
            self._unsettled = None
            raise LeftBehind(delta_key(seq))

    def _adopt(self, state: ManifestState) -> None:
        self._unsettled = None
        self.state = state
        self.commits += 1
        if state.seq % self._checkpoint_every == 0:
            self._checkpoint_writer.checkpoint(state)

    def _discover_fence(self, seq: int) -> None:
        """Another writer created version ``seq`` (or versions far past it): we are fenced."""
        try:
            other = decode_record(delta_key(seq), self.store.get(delta_key(seq)))
            if other.get("writer") == self._writer:  # ours, left behind: ask the checkpoint
                newest = self.store.list(CHECKPOINT_PREFIX)[-1].key
                other = decode_record(newest, self.store.get(newest))
            newer = int(other["epoch"])
        except (ObjectStoreError, CorruptObject, IndexError, KeyError, TypeError, ValueError):
            newer = self.state.epoch + 1
        self._fenced = Fenced("the stream store", self.state.epoch, newer)
        log.error("%s", self._fenced)
        raise self._fenced

    def join_cleanup(self, timeout: float | None = None) -> None:
        """Waits (at most ``timeout`` seconds) for the background checkpoints
        and their deletions, if any are running or waiting."""
        self._checkpoint_writer.join_cleanup(timeout)


def _applied(state: ManifestState, ops: list[Op]) -> ManifestState:
    """A copy of ``state`` with ``ops`` applied; an invalid operation
    raises before anything is written."""
    after = state.copy()
    for op in ops:
        after.apply(op)
    return after
