"""A checkpoint repacks only the streams and objects that the commits
since the last one touched, as each state's record of its operations
names them (s3stream/manifest_changes.py), and still writes the bytes a
fresh encoder writes for the whole state (docs/design/0150)."""

from __future__ import annotations

import threading
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream.checkpoint_encoding import CheckpointEncoder
from s3stream.manifest import Manifest
from s3stream.manifest_changes import LONGEST_CHAIN
from s3stream.manifest_entries import StreamMeta
from s3stream.manifest_records import CHECKPOINT_PREFIX, checkpoint_key, encode_record, seq_of
from s3stream.manifest_state import ManifestState, Op
from s3stream.store import MemoryStore
from s3stream.store.base import ObjectData, joined
from tests.s3stream.faults import FaultyStore, InjectedFault
from tests.s3stream.test_checkpoint_encoding import _object_op, _packed_afresh, _step
from tests.s3stream.test_checkpoint_priming import packs_counted
from tests.s3stream.test_manifest_state_after import _afresh

EVERY = 3


def _commit_ops(state: ManifestState, data: st.DataObject) -> list[Op]:
    """One commit's operations: ``_step``'s, or a stream's epoch raised
    (a change to a stream's metadata alone, which no object shows)."""
    if len(state.streams) > 0 and data.draw(st.booleans()):
        stream_id = data.draw(st.sampled_from(sorted(state.streams)))
        return [["open_stream", stream_id, state.streams[stream_id].epoch + 1]]
    return _step(state, data)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_each_checkpoint_of_a_line_of_states_is_what_a_fresh_encoder_writes(
    data: st.DataObject,
) -> None:
    """Versions made as commits make them, some laid out and left (as an
    upload's next state is, when the commit before it fails), some
    encoded twice, and a checkpoint drawn at any of them."""
    encoder = CheckpointEncoder()
    state = ManifestState()
    for _ in range(data.draw(st.integers(1, 30))):
        state = _afresh(state, _commit_ops(state, data))
        if data.draw(st.booleans()):
            _afresh(state, _commit_ops(state, data))  # laid out against it, never committed
        if data.draw(st.integers(0, 2)) == 0:
            for _ in range(data.draw(st.integers(1, 2))):
                assert encoder.encode(state) == _packed_afresh(state)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_a_writers_checkpoints_are_what_a_fresh_encoder_writes(data: st.DataObject) -> None:
    """Through the manifest itself: commits laid out first or not, opened
    again now and then (the open primes the encoder with the objects the
    checkpoint it read packed), every checkpoint in the store byte for
    byte the state of its version packed afresh."""
    store = MemoryStore()
    manifest = Manifest.open(store, checkpoint_every=EVERY)
    for _ in range(data.draw(st.integers(1, 40))):
        ops = _commit_ops(manifest.state, data)
        if data.draw(st.booleans()):
            manifest.state_after(ops)
        state = manifest.commit(ops)
        if state.seq % EVERY == 0:
            assert store.get(checkpoint_key(state.seq)) == encode_record(state.to_wire())
        if data.draw(st.integers(0, 9)) == 0:
            manifest = Manifest.open(store, checkpoint_every=EVERY)


def test_a_checkpoint_packs_only_the_streams_changed_since_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = CheckpointEncoder()
    state = ManifestState()
    state = _afresh(state, [["create_stream", s, 0] for s in range(1, 101)])
    state = _afresh(state, [_object_op(state, list(range(1, 101)), True, 10)])
    with packs_counted(monkeypatch, StreamMeta, "stream_id") as packed:
        encoder.encode(state)  # the first packs every stream: nothing was kept
    assert sorted(packed) == list(range(1, 101))
    state = _afresh(state, [["trim", 7, 3], ["open_stream", 9, 2]])
    state = _afresh(state, [_object_op(state, [11, 12], True, 5)])  # their end offsets move
    state = _afresh(state, [["delete_stream", 13], ["create_stream", 101, 0]])
    with packs_counted(monkeypatch, StreamMeta, "stream_id") as packed:
        body = encoder.encode(state)
    assert body == _packed_afresh(state)
    assert sorted(packed) == [7, 9, 11, 12, 101]


