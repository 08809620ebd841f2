"""The manifest in the object store: versioned deltas, checkpoints, fencing.

Version N of the manifest is the object ``manifest/log/<N>``, a delta of
operations written with create-if-absent. Whoever creates version N+1 is the
one writer of that version, so two writers can never both commit on top of
the same state. Opening bumps the writer epoch with such a write (a "fence"
operation); a writer holding an older epoch then loses its next commit, sees
the newer epoch and raises :class:`Fenced`. Every ``checkpoint_every``
versions the whole state is written to ``manifest/checkpoint/<N>`` so an
opener reads one checkpoint plus a few deltas, not the whole history; older
deltas and checkpoints are then deleted. The layout and encoding are in
docs/object-format.md.

A writer recognises its own writes whatever happened to their answers: a
412 on a version holding its exact record is success; a version created
where checkpoints had already moved past is not. Opening first checks that
the store enforces conditional writes (conditional_probe.py); loading keeps
the first committed history of a log that two writers forked and reports
the versions it leaves out (ManifestConflict).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import msgpack

from native import crc32c
from s3stream.checkpoint_encoding import CheckpointEncoder, packed_objects
from s3stream.conditional_probe import check_conditional_writes
from s3stream.errors import CorruptObject, Fenced, StoreClosed
from s3stream.manifest_state import InvalidOperation, ManifestState, ObjectMeta, Op
from s3stream.store import ObjectNotFound, ObjectStore, ObjectStoreError, PreconditionFailed
from wal.thread_priority import NORMAL, ThreadPriority

log = logging.getLogger("tidelog.manifest")

MAGIC = b"TLMANI\x00\x01"
LOG_PREFIX = "manifest/log/"
CHECKPOINT_PREFIX = "manifest/checkpoint/"
DEFAULT_CHECKPOINT_EVERY = 64
_OPEN_ATTEMPTS = 20
DEFAULT_OPEN_TIMEOUT_S = 30.0
"""How long opening waits out a store that fails transiently (unreachable,
throttling) before it gives up: long enough for a store starting beside the
server, short enough that a wrong endpoint is reported while someone looks."""
_LOAD_ATTEMPTS = 6


class LeftBehind(PreconditionFailed):
    """Our put created a version that newer checkpoints had already deleted:
    other writers are far ahead, and the write does not count."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "the previous version is gone: a newer writer checkpointed past it")


def delta_key(seq: int) -> str:
    return f"{LOG_PREFIX}{seq:020d}"


