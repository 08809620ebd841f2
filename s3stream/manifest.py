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
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import msgpack

from native import crc32c
from s3stream.errors import CorruptObject, Fenced, StoreClosed
from s3stream.manifest_state import InvalidOperation, ManifestState, Op
from s3stream.store import ObjectNotFound, ObjectStore, ObjectStoreError, PreconditionFailed

log = logging.getLogger("tidelog.manifest")

MAGIC = b"TLMANI\x00\x01"
LOG_PREFIX = "manifest/log/"
CHECKPOINT_PREFIX = "manifest/checkpoint/"
DEFAULT_CHECKPOINT_EVERY = 64
_OPEN_ATTEMPTS = 20
_LOAD_ATTEMPTS = 6


def delta_key(seq: int) -> str:
    return f"{LOG_PREFIX}{seq:020d}"


def checkpoint_key(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{seq:020d}"


def encode_record(body: Any) -> bytes:
    """MAGIC, CRC32C of the body, then the msgpack body."""
    payload: bytes = msgpack.packb(body, use_bin_type=True)
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
    ) -> None:
        self.store = store
        self.state = state
        self._checkpoint_every = checkpoint_every
        self._stop = stop
        self._writer = os.urandom(8).hex()
        self._commit_lock = threading.Lock()
        self._fenced: Fenced | None = None
        self._unsettled: tuple[int, bytes, ManifestState] | None = None
        self.commits = 0

    @property
    def epoch(self) -> int:
        return self.state.epoch

    # -- opening ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        store: ObjectStore,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        stop: threading.Event | None = None,
        owner: str = "",
    ) -> Manifest:
        """Loads the newest version and takes ownership by bumping the epoch;
        ``owner`` (the opener's data directory identity) is recorded with it."""
        manifest = cls(store, ManifestState(), checkpoint_every, stop or threading.Event())
        state = load_state(store)
        for attempt in range(_OPEN_ATTEMPTS):
            manifest.state = state
            try:
                fence: Op = ["fence", state.epoch + 1] + ([owner] if owner else [])
                manifest._write(state.seq + 1, [fence])
            except PreconditionFailed:
                # Another opener or writer moved first. Read only the versions
                # it added (a GET each), not the whole manifest again: a
                # writer committing faster than a full load must not keep
                # its successor out.
                state = _catch_up(store, state)
                continue
            except ObjectStoreError as error:
                if not error.transient or attempt == _OPEN_ATTEMPTS - 1:
                    raise
                # If the fence landed after all, the next load sees it as an
                # older epoch and this opener simply fences once more.
                _backoff_sleep(attempt)
                state = load_state(store)
                continue
            log.info("manifest opened at version %d, epoch %d", state.seq, manifest.epoch)
            return manifest
        raise ObjectStoreError("open", LOG_PREFIX, "the manifest kept moving while opening")

    # -- committing ---------------------------------------------------------

    def commit(self, ops: list[Op], *, deadline: float | None = None) -> ManifestState:
        """Writes the next version with ``ops``; returns the new state.

        Transient store errors are retried with backoff until ``deadline``
        (a time.monotonic() value; None means until the store is closed).
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
                    if not error.transient:
                        raise
                    if self._stop.is_set():
                        raise StoreClosed from error
                    if deadline is not None and time.monotonic() >= deadline:
                        raise
                    log.warning("manifest commit failed, retrying: %s", error)
                    _backoff_sleep(attempt, self._stop)
                    attempt += 1

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

    def _write(self, seq: int, ops: list[Op]) -> ManifestState:
        state = self.state.copy()
        for op in ops:
            state.apply(op)  # an invalid operation raises before anything is written
        state.seq = seq
        data = encode_record({"seq": seq, "epoch": state.epoch, "writer": self._writer, "ops": ops})
        self._unsettled = (seq, data, state)
        self.store.put_if_absent(delta_key(seq), data)
        self._adopt(state)
        return state

    def _settle(self) -> ManifestState:
        """Finishes a write whose outcome is unknown (its response was lost):
        writes it again, or finds it was written after all."""
        assert self._unsettled is not None
        seq, data, state = self._unsettled
        try:
            self.store.put_if_absent(delta_key(seq), data)
        except PreconditionFailed:
            if self.store.get(delta_key(seq)) != data:
                self._unsettled = None
                raise
        self._adopt(state)
        return state

    def _adopt(self, state: ManifestState) -> None:
        self._unsettled = None
        self.state = state
        self.commits += 1
        if state.seq % self._checkpoint_every == 0:
            self._checkpoint(state)

    def _discover_fence(self, seq: int) -> None:
        """Another writer created version ``seq``: we are fenced."""
        try:
            other = decode_record(delta_key(seq), self.store.get(delta_key(seq)))
            newer = int(other["epoch"])
        except (ObjectNotFound, CorruptObject, KeyError, TypeError, ValueError):
            newer = self.state.epoch + 1
        self._fenced = Fenced("the stream store", self.state.epoch, newer)
        log.error("%s", self._fenced)
        raise self._fenced

    # -- checkpoints ----------------------------------------------------------

    def _checkpoint(self, state: ManifestState) -> None:
        """Writes the full state, then deletes what it makes unnecessary.

        Deltas up to the previous checkpoint are deleted, not up to this one,
        so an opener that listed the older checkpoint can still read on.
        Failures only cost a longer open next time, so they are logged.
        """
        try:
            self.store.put(checkpoint_key(state.seq), encode_record(state.to_wire()))
            checkpoints = sorted(_seq_of(i.key) for i in self.store.list(CHECKPOINT_PREFIX))
            if len(checkpoints) < 2:
                return
            keep_from = checkpoints[-2]
            for seq in checkpoints[:-2]:
                self.store.delete(checkpoint_key(seq))
            fences = set(state.fence_versions)  # where fenced writers' commits collide
            for info in self.store.list(LOG_PREFIX):
                seq = _seq_of(info.key)
                if seq <= keep_from and seq not in fences:
                    self.store.delete(info.key)
        except ObjectStoreError as error:
            log.warning("manifest checkpoint at version %d failed: %s", state.seq, error)


def load_state(store: ObjectStore) -> ManifestState:
    """The newest committed state: the last checkpoint plus the deltas after it."""
    for attempt in range(_LOAD_ATTEMPTS):
        try:
            return _load_once(store)
        except ObjectNotFound:
            time.sleep(0.01 * 2**attempt)  # a checkpoint deleted what we listed; list again
    raise CorruptObject(LOG_PREFIX, "manifest versions are missing (checked repeatedly)")


def _load_once(store: ObjectStore) -> ManifestState:
    checkpoints = [i.key for i in store.list(CHECKPOINT_PREFIX)]
    state = ManifestState()
    if checkpoints:
        key = checkpoints[-1]
        state = ManifestState.from_wire(decode_record(key, store.get(key)))
    for info in store.list(LOG_PREFIX):
        seq = _seq_of(info.key)
        if seq <= state.seq:
            continue
        if seq != state.seq + 1:
            # Deleted by a checkpoint written after we listed: load again.
            raise ObjectNotFound(delta_key(state.seq + 1))
        delta = decode_record(info.key, store.get(info.key))
        if delta.get("seq") != seq:
            raise CorruptObject(info.key, f"delta says version {delta.get('seq')}")
        try:
            for op in delta["ops"]:
                state.apply(op)
        except InvalidOperation as error:
            raise CorruptObject(info.key, str(error)) from error
        state.seq = seq
    return state


def _catch_up(store: ObjectStore, state: ManifestState) -> ManifestState:
    """``state`` with the deltas written after it applied, read one by one;
    a full load if the next one is gone (a checkpoint deleted it)."""
    caught = state.copy()
    seq = state.seq + 1
    while True:
        try:
            delta = decode_record(delta_key(seq), store.get(delta_key(seq)))
        except ObjectNotFound:
            break
        try:
            for op in delta["ops"]:
                caught.apply(op)
        except InvalidOperation as error:
            raise CorruptObject(delta_key(seq), str(error)) from error
        caught.seq = seq
        seq += 1
    return caught if caught.seq > state.seq else load_state(store)


def _seq_of(key: str) -> int:
    return int(key.rsplit("/", 1)[-1])


def _backoff_sleep(attempt: int, stop: threading.Event | None = None) -> None:
    delay = min(5.0, 0.02 * (2 ** min(attempt, 10)))
    if stop is not None:
        stop.wait(delay)
    else:
        time.sleep(delay)