def test_a_stream_set_on_the_state_by_hand_is_packed_again() -> None:
    """A map set on a state other than by an operation is not in its
    record: the encoder packs every stream afresh rather than trust it."""
    encoder = CheckpointEncoder()
    state = _afresh(ManifestState(), [["create_stream", 1, 0], ["create_stream", 2, 0]])
    encoder.encode(state)
    changed = state.copy()
    changed.streams = changed.streams.set(1, StreamMeta(1, epoch=9, end_offset=4))
    assert encoder.encode(changed) == _packed_afresh(changed)
    later = _afresh(changed, [["trim", 2, 0]])  # a copy of it does not trust it either
    assert encoder.encode(later) == _packed_afresh(later)


def test_the_records_of_the_commits_since_a_checkpoint_are_all_that_is_kept() -> None:
    """A checkpoint's record is cut from the ones before it, so a writer
    keeps the records of the commits since its last checkpoint, never the
    whole history's."""
    encoder = CheckpointEncoder()
    state = _afresh(ManifestState(), [["create_stream", 1, 0]])
    for _ in range(5):
        state = _afresh(state, [["trim", 1, 0]])
    encoder.encode(state)
    for _ in range(3):
        state = _afresh(state, [["open_stream", 1, state.streams[1].epoch + 1]])
    chain: list[Any] = []
    node = state._changes
    while node is not None:
        chain.append(node)
        node = node.parent
    assert len(chain) == 4  # three commits' records and the checkpoint's, sealed
    assert chain[-1].sealed and all(not n.sealed for n in chain[:-1])
    body = encoder.encode(state)
    assert msgpack.unpackb(body, raw=False, strict_map_key=False)["streams"] == [[1, 3, 0, 0, 0]]


@settings(max_examples=25, deadline=None)
@given(st.data(), st.booleans())
def test_checkpoints_after_a_refused_or_lost_checkpoint_put_are_what_a_fresh_encoder_writes(
    data: st.DataObject, background: bool
) -> None:
    """A checkpoint's PUT refused by the store, or written with its answer
    lost, has still sealed the record of the state it encoded: every later
    checkpoint must name what changed since that state, and a reopen
    reads the last state committed."""
    store = _LosesCheckpointAnswers(MemoryStore())
    manifest = Manifest.open(store, checkpoint_every=EVERY, background_cleanup=background)
    for _ in range(data.draw(st.integers(EVERY, 40))):
        ops = _commit_ops(manifest.state, data)
        fault = data.draw(st.sampled_from(["none", "refused", "lost"]))
        if fault == "refused":
            store.fail("put", prefix=CHECKPOINT_PREFIX)
        store.lose_checkpoint_answers = fault == "lost"
        state = manifest.commit(ops)
        manifest.join_cleanup(timeout=30)
        store.heal()
        store.lose_checkpoint_answers = False
        if state.seq % EVERY == 0:
            key = checkpoint_key(state.seq)
            if fault == "refused":
                assert not store.inner.list(key)
            else:
                assert store.inner.get(key) == encode_record(state.to_wire())
    reopened = Manifest.open(store, checkpoint_every=EVERY)
    assert _entries(reopened.state) == _entries(manifest.state)


class _LosesCheckpointAnswers(FaultyStore):
    """Checkpoint PUTs land in the store and answer with an error while
    ``lose_checkpoint_answers``, as a request that timed out after the
    store wrote it does."""

    lose_checkpoint_answers = False

    def put(self, key: str, data: ObjectData) -> str:
        version = super().put(key, data)
        if self.lose_checkpoint_answers and key.startswith(CHECKPOINT_PREFIX):
            raise InjectedFault("put", key)
        return version


def _entries(state: ManifestState) -> dict[str, Any]:
    """The body but for what a reopen's own fence changes."""
    fenced = ("seq", "epoch", "owner", "owner_since", "fence_versions")
    return {key: value for key, value in state.to_wire().items() if key not in fenced}


