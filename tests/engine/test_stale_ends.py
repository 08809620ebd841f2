"""Stale and zombie EndTxn and AddPartitionsToTxn requests against the
engine's coordinator, answered as Kafka 4.0's TransactionCoordinator
answers them (engine/transactions/ending.py, docs/design/0090): the
producer id a v2 end at the last epoch moved away from, an epoch before
the current one, a retried end, a v1 end after v2 ends, and requests that
meet a state write or a completion under way."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import engine
from engine.clock import ManualClock
from engine.errors import (
    ConcurrentTransactions,
    InvalidProducerIdMapping,
    InvalidTransactionRequest,
    InvalidTxnState,
    ProducerFenced,
)
from engine.transactions.completion import TransactionCompleter
from engine.transactions.metadata import MAX_EPOCH, TV_2, TxnState
from engine.types import TopicPartition
from tests.engine.conftest import EngineFactory
from tests.engine.test_transactions import TIMEOUT, values, wait_for
from tests.engine.test_transactions_v2 import TV2Client, restarted_at, with_client
from tests.engine.transaction_faults import hold_markers

LAST = MAX_EPOCH - 1
"""The last epoch handed to a producer: a v2 end at it moves the id to a new producer id."""


def at_last_epoch(engine_factory: EngineFactory) -> tuple[engine.Engine, TV2Client]:
    _, client = with_client(engine_factory, 2)
    return restarted_at(engine_factory, client, LAST), client


def moved(engine_factory: EngineFactory) -> tuple[engine.Engine, TV2Client, int]:
    """A v2 commit at the last epoch: the id moved to a new producer id at
    epoch 0. Returns the engine, the client (on the new id) and the old id."""
    e, client = at_last_epoch(engine_factory)
    old = client.producer_id
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    client.commit()
    assert client.producer_id != old and client.epoch == 0
    return e, client, old


def add(e: engine.Engine, producer_id: int, epoch: int, partition: int = 0) -> None:
    e.transactions.add_partitions(
        "app", producer_id, epoch, [TopicPartition("t", partition)], TV_2
    ).result(TIMEOUT)


@pytest.mark.parametrize("commit", [True, False])
def test_the_moved_from_producer_id_is_fenced_while_the_new_ones_transaction_is_open(
    engine_factory: EngineFactory, commit: bool
) -> None:
    """Kafka's retryOnOverflow lets the old producer id through to the
    epoch check, which an open transaction at epoch 0 fails: PRODUCER_FENCED,
    where the old id was refused as another producer's."""
    e, client, old = moved(engine_factory)
    client.begin(("t", 0))  # the new id's transaction, at epoch 0
    with pytest.raises(ProducerFenced):
        client.ended(commit, old, LAST)
    with pytest.raises(InvalidProducerIdMapping):  # not the epoch a move leaves
        client.ended(commit, old, LAST - 1)
    with pytest.raises(InvalidProducerIdMapping):  # Kafka's add knows no retry
        add(e, old, LAST, 1)
    assert e.transactions.describe("app").partitions == {TopicPartition("t", 0)}
    client.send("t", 0, b"b")
    client.commit()  # the open transaction went on untouched
    assert values(e, "t", "read_committed") == [b"a", b"b"]
    with pytest.raises(InvalidProducerIdMapping):  # the new id is past epoch 0 now
        client.ended(commit, old, LAST)


def test_the_old_producer_id_after_init_producer_id_moved_the_id_is_fenced(
    engine_factory: EngineFactory,
) -> None:
    """InitProducerId at the last epoch moves the id too (Kafka's
    prepareProducerIdRotation records the old id as the previous one)."""
    e, client = at_last_epoch(engine_factory)
    old = client.producer_id
    new, epoch = e.transactions.init_producer_id("app", 60_000).result(TIMEOUT)
    assert (new != old, epoch) == (True, 0)
    with pytest.raises(ProducerFenced):
        client.ended(False, old, LAST)
    with pytest.raises(InvalidProducerIdMapping):
        client.ended(False, old, LAST - 1)
    client.producer_id, client.epoch = new, 0
    client.begin(("t", 0))
    with pytest.raises(ProducerFenced):  # and while its transaction is open
        client.ended(True, old, LAST)
    client.send("t", 0, b"a")
    client.commit()
    assert values(e, "t", "read_committed") == [b"a"]


