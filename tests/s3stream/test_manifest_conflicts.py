"""Stores that ignore conditional writes: refused at open unless the operator
names single-writer mode; and a manifest history forked by two writers on
such a store still opens, keeping the first committed history and reporting
the versions it leaves out."""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3stream import ConditionalWritesNotEnforced, Fenced, StreamStore, StreamStoreConfig
from s3stream.conditional_probe import PROBE_PREFIX, check_conditional_writes
from s3stream.manifest import Manifest
from s3stream.manifest_load import load
from s3stream.manifest_records import delta_key, encode_record
from s3stream.store import (
    ConditionalWrites,
    LocalStore,
    MemoryStore,
    ObjectStore,
    PreconditionFailed,
    open_store,
)
from tests.s3stream.conftest import S3Endpoint
from tests.s3stream.faults import IgnoresConditions
from tests.s3stream.test_manifest import add_object_op

SINGLE_WRITER = ConditionalWrites.UNENFORCED_SINGLE_WRITER


def test_the_probe_passes_on_every_backend_and_leaves_nothing(any_store: ObjectStore) -> None:
    check_conditional_writes(any_store)
    assert any_store.list() == []


def test_a_store_that_ignores_conditions_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    inner = MemoryStore()
    with pytest.raises(ConditionalWritesNotEnforced) as caught:
        Manifest.open(IgnoresConditions(inner))
    assert "If-None-Match" in str(caught.value) and "unenforced-single-writer" in str(caught.value)
    assert caught.value.url == "ignores-conditions+memory://"
    with pytest.raises(ConditionalWritesNotEnforced):
        StreamStore.open(tmp_path / "node", IgnoresConditions(inner))
    assert inner.list() == []


def test_a_store_that_ignores_only_if_match_is_refused(memory_store: MemoryStore) -> None:
    class IgnoresIfMatch(IgnoresConditions):
        def put_if_absent(self, key: str, data: bytes) -> str:  # type: ignore[override]
            return self.inner.put_if_absent(key, data)

    with pytest.raises(ConditionalWritesNotEnforced, match="If-Match"):
        Manifest.open(IgnoresIfMatch(memory_store))
    assert memory_store.list() == []


@pytest.mark.parametrize("own", [LocalStore, MemoryStore], ids=["local", "memory"])
def test_a_store_that_checks_its_own_conditions_is_opened_without_a_probe(
    tmp_path: Path, own: type[ObjectStore]
) -> None:
    class Recording(own):  # type: ignore[misc,valid-type]
        conditional_puts: list[str] = []  # noqa: RUF012

        def put_if_absent(self, key: str, data: bytes) -> str:
            self.conditional_puts.append(key)
            return str(super().put_if_absent(key, data))

    store = Recording(tmp_path / "bucket") if own is LocalStore else Recording()
    Manifest.open(store)
    assert store.conditional_puts == [delta_key(1)]  # the fence, and no probe before it
    Recording.checks_its_own_conditions = False  # as a server's store: probed
    Manifest.open(store)
    assert any(key.startswith(PROBE_PREFIX) for key in store.conditional_puts)


def test_single_writer_mode_skips_the_probe(memory_store: MemoryStore) -> None:
    store = IgnoresConditions(memory_store, SINGLE_WRITER)
    manifest = Manifest.open(store)
    manifest.commit([["create_stream", 1, 0]])
    assert set(Manifest.open(store).state.streams) == {1}


def test_two_writers_on_an_unenforcing_store_fork_the_log_and_the_first_history_wins(
    tmp_path: Path, memory_store: MemoryStore
) -> None:
    store = IgnoresConditions(memory_store, SINGLE_WRITER)  # the operator's claim is wrong
    first = Manifest.open(store)  # version 1: fence to epoch 1
    second = Manifest.open(store)  # version 2: fence to epoch 2
    # The first writer does not know it was fenced: it writes version 2 over
    # the second's fence. The second writes version 3 on top of its own view;
    # it lands, but the second sees its version 2 replaced and stops.
    first.commit([["create_stream", 1, 0], add_object_op(1, 1, 0, 10)])
    with pytest.raises(Fenced):
        second.commit([["create_stream", 1, 0], add_object_op(1, 1, 0, 7)])
    loaded = load(memory_store)
    assert loaded.state.streams[1].end_offset == 10  # the first writer's history
    assert [(c.key, c.epoch) for c in loaded.conflicts] == [(delta_key(3), 2)]
    with StreamStore.open(tmp_path / "third", store, StreamStoreConfig()) as third:
        assert third.recovery.manifest_conflicts == (delta_key(3),)
        assert third.remote_end_offset(1) == 10
        assert third.manifest.epoch == 3  # above both writers' epochs


