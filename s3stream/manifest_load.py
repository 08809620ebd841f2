"""Reading a bucket's manifest: the newest readable checkpoint, then the
deltas after it in version order, leaving out any that contradicts the
history before it (a store that ignored conditional writes let a second
writer in: the first committed history is kept, the other writer's
versions reported as ManifestConflict); and catching a loaded manifest up
with the versions written since.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

from s3stream.chain_hash import UnknownChainHash
from s3stream.checkpoint_reading import KeptEntries, read_checkpoint
from s3stream.errors import CorruptObject
from s3stream.manifest_entries import UnknownObjectKind
from s3stream.manifest_records import (
    CHECKPOINT_PREFIX,
    HEADER_SIZE,
    LOG_PREFIX,
    check_framing,
    decode_record,
    delta_key,
    seq_of,
)
from s3stream.manifest_state import InvalidOperation, ManifestState, Op
from s3stream.store import ObjectNotFound, ObjectStore

log = logging.getLogger("tidelog.manifest")

_LOAD_ATTEMPTS = 6


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
    kept: KeptEntries | None = None
    """The streams and objects of the checkpoint read, as it packed them,
    for the writer's next checkpoint (checkpoint_reading.py)."""


def load_state(store: ObjectStore) -> ManifestState:
    """The newest committed state: the last checkpoint plus the deltas after it."""
    return load(store).state


def load(store: ObjectStore, *, keep_packed: bool = False) -> LoadedManifest:
    """The newest committed state, and the versions left out of it as
    conflicting; with ``keep_packed``, also the streams and objects of the
    checkpoint read as it packed them, for an opener's checkpoint encoder:
    a copy of their bytes that a load only to read (``load_state``: the
    CLI, reads from outside the writer) would throw away (docs/design/0145,
    0150)."""
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
        self.kept = since.kept if since else None

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
            except (UnknownObjectKind, UnknownChainHash) as error:
                # Refused where it is read, as the checkpoint reader refuses it.
                raise CorruptObject(key, f"undecodable manifest delta: {error}") from error
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
            self.kept,
        )


def _load_once(store: ObjectStore, left_out: dict[int, str], keep_packed: bool) -> LoadedManifest:
    checkpoints = [i.key for i in store.list(CHECKPOINT_PREFIX)]
    state, damaged, kept = _newest_readable_checkpoint(store, checkpoints, keep_packed)
    replay = _Replay(state, left_out)
    replay.kept = kept
    replay.checkpoints = tuple(sorted(seq_of(key) for key in checkpoints))
    for info in store.list(LOG_PREFIX):
        seq = seq_of(info.key)
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
) -> tuple[ManifestState, CorruptObject | None, KeptEntries | None]:
    """The state of the newest checkpoint that reads back (the empty state
    if there is none), the damage of the newest one if it did not, and
    with ``keep_packed`` that checkpoint's entries as it packed them.

    A checkpoint is a shortcut: the checkpoint before it and the deltas
    after that (kept until the next checkpoint, see manifest_checkpoints.py) rebuild
    the same version. The caller raises the damage if they do not.
    """
    damaged: CorruptObject | None = None
    for key in reversed(checkpoints):
        try:
            data = store.get(key)
            check_framing(key, data)
            state, kept = read_checkpoint(key, data, HEADER_SIZE, keep=keep_packed)
        except CorruptObject as error:
            log.error("manifest checkpoint %s is damaged (%s); trying the one before", key, error)
            damaged = damaged or error
            continue
        return state, damaged, kept
    return ManifestState(), damaged, None