def test_the_retry_of_the_end_that_moved_the_id_and_its_other_outcome(
    engine_factory: EngineFactory,
) -> None:
    _, client, old = moved(engine_factory)
    new = client.producer_id
    assert client.ended(True, old, LAST) == (new, 0)  # the retry
    with pytest.raises(InvalidTxnState):  # a retry of the other outcome
        client.ended(False, old, LAST)


def ended_v1(e: engine.Engine, commit: bool, producer_id: int, epoch: int) -> tuple[int, int]:
    answer: tuple[int, int] = e.transactions.end_transaction(
        "app", producer_id, epoch, commit, 0
    ).result(TIMEOUT)
    return answer


def test_a_v1_end_after_v2_ends_is_checked_as_kafkas_v1_end_is(
    engine_factory: EngineFactory,
) -> None:
    """EndTxn v0-4 (Kafka's endTransactionWithTV1) takes only the current
    producer id and epoch: the epoch before a v2 bump is fenced, and the
    current one's commit of a completed commit is answered, not refused."""
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    client.commit()
    with pytest.raises(ProducerFenced):
        ended_v1(e, True, pid, epoch)
    assert ended_v1(e, True, pid, epoch + 1) == (pid, epoch + 1)
    with pytest.raises(InvalidTxnState):
        ended_v1(e, False, pid, epoch + 1)


def test_a_v1_end_of_the_moved_from_producer_id_is_another_producers(
    engine_factory: EngineFactory,
) -> None:
    e, _, old = moved(engine_factory)
    with pytest.raises(InvalidProducerIdMapping):
        ended_v1(e, True, old, LAST)