def test_a_delta_whose_operations_do_not_apply_is_left_out_whole(
    memory_store: MemoryStore,
) -> None:
    def delta(seq: int, ops: list[object], writer: str = "w1", epoch: int = 1) -> None:
        body = {"seq": seq, "epoch": epoch, "writer": writer, "ops": ops}
        memory_store.put(delta_key(seq), encode_record(body))

    delta(1, [["fence", 1]])
    delta(2, [["create_stream", 1, 0], add_object_op(3, 1, 0, 5)])
    # Version 3 creates stream 2, then adds object 3 again: "object 3 was
    # already added". None of it may stay, not even the stream it created.
    delta(3, [["create_stream", 2, 0], add_object_op(3, 1, 5, 8)])
    delta(4, [["trim", 1, 2]])
    delta(5, [["create_stream", 3, 0]], writer="w2")  # not the owner of epoch 1
    loaded = load(memory_store)
    assert sorted(loaded.state.streams) == [1]
    assert loaded.state.streams[1].start_offset == 2
    assert loaded.state.seq == 5
    assert [c.seq for c in loaded.conflicts] == [3, 5]
    assert "object 3 was already added" in loaded.conflicts[0].reason
    manifest = Manifest.open(memory_store)  # and the bucket opens, past them
    assert (manifest.state.seq, manifest.epoch) == (6, 2)
    assert [c.seq for c in manifest.conflicts] == [3, 5]


def test_single_writer_mode_on_s3_checks_each_condition_itself(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store(f"single-{uuid.uuid4().hex}", conditional_writes=SINGLE_WRITER.value)
    try:
        first = store.put_if_absent("k", b"one")
        with pytest.raises(PreconditionFailed, match="checked before the write"):
            store.put_if_absent("k", b"two")
        second = store.put_if_version("k", b"three", first)
        with pytest.raises(PreconditionFailed, match="checked before the write"):
            store.put_if_version("k", b"four", first)
        assert store.get_versioned("k") == (b"three", second)
        store.delete("k")
    finally:
        store.close()


def test_an_unknown_conditional_writes_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="conditional_writes"):
        open_store("s3://bucket/p?conditional_writes=sometimes")


@given(
    st.lists(
        st.tuples(st.sampled_from("ab"), st.sampled_from(["create", "add", "trim"])),
        max_size=16,
    )
)
def test_any_interleaving_of_two_writers_leaves_an_openable_bucket(
    steps: list[tuple[str, str]],
) -> None:
    inner = MemoryStore()
    store = IgnoresConditions(inner, SINGLE_WRITER)
    writers = {name: Manifest.open(store, checkpoint_every=4) for name in "ab"}
    for name, action in steps:
        writer = writers[name]
        state = writer.state
        if action == "create" or not state.streams:
            ops: list[object] = [["create_stream", state.next_stream_id, 0]]
        elif action == "add":
            stream = max(state.streams)
            end = state.streams[stream].end_offset
            ops = [add_object_op(state.next_object_id, stream, end, end + 5)]
        else:
            stream = min(state.streams)
            ops = [["trim", stream, state.streams[stream].start_offset + 1]]
        with contextlib.suppress(Fenced):
            writer.commit(ops)  # type: ignore[arg-type]
    before = load(inner)
    third = Manifest.open(inner, checkpoint_every=4)  # an enforcing view of the same bucket
    assert third.epoch > max([before.state.epoch] + [c.epoch or 0 for c in before.conflicts])
    third.commit([["create_stream", third.state.next_stream_id, 0]])
    reloaded = load(inner)
    assert reloaded.state.to_wire() == third.state.to_wire()
    assert all(c.seq < third.state.seq for c in reloaded.conflicts)


def test_concurrent_openers_probe_without_disturbing_each_other(any_store: ObjectStore) -> None:
    epochs: list[int] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        barrier.wait(timeout=30)
        epochs.append(Manifest.open(any_store).epoch)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(epochs) == [1, 2, 3, 4]
    assert any_store.list(PROBE_PREFIX) == []
