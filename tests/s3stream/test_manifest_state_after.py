"""The state an upload is laid out against is the state its commit makes:
``Manifest.state_after`` applies the operations once and the commit of the
same operations adopts that state, unless another version was committed
or settled in between, when the commit applies them to the newer state."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3stream import REMOTE
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_state import InvalidOperation, ManifestState, Op
from s3stream.store import MemoryStore, ObjectStoreError
from tests.s3stream.faults import LoseThenFail
from tests.s3stream.test_checkpoint_encoding import _step
from tests.s3stream.test_manifest import add_object_op
from tests.s3stream.test_remote_cadence import TIMEOUT, HeldPuts, opened


def test_the_commit_adopts_the_state_laid_out_against(memory_store: MemoryStore) -> None:
    manifest = Manifest.open(memory_store)
    manifest.commit([["create_stream", 1, 0]])
    ops = [add_object_op(1, 1, 0, 10), ["trim", 1, 4]]
    after = manifest.state_after(ops)
    assert manifest.state.streams[1].end_offset == 0  # nothing committed yet
    committed = manifest.commit(ops)
    assert committed is after and manifest.state is after
    assert after.seq == 3 and after.streams[1].start_offset == 4
    assert load_state(memory_store).to_wire() == after.to_wire()


def test_a_commit_in_between_is_not_lost_by_the_foreseen_state(
    memory_store: MemoryStore,
) -> None:
    manifest = Manifest.open(memory_store)
    manifest.commit([["create_stream", 1, 0], ["create_stream", 2, 0]])
    ops = [add_object_op(1, 1, 0, 10)]
    stale = manifest.state_after(ops)
    manifest.commit([add_object_op(2, 2, 0, 5)])  # another commit takes the next version
    committed = manifest.commit(ops)
    assert committed is not stale
    assert committed.streams[2].end_offset == 5 and committed.streams[1].end_offset == 10
    assert load_state(memory_store).to_wire() == committed.to_wire()


def test_other_operations_are_applied_afresh(memory_store: MemoryStore) -> None:
    manifest = Manifest.open(memory_store)
    manifest.commit([["create_stream", 1, 0]])
    manifest.state_after([add_object_op(1, 1, 0, 10)])
    committed = manifest.commit([["trim", 1, 0]])
    assert 1 not in committed.objects and committed.streams[1].end_offset == 0


def test_a_write_settled_in_between_is_kept(memory_store: MemoryStore) -> None:
    faulty = LoseThenFail(memory_store)
    manifest = Manifest.open(faulty)
    manifest.commit([["create_stream", 1, 0]])
    faulty.armed = True
    with pytest.raises(ObjectStoreError):
        manifest.commit([add_object_op(1, 1, 0, 10)], deadline=time.monotonic() + 0.2)
    faulty.armed = False
    faulty.heal()
    ops = [["trim", 1, 3]]
    stale = manifest.state_after(ops)  # laid out before the lost write is settled
    committed = manifest.commit(ops)  # settles it first
    assert committed is not stale
    assert committed.streams[1].end_offset == 10 and committed.streams[1].start_offset == 3
    assert load_state(memory_store).to_wire() == committed.to_wire()


def test_an_operation_that_does_not_apply_is_refused_before_the_commit(
    memory_store: MemoryStore,
) -> None:
    manifest = Manifest.open(memory_store)
    with pytest.raises(InvalidOperation):
        manifest.state_after([["open_stream", 9, 1]])
    assert manifest.state.seq == 1 and load_state(memory_store).seq == 1


def test_an_upload_put_ahead_copies_the_state_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends waiting for a remote acknowledgement make the uploader lay
    the next block out against the state its commit makes: that state is
    the commit's own, so each commit copies the manifest's maps once."""
    store = HeldPuts()
    stream_store = opened(tmp_path / "data", store)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        copies = 0
        copy = ManifestState.copy

        def counted(state: ManifestState) -> ManifestState:
            nonlocal copies
            copies += 1
            return copy(state)

        monkeypatch.setattr(ManifestState, "copy", counted)
        commits = stream_store.manifest.commits
        first = stream_store.submit(stream, 0, 0, b"a", REMOTE)
        assert store.started.acquire(timeout=TIMEOUT), "no upload started for a waiting append"
        later = stream_store.submit(stream, 1, 1, b"b", REMOTE)  # waiting while 1 commits
        store.releases.release()
        assert first.result(TIMEOUT) == 1
        assert store.started.acquire(timeout=TIMEOUT), "the next upload was not put"
        store.releases.release()
        assert later.result(TIMEOUT) == 2
        assert stream_store.manifest.commits - commits == 2
        assert copies == 2
    finally:
        store.releases.release(8)
        stream_store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_foreseen_state_commits_what_applying_afresh_commits(data: st.DataObject) -> None:
    """Whatever comes between a put-ahead's ``state_after`` and the commit
    of its operations (nothing, another commit, an operation refused, or a
    write whose answer was lost before it, which the commit settles first),
    the manifest holds what applying every committed operation in order to
    the opened state makes, and so does the store. Every version handed
    out, committed or laid out and left, reads as it did when it was made
    however many versions are made after it: they share their maps and
    entries, which no later version may change under a reader holding it."""
    faulty = LoseThenFail(MemoryStore())
    manifest = Manifest.open(faulty)
    model = manifest.state
    held: list[tuple[ManifestState, Any]] = []
    for _ in range(data.draw(st.integers(1, 10), label="commits")):
        between = data.draw(st.sampled_from(["nothing", "commit", "refused", "lost"]))
        if between == "lost":  # its answer lost, then the store down past the deadline
            lost = _step(model, data)
            faulty.armed = True
            with pytest.raises(ObjectStoreError):
                manifest.commit(lost, deadline=time.monotonic() + 0.05)
            faulty.armed = False
            faulty.heal()
            assert manifest.unsettled
        foreseen_ops = _step(model, data)  # laid out against the state known now
        foreseen = manifest.state_after(foreseen_ops)
        assert foreseen.to_wire() == _afresh(model, foreseen_ops).to_wire()
        if between == "lost":
            model = _afresh(model, lost)  # the commit below settles it first
        elif between == "commit":
            other = _step(model, data)
            manifest.commit(other)
            model = _afresh(model, other)
        elif between == "refused":
            with pytest.raises(InvalidOperation):
                manifest.commit([["open_stream", model.next_stream_id, 1]])
        try:
            expected = _afresh(model, foreseen_ops)
        except InvalidOperation:
            with pytest.raises(InvalidOperation):
                manifest.commit(foreseen_ops)
            manifest.settle()
        else:
            committed = manifest.commit(foreseen_ops)
            assert (committed is foreseen) == (between == "nothing")
            model = expected
        assert manifest.state.to_wire() == model.to_wire()
        assert load_state(faulty).to_wire() == model.to_wire()
        held += [(s, _as_read(s)) for s in (foreseen, manifest.state, model)]
        assert all(_as_read(state) == read for state, read in held)


def _as_read(state: ManifestState) -> Any:
    """All a reader of the state can see: its wire form and each stream's ranges."""
    return state.to_wire(), {sid: list(r.entries) for sid, r in state.ranges.items()}


def _afresh(state: ManifestState, ops: list[Op]) -> ManifestState:
    after = state.copy()
    for op in ops:
        after.apply(op)
    after.seq = state.seq + 1
    return after
