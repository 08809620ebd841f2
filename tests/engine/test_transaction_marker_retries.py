"""A transaction's marker that the store refuses (for room) or that fails
(an I/O error, nothing accepted) on one partition is written again for
that partition alone, with backoff, as Kafka's
TransactionMarkerRequestCompletionHandler retries a partition's marker:
every partition ends with exactly one marker, the EndTxn is answered
once, the Complete record follows the last marker. A partition deleted
meanwhile is dropped; a store that failed ends the completion for the
next open (docs/design/0108)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import engine
from engine.engine import Engine
from engine.errors import ConcurrentTransactions, CoordinatorCannotWrite
from engine.transactions.metadata import TV_2, TxnState
from engine.types import TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.engine.helpers_records import produce_in_transaction
from tests.engine.reopening import reopening
from tests.engine.test_transaction_write_failures import TP, _open_v2_at_the_last_epoch
from tests.engine.test_transactions import control_batches, values
from tests.engine.txn_state_faults import RefusedMarkers, io_error, no_room, store_failed

TIMEOUT = 10.0


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Opens the engine on the same WAL and bucket each time (closing the
    one before); topic t has two partitions."""
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    yield from reopening(tmp_path, config, "t", 2)


def _open(e: Engine, tps: list[TopicPartition]) -> tuple[int, int]:
    """Producer "x" with one record in each of ``tps``, in an open transaction."""
    producer_id, epoch = e.transactions.init_producer_id("x", 60_000).result(TIMEOUT)
    e.transactions.add_partitions("x", producer_id, epoch, tps).result(TIMEOUT)
    for tp in tps:
        produce_in_transaction(
            e, tp.topic, tp.partition, f"{tp.topic}-{tp.partition}".encode(), producer_id, epoch
        )
    return producer_id, epoch


def _wait_for_state(e: Engine, state: TxnState) -> None:
    deadline = time.monotonic() + TIMEOUT
    while e.transactions.describe("x").state is not state:
        assert time.monotonic() < deadline, f"never {state.value}"
        time.sleep(0.01)


def _outcomes(e: Engine, topic: str, partition: int) -> list[tuple[int, bool]]:
    return [(pid, marker.commit) for _, pid, _, marker in control_batches(e, topic, partition)]


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
@pytest.mark.parametrize("make", [no_room, io_error], ids=["no room", "io error"])
def test_a_refused_marker_is_written_again_on_its_partition_alone(
    node: Callable[[], Engine],
    monkeypatch: pytest.MonkeyPatch,
    commit: bool,
    make: Callable[[int], BaseException],
) -> None:
    e = node()
    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]
    producer_id, epoch = _open(e, tps)
    with monkeypatch.context() as faults:
        refused = RefusedMarkers(faults, e, ("t", 1), 3, make)
        going_on = e.transactions.end_transaction("x", producer_id, epoch, commit)
        assert going_on.result(TIMEOUT) == (producer_id, epoch)
        _wait_for_state(e, TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT)
        assert refused.refused == 3
    for tp in tps:
        assert _outcomes(e, "t", tp.partition) == [(producer_id, commit)], tp
    assert not e.transactions._table.is_pending("x")
    expected = [b"t-0", b"t-1"] if commit else []
    assert sorted(values(e, "t", "read_committed", partitions=2)) == expected
    assert sorted(values(e, "t", "read_uncommitted", partitions=2)) == [b"t-0", b"t-1"]
    e = node()  # what a restart finds
    assert e.transactions.describe("x").state is (
        TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    )
    assert sorted(values(e, "t", "read_committed", partitions=2)) == expected
    for tp in tps:
        assert _outcomes(e, "t", tp.partition) == [(producer_id, commit)], tp


