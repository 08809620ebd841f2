"""The manifest: versions, fencing, lost responses, checkpoints, corruption."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3stream.errors import CorruptObject, Fenced
from s3stream.manifest import Manifest, load_state
from s3stream.manifest_records import (
    CHECKPOINT_PREFIX,
    LOG_PREFIX,
    decode_record,
    delta_key,
    encode_record,
)
from s3stream.manifest_state import KEPT_FENCES, InvalidOperation, ManifestState
from s3stream.objects import ObjectKind
from s3stream.store import MemoryStore, ObjectStore
from tests.s3stream.faults import FaultyStore, InjectedFault


def add_object_op(object_id: int, stream_id: int, start: int, end: int) -> list[object]:
    return [
        "add_object",
        [
            object_id,
            f"objects/{object_id}",
            int(ObjectKind.STREAM_SET),
            100,
            0,
            [[stream_id, start, end, 100]],
        ],
    ]


def test_opening_bumps_the_epoch_each_time(any_store: ObjectStore) -> None:
    epochs = [Manifest.open(any_store).epoch for _ in range(3)]
    assert epochs == [1, 2, 3]
    assert load_state(any_store).epoch == 3


def test_commits_survive_reopen(any_store: ObjectStore) -> None:
    manifest = Manifest.open(any_store)
    manifest.commit([["create_stream", 1, 0], add_object_op(1, 1, 0, 10)])
    manifest.commit([add_object_op(2, 1, 10, 25), ["trim", 1, 5]])
    state = Manifest.open(any_store).state
    stream = state.streams[1]
    assert (stream.start_offset, stream.end_offset) == (5, 25)
    assert state.ranges[1].entries == [(0, 10, 1), (10, 25, 2)]
    assert state.next_object_id == 3


def test_the_older_writer_is_fenced_at_its_next_commit(any_store: ObjectStore) -> None:
    old = Manifest.open(any_store)
    old.commit([["create_stream", 1, 0]])
    new = Manifest.open(any_store)
    with pytest.raises(Fenced) as caught:
        old.commit([add_object_op(1, 1, 0, 10)])
    assert (caught.value.epoch, caught.value.newer_epoch) == (1, 2)
    with pytest.raises(Fenced):
        old.commit([])  # and every commit after
    new.commit([add_object_op(1, 1, 0, 10)])
    assert load_state(any_store).streams[1].end_offset == 10


def test_a_writer_left_behind_by_checkpoints_is_fenced_not_acknowledged(
    memory_store: MemoryStore,
) -> None:
    old = Manifest.open(memory_store, checkpoint_every=4)
    old.commit([["create_stream", 1, 0]])  # version 2
    new = Manifest.open(memory_store, checkpoint_every=4)
    for i in range(1, 12):  # versions 4..14: checkpoints delete the deltas old would follow
        new.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    # Checkpoints deleted the deltas old would follow, but for new's fence
    # (version 3), which they keep: where a fenced writer's next commit lands.
    assert memory_store.list(delta_key(4)) == []
    assert [i.key for i in memory_store.list(delta_key(3))] == [delta_key(3)]
    before = load_state(memory_store)
    with pytest.raises(Fenced) as caught:
        old.commit([add_object_op(99, 1, 110, 120)])  # version 3 is new's fence
    assert (caught.value.epoch, caught.value.newer_epoch) == (1, 2)
    assert old.state.seq == 2
    assert load_state(memory_store).to_wire() == before.to_wire()


def test_a_writer_left_behind_by_more_openers_than_the_kept_fences_is_refused_by_its_check(
    memory_store: MemoryStore,
) -> None:
    old = Manifest.open(memory_store, checkpoint_every=4)
    old.commit([["create_stream", 1, 0]])  # version 2
    for _ in range(KEPT_FENCES + 1):  # versions 3..19: the fence at 3 falls out of the kept
        new = Manifest.open(memory_store, checkpoint_every=4)
    for i in range(1, 12):  # versions 20..30: checkpoints at 20, 24, 28 delete up to 24
        new.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    assert memory_store.list(delta_key(3)) == [] and memory_store.list(delta_key(2)) == []
    before = load_state(memory_store)
    # Version 3 is free again: old's put succeeds, and only the check of
    # version 2 after it shows that no reader will ever read it.
    with pytest.raises(Fenced):
        old.commit([add_object_op(99, 1, 110, 120)])
    assert old.state.seq == 2
    assert load_state(memory_store).to_wire() == before.to_wire()


def test_concurrent_openers_get_distinct_epochs(memory_store: MemoryStore) -> None:
    epochs: list[int] = []
    barrier = threading.Barrier(6)

    def opener() -> None:
        barrier.wait()
        epochs.append(Manifest.open(memory_store).epoch)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(epochs) == [1, 2, 3, 4, 5, 6]


def test_a_lost_put_response_is_recognised_as_our_own_write(memory_store: MemoryStore) -> None:
    faulty = FaultyStore(memory_store)
    manifest = Manifest.open(faulty)
    manifest.commit([["create_stream", 1, 0]])
    faulty.lose_put_responses = True
    healer = threading.Timer(0.2, faulty.heal)
    healer.start()
    manifest.commit([add_object_op(1, 1, 0, 10)])  # retried until the store heals
    healer.join()
    assert faulty.failures >= 1
    state = load_state(memory_store)
    assert state.seq == manifest.state.seq and state.streams[1].end_offset == 10
    manifest.commit([["trim", 1, 3]])  # and the next version follows on
    assert load_state(memory_store).streams[1].start_offset == 3


def test_a_412_earned_by_our_own_retried_write_is_not_a_fence(memory_store: MemoryStore) -> None:
    faulty = FaultyStore(memory_store)
    faulty.retry_lost_prefix = LOG_PREFIX
    faulty.retry_lost_puts = 1  # the fence at open: written, answer lost, retried, 412
    manifest = Manifest.open(faulty)
    assert manifest.epoch == 1 and faulty.retry_lost_puts == 0
    manifest.commit([["create_stream", 1, 0]])
    faulty.retry_lost_puts = 1  # a commit: the same
    manifest.commit([add_object_op(1, 1, 0, 10)])
    manifest.commit([["trim", 1, 4]])  # still the owner: not fenced by itself
    state = load_state(memory_store)
    assert (state.epoch, state.seq) == (1, 4)
    assert (state.streams[1].start_offset, state.streams[1].end_offset) == (4, 10)


def test_a_lost_fence_answer_at_open_is_settled_without_spending_an_epoch(
    memory_store: MemoryStore,
) -> None:
    class LosesOneFenceAnswer(FaultyStore):
        lost = 0

        def _after_put(self, key: str) -> None:
            if key.startswith(LOG_PREFIX) and not self.lost:
                self.lost += 1
                raise InjectedFault("put", key)

    faulty = LosesOneFenceAnswer(memory_store)
    manifest = Manifest.open(faulty)
    assert faulty.lost == 1
    assert (manifest.epoch, manifest.state.seq) == (1, 1)
    assert load_state(memory_store).epoch == 1


def test_open_waits_out_a_store_outage(memory_store: MemoryStore) -> None:
    faulty = FaultyStore(memory_store)
    faulty.fail("put")  # the probe's first put fails until the store heals
    healer = threading.Timer(0.2, faulty.heal)
    healer.start()
    manifest = Manifest.open(faulty)
    healer.join()
    assert faulty.failures >= 1 and manifest.epoch == 1


def test_open_gives_up_on_a_store_that_stays_down_after_its_timeout(
    memory_store: MemoryStore,
) -> None:
    faulty = FaultyStore(memory_store)
    faulty.fail()
    with pytest.raises(InjectedFault):
        Manifest.open(faulty, timeout=0.3)
    assert faulty.failures >= 2  # it retried before giving up
    faulty.heal()
    assert memory_store.list() == []  # and wrote nothing


def test_a_412_from_a_newer_writer_after_our_lost_write_is_a_fence(
    memory_store: MemoryStore,
) -> None:
    faulty = FaultyStore(memory_store)
    old = Manifest.open(faulty)
    old.commit([["create_stream", 1, 0]])
    faulty.lose_put_responses = True  # the old writer's next version is written, unanswered
    with pytest.raises(InjectedFault):
        old.commit([add_object_op(1, 1, 0, 10)], deadline=0)
    faulty.heal()
    new = Manifest.open(memory_store)  # loads the unanswered version, fences after it
    assert new.state.streams[1].end_offset == 10
    with pytest.raises(Fenced) as caught:
        old.commit([["trim", 1, 2]])  # settles its own write, then meets the fence
    assert (caught.value.epoch, caught.value.newer_epoch) == (1, 2)
    assert load_state(memory_store).streams[1].start_offset == 0


def test_a_commit_gives_up_at_its_deadline_and_settles_later(memory_store: MemoryStore) -> None:
    import time

    from s3stream.store import ObjectStoreError
    from tests.s3stream.faults import LoseThenFail

    faulty = LoseThenFail(memory_store)
    manifest = Manifest.open(faulty)
    faulty.armed = True
    with pytest.raises(ObjectStoreError):
        manifest.commit([["create_stream", 1, 0]], deadline=time.monotonic() + 0.2)
    faulty.armed = False
    faulty.heal()
    manifest.commit([["create_stream", 2, 0]])
    state = load_state(memory_store)
    assert sorted(state.streams) == [1, 2]  # the unsettled version was kept, once


def test_invalid_operations_are_refused_before_anything_is_written(
    memory_store: MemoryStore,
) -> None:
    manifest = Manifest.open(memory_store)
    before = [i.key for i in memory_store.list()]
    with pytest.raises(InvalidOperation):
        manifest.commit([["trim", 1, 0], ["open_stream", 9, 1]])
    assert [i.key for i in memory_store.list()] == before
    manifest.commit([["create_stream", 1, 0]])  # the manifest still works


def test_checkpoints_bound_what_an_opener_reads(memory_store: MemoryStore) -> None:
    manifest = Manifest.open(memory_store, checkpoint_every=4)
    manifest.commit([["create_stream", 1, 0]])
    for i in range(1, 30):
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    checkpoints = [i.key for i in memory_store.list(CHECKPOINT_PREFIX)]
    deltas = [i.key for i in memory_store.list(LOG_PREFIX)]
    assert len(checkpoints) == 2
    assert len(deltas) <= 8  # since the older checkpoint, not the whole history
    state = load_state(memory_store)
    assert state.streams[1].end_offset == 290 and len(state.objects) == 29
    assert state.seq == manifest.state.seq


def test_checkpoint_round_trip_equals_replayed_state(memory_store: MemoryStore) -> None:
    manifest = Manifest.open(memory_store, checkpoint_every=1000)
    manifest.commit([["create_stream", 1, 0], ["create_stream", 2, 5]])
    manifest.commit([add_object_op(1, 1, 0, 10), add_object_op(2, 2, 0, 4), ["open_stream", 2, 7]])
    manifest.commit([["remove_object", 2, 99], ["delete_stream", 1]])
    state = manifest.state
    again = ManifestState.from_wire(decode_record("k", encode_record(state.to_wire())))
    assert again.to_wire() == state.to_wire()
    assert again.ranges[2].entries == state.ranges[2].entries == []
    assert again.garbage == {"objects/2": 99}


@given(st.binary(min_size=1, max_size=200), st.data())
def test_damaged_manifest_records_are_detected(body: bytes, data: st.DataObject) -> None:
    record = bytearray(encode_record({"seq": 1, "ops": [body]}))
    position = data.draw(st.integers(0, len(record) - 1))
    record[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptObject):
        decode_record("k", bytes(record))


def test_a_missing_version_is_reported(memory_store: MemoryStore) -> None:
    manifest = Manifest.open(memory_store, checkpoint_every=1000)
    for i in range(1, 4):
        manifest.commit([["create_stream", i, 0]])
    memory_store.delete(delta_key(2))
    with pytest.raises(CorruptObject, match="missing"):
        load_state(memory_store)


def _drop_streams(body: dict[str, object]) -> None:
    del body["streams"]


def _an_unknown_object_kind(body: dict[str, object]) -> None:
    objects = body["objects"]
    assert isinstance(objects, list) and objects
    objects[0][2] = 250  # no ObjectKind


def _a_short_object(body: dict[str, object]) -> None:
    objects = body["objects"]
    assert isinstance(objects, list) and objects
    objects[0] = objects[0][:3]


@pytest.mark.parametrize("mangle", [_drop_streams, _an_unknown_object_kind, _a_short_object])
@pytest.mark.parametrize("opened", [False, True], ids=["load", "open"])
def test_a_checkpoint_that_checks_but_does_not_decode_gives_way_to_the_one_before(
    memory_store: MemoryStore, mangle: Callable[[dict[str, object]], None], opened: bool
) -> None:
    """A checkpoint whose checksum holds but whose body is not a state (a
    writer's bug, or a newer layout) is damage like a failed checksum: the
    checkpoint before it and the deltas after that rebuild the version,
    for a reader (load_state) and for the next writer (Manifest.open)."""
    manifest = Manifest.open(memory_store, checkpoint_every=4)
    manifest.commit([["create_stream", 1, 0]])
    for i in range(1, 10):
        manifest.commit([add_object_op(i, 1, (i - 1) * 10, i * 10)])
    wanted = manifest.state.to_wire()
    checkpoints = [i.key for i in memory_store.list(CHECKPOINT_PREFIX)]
    assert len(checkpoints) == 2
    newest = checkpoints[-1]
    body = decode_record(newest, memory_store.get(newest))
    mangle(body)
    memory_store.put(newest, encode_record(body))
    if opened:
        state = Manifest.open(memory_store, checkpoint_every=4).state
        assert state.streams[1].end_offset == 90 and len(state.objects) == 9
    else:
        assert load_state(memory_store).to_wire() == wanted