@pytest.fixture
def markers_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Markers are written only once the event is set."""
    released = hold_markers(monkeypatch, TIMEOUT)
    yield released
    released.set()


@pytest.mark.parametrize("transaction_version", [0, TV_2])
def test_an_end_meeting_its_transactions_markers_being_written(
    engine_factory: EngineFactory, markers_held: threading.Event, transaction_version: int
) -> None:
    """Kafka answers from the Prepare state while the markers are written:
    the same outcome CONCURRENT_TRANSACTIONS, the other INVALID_TXN_STATE
    (it was CONCURRENT_TRANSACTIONS, as the id is held until complete)."""
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    ending = e.transactions.end_transaction("app", pid, epoch, True, transaction_version)
    wait_for(lambda: e.transactions.describe("app").state is TxnState.PREPARE_COMMIT, "the prepare")
    with pytest.raises(ConcurrentTransactions):
        e.transactions.end_transaction("app", pid, epoch, True, transaction_version)
    with pytest.raises(InvalidTxnState):
        e.transactions.end_transaction("app", pid, epoch, False, transaction_version)
    with pytest.raises(ProducerFenced):  # an epoch no producer was given
        e.transactions.end_transaction("app", pid, epoch + 2, True, transaction_version)
    markers_held.set()
    bumped = epoch + 1 if transaction_version == TV_2 else epoch
    assert ending.result(TIMEOUT) == (pid, bumped)
    assert values(e, "t", "read_committed") == [b"a"]


def test_a_v2_end_meeting_a_state_write_is_told_to_retry_before_it_is_checked(
    engine_factory: EngineFactory,
) -> None:
    """Kafka's v2 endTransaction asks about a pending write first (it may be
    the move to a new producer id the request names); its v1 one last."""
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    with e.transactions._table.lock:
        e.transactions._table.hold("app")
    try:
        for stale in ((pid, epoch - 1), (pid + 1000, epoch)):
            with pytest.raises(ConcurrentTransactions):
                e.transactions.end_transaction("app", *stale, True, TV_2)
        with pytest.raises(ProducerFenced):
            ended_v1(e, True, pid, epoch - 1)
        with pytest.raises(InvalidProducerIdMapping):
            ended_v1(e, True, pid + 1000, epoch)
        # Kafka's verify_only does not wait for a state write: the append
        # it verifies checks the partition again.
        found = e.transactions.verify_partitions(
            "app", pid, epoch, [TopicPartition("t", 0), TopicPartition("t", 1)]
        )
        assert found == {TopicPartition("t", 0): True, TopicPartition("t", 1): False}
    finally:
        with e.transactions._table.lock:
            e.transactions._table.release("app")
    client.send("t", 0, b"a")
    client.commit()
    assert values(e, "t", "read_committed") == [b"a"]


def test_an_empty_transactional_id_is_an_invalid_request(engine_factory: EngineFactory) -> None:
    """Kafka's coordinator answers INVALID_REQUEST before it looks the id up
    (it was INVALID_PRODUCER_ID_MAPPING: no such id)."""
    e, _ = with_client(engine_factory)
    coordinator = e.transactions
    tp = [TopicPartition("t", 0)]
    for version in (0, TV_2):
        with pytest.raises(InvalidTransactionRequest):
            coordinator.end_transaction("", 0, 0, False, version)
        with pytest.raises(InvalidTransactionRequest):
            coordinator.add_partitions("", 0, 0, tp, version)
    with pytest.raises(InvalidTransactionRequest):
        coordinator.add_offsets("", 0, 0, "group")
    with pytest.raises(InvalidTransactionRequest):
        coordinator.verify_partitions("", 0, 0, tp)


def test_an_add_meeting_a_state_write_is_told_to_retry_before_it_is_checked(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka 4.0's handleAddPartitionsToTransaction (AddPartitionsToTxn and
    AddOffsetsToTxn) asks about a state write in flight before the producer
    id and epoch, as its v2 endTransaction does: a producer that gets a new
    id or epoch from a write must not be fenced by it. A stale epoch or
    another producer id meeting a write was answered PRODUCER_FENCED or
    INVALID_PRODUCER_ID_MAPPING. While the markers are written the checks
    come first again, then the Prepare state's CONCURRENT_TRANSACTIONS."""
    e, client = with_client(engine_factory, 2)
    client.begin(("t", 0))
    client.commit()  # an epoch before the current one
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    coordinator = e.transactions
    stale = ((pid, epoch - 1), (pid + 1000, epoch))
    with coordinator._table.lock:
        coordinator._table.hold("app")
    try:
        for producer in stale:
            for version in (0, TV_2):
                with pytest.raises(ConcurrentTransactions):
                    coordinator.add_partitions(
                        "app", *producer, [TopicPartition("t", 1)], version
                    ).result(TIMEOUT)
                with pytest.raises(ConcurrentTransactions):
                    coordinator.add_offsets("app", *producer, "g", version).result(TIMEOUT)
    finally:
        with coordinator._table.lock:
            coordinator._table.release("app")
    client.send("t", 0, b"a")
    released = hold_markers(monkeypatch, TIMEOUT)
    ending = coordinator.end_transaction("app", pid, epoch, True, 0)
    try:
        wait_for(lambda: coordinator.describe("app").state is TxnState.PREPARE_COMMIT, "prepare")
        with pytest.raises(ProducerFenced):
            coordinator.add_partitions("app", pid, epoch - 1, [TopicPartition("t", 1)])
        with pytest.raises(InvalidProducerIdMapping):
            coordinator.add_offsets("app", pid + 1000, epoch, "g")
        with pytest.raises(ConcurrentTransactions):
            coordinator.add_partitions("app", pid, epoch, [TopicPartition("t", 1)])
    finally:
        released.set()
    assert ending.result(TIMEOUT) == (pid, epoch)
    assert coordinator.describe("app").partitions == frozenset()
    assert values(e, "t", "read_committed") == [b"a"]