def test_commits_made_while_a_background_checkpoint_encodes_reach_the_next_checkpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The clean-up thread encodes a checkpoint while commits go on: a
    commit made between the state it encodes and its seal, and a
    checkpoint that replaces one still waiting for the thread, must both
    be in the next checkpoint's bytes."""
    store = _KeepsCheckpoints()
    manifest = Manifest.open(store, checkpoint_every=EVERY, background_cleanup=True)
    manifest.commit([["create_stream", s, 0] for s in range(1, 9)])
    sealing, resume = threading.Event(), threading.Event()
    seal_changes = ManifestState.seal_changes

    def held(state: ManifestState) -> Any:
        if threading.current_thread() is not threading.main_thread():
            sealing.set()
            assert resume.wait(30)
        return seal_changes(state)

    monkeypatch.setattr(ManifestState, "seal_changes", held)
    states: dict[int, ManifestState] = {}
    while manifest.state.seq % EVERY:
        state = manifest.commit([["trim", 1, 0]])
        states[state.seq] = state
    assert sealing.wait(30)  # encoded, not yet sealed: the commits go on
    for stream_id in range(2, 9):
        state = manifest.commit([["open_stream", stream_id, 5], ["trim", stream_id, 0]])
        states[state.seq] = state
    resume.set()
    manifest.join_cleanup(timeout=30)
    monkeypatch.setattr(ManifestState, "seal_changes", seal_changes)
    for stream_id in range(1, 9):
        state = manifest.commit([["open_stream", stream_id, 9]])
        states[state.seq] = state
        manifest.join_cleanup(timeout=30)
    # The held one, the last of those made while it was held (the ones
    # before it replaced while waiting), and those after.
    assert len(store.written) >= 4
    for seq, body in store.written.items():
        assert body == encode_record(states[seq].to_wire())


class _KeepsCheckpoints(MemoryStore):
    """Keeps each checkpoint's body as written, the ones clean-up deletes too."""

    def __init__(self) -> None:
        super().__init__()
        self.written: dict[int, bytes] = {}

    def put(self, key: str, data: ObjectData) -> str:
        if key.startswith(CHECKPOINT_PREFIX):
            self.written[seq_of(key)] = bytes(joined(data))
        return super().put(key, data)


def test_a_writer_that_checkpoints_seldom_keeps_a_bounded_chain_of_records() -> None:
    """``checkpoint_every`` has no upper bound: the records of the commits
    since the last checkpoint are cut at ``LONGEST_CHAIN``, and the
    checkpoint after still writes the state's bytes."""
    encoder = CheckpointEncoder()
    state = _afresh(ManifestState(), [["create_stream", s, 0] for s in range(1, 5)])
    encoder.encode(state)
    for n in range(2 * LONGEST_CHAIN):
        state = _afresh(state, [["trim", 1 + n % 4, n]])
    chain = 0
    node = state._changes
    while node is not None:
        chain += 1
        node = node.parent
    assert chain <= LONGEST_CHAIN + 1
    assert encoder.encode(state) == _packed_afresh(state)


@pytest.mark.parametrize("background", [False, True])
def test_a_checkpoint_whose_encoding_fails_fails_neither_the_commit_nor_the_next_checkpoint(
    monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    """The commit that reached the checkpoint has written its version: it
    returns, the clean-up thread ends (join_cleanup does not wait out
    its timeout), and the next checkpoint is the bytes of its state."""
    store = _KeepsCheckpoints()
    manifest = Manifest.open(store, checkpoint_every=EVERY, background_cleanup=background)
    manifest.commit([["create_stream", s, 0] for s in range(1, 5)])
    encode = CheckpointEncoder.encode
    failures = []

    def fails_once_part_way(encoder: CheckpointEncoder, state: ManifestState) -> bytes:
        if not failures:
            failures.append(state.seq)
            encode(encoder, state)  # what it kept is changed, then it fails
            raise MemoryError
        return encode(encoder, state)

    monkeypatch.setattr(CheckpointEncoder, "encode", fails_once_part_way)
    states = {}
    for n in range(3 * EVERY):
        state = manifest.commit([["trim", 1 + n % 4, n]])
        states[state.seq] = state
        manifest.join_cleanup(timeout=30)
        assert manifest._checkpoint_writer._cleaner is None
    assert failures and failures[0] not in store.written
    assert len(store.written) >= 2
    for seq, body in store.written.items():
        assert body == encode_record(states[seq].to_wire())