def checkpoint_key(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{seq:020d}"


def encode_record(body: Any) -> bytes:
    """MAGIC, CRC32C of the body, then the msgpack body."""
    return framed_record(msgpack.packb(body, use_bin_type=True))


def framed_record(payload: bytes) -> bytes:
    """A record of an already packed msgpack body."""
    return MAGIC + crc32c(payload).to_bytes(4, "little") + payload


def decode_record(key: str, data: bytes) -> Any:
    if len(data) < 12 or data[:8] != MAGIC:
        raise CorruptObject(key, "not a manifest record (bad magic)")
    if crc32c(data[12:]) != int.from_bytes(data[8:12], "little"):
        raise CorruptObject(key, "manifest record checksum mismatch")
    try:
        return msgpack.unpackb(data[12:], raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData) as error:
        raise CorruptObject(key, f"undecodable manifest record: {error}") from error


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
        self._foreseen: tuple[ManifestState, list[Op], ManifestState] | None = None
        """The last ``state_after``: the state it started from, its
        operations and the state they made, which the commit of those
        operations takes if nothing committed in between."""
        self._checkpoint_encoder = CheckpointEncoder()

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
            _retrying_transient(lambda: check_conditional_writes(store), deadline)
        manifest = cls(
            store,
            ManifestState(),
            checkpoint_every,
            stop or threading.Event(),
            background_cleanup,
            cleanup_priority,
        )
        loaded: LoadedManifest | None = None
        for attempt in range(_OPEN_ATTEMPTS):
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
                    manifest._checkpoints = list(loaded.checkpoints)
                    manifest._checkpoint_encoder.prime(loaded.packed_objects)
                    # Above every epoch in the log, left-out versions' too: a
                    # writer whose versions were left out must not share it.
                    newest = max([loaded.state.epoch] + [c.epoch or 0 for c in loaded.conflicts])
                    fence: Op = ["fence", newest + 1] + ([owner] if owner else [])
                    manifest._write(loaded.state.seq + 1, [fence])
                break
            except PreconditionFailed:
                continue  # another opener or writer moved first: catch up and fence again
            except ObjectStoreError as error:
                _retry_or_raise(error, attempt, deadline)
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
        _backoff_sleep(attempt, self._stop, left)

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
            self._checkpoint(state)

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

    # -- checkpoints ----------------------------------------------------------

    def _checkpoint(self, state: ManifestState) -> None:
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
                self._checkpoints = [_seq_of(i.key) for i in self.store.list(CHECKPOINT_PREFIX)]
            checkpoints = self._checkpoints = sorted({*self._checkpoints, state.seq})
            if len(checkpoints) < 2:
                return
            keep_from = checkpoints[-2]
            self.store.delete_many([checkpoint_key(seq) for seq in checkpoints[:-2]])
            self._checkpoints = checkpoints[-2:]
            kept = set(state.fence_versions)  # where fenced writers' commits collide
            in_order_below = min(kept, default=keep_from + 1)
            if self._deleted_through is None:
                deltas = sorted(_seq_of(info.key) for info in self.store.list(LOG_PREFIX))
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


class ManifestConflict(NamedTuple):
    """A version left out at load: it contradicts the history before it.

    Only a store that ignores conditional writes (or a writer that was told
    to trust one, wrongly) lets two writers both create versions; their
    histories interleave. The first committed history is kept; the other
    writer's versions are reported here and skipped.
    """

    key: str
    seq: int
    writer: str | None
    epoch: int | None
    reason: str


class LoadedManifest(NamedTuple):
    state: ManifestState
    conflicts: list[ManifestConflict]
    tip_version: str | None
    """The store's version token of the newest delta, if it is still there."""
    owner: str | None
    """The writer that fenced the current epoch, once seen."""
    checkpoints: tuple[int, ...] = ()
    """The versions of the checkpoints listed at the load."""
    packed_objects: Mapping[int, tuple[ObjectMeta, bytes]] = MappingProxyType({})
    """The objects of the checkpoint read, as it packed them, for the
    writer's next checkpoint (checkpoint_encoding.packed_objects)."""


def load_state(store: ObjectStore) -> ManifestState:
    """The newest committed state: the last checkpoint plus the deltas after it."""
    return load(store).state


def load(store: ObjectStore, *, keep_packed: bool = False) -> LoadedManifest:
    """The newest committed state, and the versions left out of it as
    conflicting; with ``keep_packed``, also the objects of the checkpoint
    read as it packed them, for an opener's checkpoint encoder: a walk of
    the checkpoint and a copy of its objects' bytes that a load only to
    read (``load_state``: the CLI, reads from outside the writer) would
    throw away (docs/design/0145)."""
    left_out: dict[int, str] = {}  # versions whose operations failed to apply, and why
    attempt = 0
    while attempt < _LOAD_ATTEMPTS:
        try:
            return _load_once(store, left_out, keep_packed)
        except _LoadAgain:
            continue  # one more version is left out each time: this ends
        except ObjectNotFound:
            time.sleep(0.01 * 2**attempt)  # a checkpoint deleted what we listed; list again
            attempt += 1
    raise CorruptObject(LOG_PREFIX, "manifest versions are missing (checked repeatedly)")


def catch_up(
    store: ObjectStore, loaded: LoadedManifest, *, keep_packed: bool = False
) -> LoadedManifest:
    """``loaded`` with the versions written after it, read one by one (a GET
    each) instead of a full load; a full load if the next one is gone (a
    checkpoint deleted it) or one of them does not apply (``keep_packed``
    as for ``load``)."""
    replay = _Replay(loaded.state.copy(), {}, loaded)
    seq = loaded.state.seq + 1
    while True:
        try:
            data, version = store.get_versioned(delta_key(seq))
        except ObjectNotFound:
            break
        try:
            replay.add(delta_key(seq), seq, data, version)
        except _LoadAgain:
            return load(store, keep_packed=keep_packed)
        seq += 1
    if replay.state.seq > loaded.state.seq:
        return replay.result()
    return load(store, keep_packed=keep_packed)


class _LoadAgain(Exception):
    """A delta failed part way through its operations: load from the start without it."""


class _Replay:
    """Applies deltas in version order to a state, leaving out each one that
    contradicts the history so far (see ``_contradiction``)."""

    def __init__(
        self, state: ManifestState, left_out: dict[int, str], since: LoadedManifest | None = None
    ) -> None:
        self.state = state
        self.left_out = left_out
        self.owner = since.owner if since else None
        self.conflicts = list(since.conflicts) if since else []
        self.tip_version = since.tip_version if since else None
        self.checkpoints = since.checkpoints if since else ()
        self.packed_objects = since.packed_objects if since else MappingProxyType({})

    def add(self, key: str, seq: int, data: bytes, version: str | None) -> None:
        delta = decode_record(key, data)
        if delta.get("seq") != seq:
            raise CorruptObject(key, f"delta says version {delta.get('seq')}")
        writer, epoch = delta.get("writer"), delta.get("epoch")
        fence = _is_fence(delta["ops"])
        reason = self.left_out.get(seq) or _contradiction(
            self.state.epoch, self.owner, writer, epoch, fence
        )
        if reason is None:
            try:
                for op in delta["ops"]:
                    self.state.apply(op)
            except InvalidOperation as error:
                self.left_out[seq] = f"its operations do not apply: {error}"
                raise _LoadAgain from error
            if fence or self.owner is None:
                self.owner = writer
        else:
            self.conflicts.append(ManifestConflict(key, seq, writer, epoch, reason))
        self.state.seq = seq
        self.tip_version = version

    def result(self) -> LoadedManifest:
        return LoadedManifest(
            self.state,
            self.conflicts,
            self.tip_version,
            self.owner,
            self.checkpoints,
            self.packed_objects,
        )


def _load_once(store: ObjectStore, left_out: dict[int, str], keep_packed: bool) -> LoadedManifest:
    checkpoints = [i.key for i in store.list(CHECKPOINT_PREFIX)]
    state, damaged, packed = _newest_readable_checkpoint(store, checkpoints, keep_packed)
    replay = _Replay(state, left_out)
    replay.packed_objects = packed
    replay.checkpoints = tuple(sorted(_seq_of(key) for key in checkpoints))
    for info in store.list(LOG_PREFIX):
        seq = _seq_of(info.key)
        if seq == state.seq:
            replay.tip_version = info.version  # the checkpoint's own version
        if seq <= state.seq:
            continue
        if seq != state.seq + 1:
            if damaged is not None:  # the deltas after the older checkpoint are gone
                raise damaged
            # Deleted by a checkpoint written after we listed: load again.
            raise ObjectNotFound(delta_key(state.seq + 1))
        replay.add(info.key, seq, store.get(info.key), info.version)
    return replay.result()


def _is_fence(ops: list[Op]) -> bool:
    return len(ops) == 1 and bool(ops[0]) and ops[0][0] == "fence"


def _contradiction(
    current_epoch: int, owner: str | None, writer: str | None, epoch: int | None, fence: bool
) -> str | None:
    """Why a delta cannot belong to the history so far, or None if it can.

    In a history made with enforced conditional writes, each epoch begins
    with its fence and every other delta is written by that fence's writer
    at that epoch (an older writer's put loses to the fence). A fence is
    checked when applied (its epoch must be higher).
    """
    if fence:
        return None
    if epoch is not None and epoch != current_epoch:
        return f"written at epoch {epoch} while epoch {current_epoch} owned the manifest"
    if owner is not None and writer is not None and writer != owner:
        return f"written by writer {writer}, not by {owner} which owns epoch {current_epoch}"
    return None


def _newest_readable_checkpoint(
    store: ObjectStore, checkpoints: list[str], keep_packed: bool
) -> tuple[ManifestState, CorruptObject | None, Mapping[int, tuple[ObjectMeta, bytes]]]:
    """The state of the newest checkpoint that reads back (the empty state
    if there is none), the damage of the newest one if it did not, and
    with ``keep_packed`` that checkpoint's objects as it packed them.

    A checkpoint is a shortcut: the checkpoint before it and the deltas
    after that (kept until the next checkpoint, see ``_checkpoint``) rebuild
    the same version. The caller raises the damage if they do not.
    """
    damaged: CorruptObject | None = None
    for key in reversed(checkpoints):
        try:
            data = store.get(key)
            body = decode_record(key, data)
            state = _state_of_checkpoint(key, body)
        except CorruptObject as error:
            log.error("manifest checkpoint %s is damaged (%s); trying the one before", key, error)
            damaged = damaged or error
            continue
        if not keep_packed:
            return state, damaged, MappingProxyType({})
        payload = memoryview(data)[len(MAGIC) + 4 :]
        return state, damaged, packed_objects(payload, body["objects"], state)
    return ManifestState(), damaged, MappingProxyType({})


def _state_of_checkpoint(key: str, body: Any) -> ManifestState:
    """The state a checkpoint's decoded body holds. A body whose checksum
    held but whose fields are not a state (a writer's bug, a layout this
    code does not know) is damage as a failed checksum is: the caller goes
    back to the checkpoint before, whose deltas rebuild the same version,
    rather than failing every open of the bucket."""
    try:
        return ManifestState.from_wire(body)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        raise CorruptObject(key, f"undecodable manifest checkpoint: {error!r}") from error


def _applied(state: ManifestState, ops: list[Op]) -> ManifestState:
    """A copy of ``state`` with ``ops`` applied; an invalid operation
    raises before anything is written."""
    after = state.copy()
    for op in ops:
        after.apply(op)
    return after


def _seq_of(key: str) -> int:
    return int(key.rsplit("/", 1)[-1])


def _retrying_transient(action: Callable[[], None], deadline: float) -> None:
    """Runs ``action``, again after a backoff while it fails transiently
    (until ``deadline``, a time.monotonic() value)."""
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            action()
            return
        except ObjectStoreError as error:
            _retry_or_raise(error, attempt, deadline)


def _retry_or_raise(error: ObjectStoreError, attempt: int, deadline: float) -> None:
    """Sleeps before the next attempt at opening, or raises ``error`` if it
    is not transient or the attempts or the time are spent."""
    left = deadline - time.monotonic()
    if not error.transient or attempt == _OPEN_ATTEMPTS - 1 or left <= 0:
        raise error
    log.warning("the object store failed while opening, retrying for %.0f s more: %s", left, error)
    time.sleep(min(left, 5.0, 0.02 * 2 ** min(attempt, 10)))


def _backoff_sleep(
    attempt: int, stop: threading.Event | None = None, at_most: float | None = None
) -> None:
    delay = min(5.0, 0.02 * (2 ** min(attempt, 10)))
    if at_most is not None:
        delay = max(min(delay, at_most), 0.0)
    if stop is not None:
        stop.wait(delay)
    else:
        time.sleep(delay)