def test_an_end_at_the_epoch_a_fence_left_is_fenced_not_bumped_past_int16(
    engine_factory: EngineFactory,
) -> None:
    """A timeout's abort at the last epoch handed out fences with the one
    after it (MAX_EPOCH), which no producer is given. A v2 EndTxn carrying
    it, after an add at it, was let through and bumped the epoch past int16:
    the markers could never be written, and the transaction stayed in
    PrepareCommit for good (its partition's last stable offset held below
    the records, every InitProducerId answered CONCURRENT_TRANSACTIONS),
    across restarts too. It is PRODUCER_FENCED, and the transaction opened
    at that epoch is aborted by its timeout as any other."""
    clock = ManualClock()
    e = engine_factory(clock=clock)  # the timed-out check runs every 10 s
    e.create_topic("t", 1)
    client = TV2Client(e, "app", timeout_ms=200)
    e = restarted_at(engine_factory, client, LAST, clock=clock)
    client.begin(("t", 0))

    def aborted() -> bool:
        return e.transactions.describe("app").state is TxnState.COMPLETE_ABORT

    clock.advance(10)
    wait_for(aborted, "the timed-out transaction to be aborted")
    assert e.transactions.describe("app").producer_epoch == MAX_EPOCH
    client.epoch = MAX_EPOCH  # the fence's epoch, as a request may carry it
    client.begin(("t", 0))  # Kafka's add takes it: it is the current one
    client.send("t", 0, b"a")
    for commit in (True, False):
        with pytest.raises(ProducerFenced):
            client.ended(commit, client.producer_id, MAX_EPOCH)
    clock.advance(10)
    wait_for(aborted, "the transaction opened at the fence's epoch to be aborted")
    assert values(e, "t", "read_committed") == []
    assert e.partition("t", 0).last_stable_offset == e.offsets("t", 0)[1]
    new, epoch = e.transactions.init_producer_id("app", 60_000).result(TIMEOUT)
    assert (new != client.producer_id, epoch) == (True, 0)  # the id moves on


def test_init_producer_id_meeting_a_completion_asks_about_it_before_the_producer_id(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka 4.0's prepareInitProducerIdTransit asks about a pending
    transition first, the producer id next, the Prepare* state last. While
    the markers are written the id is pending (Kafka's sendTxnMarkersCallback
    sets the Complete* transition before it sends them), so a producer that
    gives another producer id is told CONCURRENT_TRANSACTIONS, not
    PRODUCER_FENCED. Left in PrepareCommit with nobody completing it (an
    attempt failed, before its retry), the id is checked before the state:
    another producer id is PRODUCER_FENCED, the transaction's own is told
    to retry."""
    # The clock stands still: the timers never retry the failed completion.
    e, client = with_client(engine_factory, clock=ManualClock())
    pid, epoch = client.producer_id, client.epoch
    released = threading.Event()

    def held_then_failing(self: TransactionCompleter, *args: Any) -> None:
        assert released.wait(TIMEOUT)
        raise InvalidTxnState("the markers could not be written")

    monkeypatch.setattr(TransactionCompleter, "_write_markers", held_then_failing)
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    e.transactions.end_transaction("app", pid, epoch, True, TV_2)
    wait_for(lambda: e.transactions.describe("app").state is TxnState.PREPARE_COMMIT, "the prepare")
    for producer_id in (pid, pid + 100):  # the markers are being written
        with pytest.raises(ConcurrentTransactions):
            e.transactions.init_producer_id("app", 60_000, producer_id, epoch + 1).result(TIMEOUT)
    released.set()  # their write fails: prepared still, and nobody completing it
    coordinator = e.transactions
    wait_for(lambda: not coordinator._table.is_pending("app"), "the failed completion")
    assert coordinator.describe("app").state is TxnState.PREPARE_COMMIT
    with pytest.raises(ProducerFenced):
        coordinator.init_producer_id("app", 60_000, pid + 100, epoch + 1).result(TIMEOUT)
    with pytest.raises(ConcurrentTransactions):
        coordinator.init_producer_id("app", 60_000, pid, epoch + 1).result(TIMEOUT)