def test_a_partition_deleted_while_its_marker_is_refused_is_dropped(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's coordinator skips a partition it finds no leader for (deleted
    meanwhile): the transaction completes with the other partitions' markers."""
    e = node()
    e.create_topic("gone", 1)
    tps = [TopicPartition("gone", 0), TopicPartition("t", 0)]
    producer_id, epoch = _open(e, tps)
    with monkeypatch.context() as faults:
        refused = RefusedMarkers(faults, e, ("gone", 0), 1_000_000, no_room)
        e.transactions.end_transaction("x", producer_id, epoch, True).result(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while refused.refused < 2:  # written again, with its backoff
            assert time.monotonic() < deadline, f"written again {refused.refused - 1} times"
            time.sleep(0.01)
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        assert e.transactions._table.is_pending("x")
        e.delete_topic("gone")
        _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    assert _outcomes(e, "t", 0) == [(producer_id, True)]
    assert values(e, "t", "read_committed") == [b"t-0"]


def test_a_marker_a_failed_store_refuses_ends_the_completion_for_the_next_open(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that can no longer be written stops the completion, as a
    Kafka coordinator that loses its epoch stops sending markers: the
    EndTxn is answered NOT_COORDINATOR, nothing is written again, and the
    next open completes the transaction."""
    e = node()
    tps = [TopicPartition("t", 0), TopicPartition("t", 1)]
    producer_id, epoch = _open(e, tps)
    with monkeypatch.context() as faults:
        refused = RefusedMarkers(faults, e, ("t", 1), 1_000_000, store_failed)
        with pytest.raises(CoordinatorCannotWrite):
            e.transactions.end_transaction("x", producer_id, epoch, True).result(TIMEOUT)
        time.sleep(0.2)  # past three backoffs: nothing is written again
        assert refused.refused == 1
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        assert not e.transactions._table.is_pending("x")
        e.close()
    e = node()
    _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    assert sorted(values(e, "t", "read_committed", partitions=2)) == [b"t-0", b"t-1"]


def test_a_rotating_end_whose_marker_keeps_failing_is_answered_with_the_new_id(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transactions v2 end at the last epoch whose marker keeps failing
    for a cause not the store's is written again for as long as it fails
    (Kafka's channel retries it), but its EndTxn is answered at the first
    failure, with the new producer id at epoch 0, as Kafka 4 answers a v2
    EndTxn once Prepare* is durable; the new id's requests are told to
    wait (CONCURRENT_TRANSACTIONS) until the transaction completes, and
    then it begins the next one."""
    e, producer_id, epoch = _open_v2_at_the_last_epoch(node)
    produce_in_transaction(e, "t", 0, b"t-0", producer_id, epoch)
    with monkeypatch.context() as faults:
        refused = RefusedMarkers(faults, e, ("t", 0), 1_000_000, io_error)
        ended = e.transactions.end_transaction("x", producer_id, epoch, True, TV_2)
        new_producer_id, new_epoch = ended.result(TIMEOUT)
        assert new_producer_id != producer_id and new_epoch == 0
        deadline = time.monotonic() + TIMEOUT
        while refused.refused < 3:  # still written again after the answer
            assert time.monotonic() < deadline, f"written again {refused.refused - 1} times"
            time.sleep(0.01)
        with pytest.raises(ConcurrentTransactions):
            e.transactions.add_partitions("x", new_producer_id, 0, [TP], TV_2).result(TIMEOUT)
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        refused.heal()
        _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    assert _outcomes(e, "t", 0) == [(producer_id, True)]
    assert values(e, "t", "read_committed") == [b"t-0"]
    e.transactions.add_partitions("x", new_producer_id, 0, [TP], TV_2).result(TIMEOUT)


def test_a_rotating_end_answered_before_a_restart_completes_with_the_new_id(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new producer id a rotating end was answered with while its
    marker kept failing survives a restart: the next open writes the
    marker and the Complete record, which hands the id to that producer
    id, whose next transaction then commits, and no other transactional
    id is given it."""
    e, producer_id, epoch = _open_v2_at_the_last_epoch(node)
    produce_in_transaction(e, "t", 0, b"t-0", producer_id, epoch)
    with monkeypatch.context() as faults:
        RefusedMarkers(faults, e, ("t", 0), 1_000_000, io_error)
        ended = e.transactions.end_transaction("x", producer_id, epoch, True, TV_2)
        new_producer_id, new_epoch = ended.result(TIMEOUT)
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        e = node()
    _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    meta = e.transactions.describe("x")
    assert (meta.producer_id, meta.producer_epoch) == (new_producer_id, new_epoch)
    assert _outcomes(e, "t", 0) == [(producer_id, True)]
    other, _ = e.transactions.init_producer_id("y", 60_000).result(TIMEOUT)
    assert other not in (producer_id, new_producer_id)
    e.transactions.add_partitions("x", new_producer_id, new_epoch, [TP], TV_2).result(TIMEOUT)
    produce_in_transaction(e, "t", 0, b"next", new_producer_id, new_epoch)
    e.transactions.end_transaction("x", new_producer_id, new_epoch, True, TV_2).result(TIMEOUT)
    _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    assert values(e, "t", "read_committed") == [b"t-0", b"next"]
