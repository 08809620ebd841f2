"""What a failed write of the transactions' state leaves: the coordinator's
memory as the state log holds it, which is what a restart loads, for
every kind of write (InitProducerId for a new id, its bump and its fence
of an open transaction, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn's
prepare, the timeout's abort, the expiry of an idle id); the request
answered as Kafka's TransactionStateManager answers a log append that
failed: COORDINATOR_NOT_AVAILABLE for a store refusing for room (which
takes the retry once it has room), NOT_COORDINATOR for a store that
failed; and the id free for the retry (Kafka clears the pending state)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import engine
from engine.clock import Clock
from engine.engine import Engine
from engine.errors import ConcurrentTransactions, error_code
from engine.protocol.kafka_code import KafkaCode
from engine.transactions.metadata import MAX_EPOCH, TV_2, TransactionMetadata, TxnState
from engine.types import TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.engine.helpers_records import produce_in_transaction
from tests.engine.reopening import reopening
from tests.engine.test_transactions import control_batches
from tests.engine.txn_state_faults import (
    RefusedStateWrites,
    fail_wal_writes,
    no_room,
    store_failed,
)

TIMEOUT = 10.0
TP = TopicPartition("t", 0)
IDLE = engine.TransactionConfig(transactional_id_expiration_ms=1)  # Kafka's least
"""Every id with no transaction in progress is idle a millisecond on."""


class SkippingClock(Clock):
    """The system clock, moved on by :meth:`skip` besides: the retries'
    backoffs run in real time, and a test passes a transaction's or an
    id's 1 ms at once, however long a loaded machine takes to run it."""

    def __init__(self) -> None:
        self._skipped = 0.0
        self._wakers: list[Callable[[], None]] = []

    def time_ms(self) -> int:
        return super().time_ms() + round(self._skipped * 1000)

    def monotonic(self) -> float:
        return super().monotonic() + self._skipped

    def on_advance(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def skip(self, seconds: float) -> None:
        self._skipped += seconds
        for wake in list(self._wakers):
            wake()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Opens the engine on the same WAL and bucket each time (closing the
    one before), on one SkippingClock."""
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, transactions=IDLE)
    yield from reopening(tmp_path, config, "t", 2, clock=SkippingClock())


def _past_1_ms(e: Engine) -> None:
    """Moves ``e``'s clock past a transaction's or an idle id's 1 ms."""
    assert isinstance(e.clock, SkippingClock)
    e.clock.skip(0.002)


def states(e: Engine) -> list[TransactionMetadata]:
    return sorted(e.transactions.transactions(), key=lambda meta: meta.transactional_id)


def _init(e: Engine, timeout_ms: int = 60_000) -> tuple[int, int]:
    return e.transactions.init_producer_id("x", timeout_ms).result(TIMEOUT)  # type: ignore[no-any-return]


def _open(e: Engine, timeout_ms: int = 60_000) -> tuple[int, int]:
    producer_id, epoch = _init(e, timeout_ms)
    e.transactions.add_partitions("x", producer_id, epoch, [TP]).result(TIMEOUT)
    return producer_id, epoch


def _producer(e: Engine) -> tuple[int, int]:
    meta = e.transactions.describe("x")
    return meta.producer_id, meta.producer_epoch


def _timed_out(e: Engine) -> Future[Any]:
    _past_1_ms(e)
    assert e.transactions.abort_timed_out() == 1
    return _done()


def _expired(e: Engine) -> Future[Any]:
    _past_1_ms(e)
    assert e.transactions.remove_expired() == 1
    return _done()


def _done() -> Future[Any]:
    done: Future[Any] = Future()
    done.set_result(None)
    return done


def _settled(e: Engine) -> None:
    """Waits until nothing about "x" is written (a fence's abort completes
    after its answer)."""
    deadline = time.monotonic() + TIMEOUT
    while e.transactions._table.is_pending("x"):
        assert time.monotonic() < deadline, "x stayed pending"
        time.sleep(0.01)


def _init_future(e: Engine) -> Future[Any]:
    return e.transactions.init_producer_id("x", 60_000)


class Write(NamedTuple):
    setup: Callable[[Engine], object]
    act: Callable[[Engine], Future[Any]]
    record: str
    """The state the write's record holds ("del": a deletion)."""
    answered: bool = True
    """Whether a request waits for the write (the timers' do not)."""


WRITES = {
    "InitProducerId of a new id": Write(lambda e: None, _init_future, "Empty"),
    "InitProducerId's bump": Write(_init, _init_future, "Empty"),
    "InitProducerId's fence": Write(_open, _init_future, "PrepareAbort"),
    "AddPartitionsToTxn": Write(
        _init, lambda e: e.transactions.add_partitions("x", *_producer(e), [TP]), "Ongoing"
    ),
    "AddOffsetsToTxn": Write(
        _init, lambda e: e.transactions.add_offsets("x", *_producer(e), "g"), "Ongoing"
    ),
    "EndTxn's prepare": Write(
        _open, lambda e: e.transactions.end_transaction("x", *_producer(e), True), "PrepareCommit"
    ),
    "the timeout's abort": Write(
        lambda e: _open(e, timeout_ms=1), _timed_out, "PrepareAbort", answered=False
    ),
    "the expiry of an idle id": Write(_init, _expired, "del", answered=False),
}


def _answer(act: Callable[[], Future[Any]]) -> KafkaCode:
    """The code a request is answered: raised at once (a producer id the
    catalog could not write) or through its future."""
    try:
        act().result(TIMEOUT)
    except Exception as error:
        return error_code(error)
    return KafkaCode.NONE


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize(
    ("refusal", "answer"),
    [("no room", KafkaCode.COORDINATOR_NOT_AVAILABLE), ("store failed", KafkaCode.NOT_COORDINATOR)],
    ids=["no room", "store failed"],
)
def test_a_refused_state_write_leaves_what_the_state_log_holds(
    node: Callable[[], Engine],
    monkeypatch: pytest.MonkeyPatch,
    write: str,
    refusal: str,
    answer: KafkaCode,
) -> None:
    """The store refuses the write (nothing accepted): the request is
    answered Kafka's code, memory is what a restart loads, and once the
    store takes writes again the same request goes through."""
    case = WRITES[write]
    e = node()
    case.setup(e)
    before = states(e)
    with monkeypatch.context() as faults:
        make = no_room if refusal == "no room" else store_failed
        refused = RefusedStateWrites(faults, e, {case.record: 1}, make)
        code = _answer(lambda: case.act(e))
        assert refused.refused == [case.record]
        if case.answered:
            assert code == answer
        assert states(e) == before
        assert not e.transactions._table.is_pending("x")  # Kafka clears the pending state
    assert states(node()) == before  # a restart loads the same
    e = node()
    assert _answer(lambda: case.act(e)) in (KafkaCode.NONE, KafkaCode.CONCURRENT_TRANSACTIONS)
    _settled(e)
    assert states(e) != before
    after = states(e)
    assert states(node()) == after


@pytest.mark.parametrize("write", WRITES)
def test_a_state_write_the_wal_fails_leaves_what_a_restart_loads(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """The store accepts the write and the WAL's write fails (the store
    fails with it): NOT_COORDINATOR, memory what a restart loads, and the
    restarted engine takes the request."""
    case = WRITES[write]
    e = node()
    case.setup(e)
    before = states(e)
    with monkeypatch.context() as faults:
        fail_wal_writes(faults)
        code = _answer(lambda: case.act(e))
        if case.answered:
            assert code == KafkaCode.NOT_COORDINATOR
        deadline = time.monotonic() + TIMEOUT
        while e.transactions._table.is_pending("x"):  # the failure comes from the WAL's thread
            assert time.monotonic() < deadline, "the failed write never released its id"
            time.sleep(0.01)
        assert states(e) == before
        e.close()
    e = node()
    assert states(e) == before
    assert _answer(lambda: case.act(e)) in (KafkaCode.NONE, KafkaCode.CONCURRENT_TRANSACTIONS)
    _settled(e)
    assert states(e) != before
    assert states(node()) == states(e)


def test_a_fence_written_after_a_refusal_bumps_the_epoch_once(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout's abort whose fencing record is refused is not bumped in
    memory, so the abort that follows fences at the next epoch, not the
    one after (what Kafka's hasFailedEpochFence keeps)."""
    e = node()
    producer_id, epoch = _open(e, timeout_ms=1)
    with monkeypatch.context() as faults:
        RefusedStateWrites(faults, e, {"PrepareAbort": 1}, no_room)
        _timed_out(e)
        assert e.transactions.describe("x").producer_epoch == epoch
        assert e.transactions.abort_timed_out() == 1
    deadline = time.monotonic() + TIMEOUT
    while e.transactions.describe("x").state is not TxnState.COMPLETE_ABORT:
        assert time.monotonic() < deadline, "the abort never completed"
        time.sleep(0.01)
    assert e.transactions.describe("x").producer_epoch == epoch + 1
    assert [(pid, ep) for _, pid, ep, _ in control_batches(e, "t", 0)] == [(producer_id, epoch + 1)]


def test_an_expiry_refused_for_one_id_forgets_the_others(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expiry pass forgets several idle ids; the store refuses the
    first deletion: that id stays (as the state log holds it) and free,
    and the other ids are forgotten, none left pending."""
    e = node()
    for transactional_id in ("a", "b", "c"):
        e.transactions.init_producer_id(transactional_id, 60_000).result(TIMEOUT)
    with monkeypatch.context() as faults:
        refused = RefusedStateWrites(faults, e, {"del": 1}, no_room)
        _past_1_ms(e)
        assert e.transactions.remove_expired() == 3
        assert refused.refused == ["del"]
    deadline = time.monotonic() + TIMEOUT
    while len(states(e)) != 1:
        assert time.monotonic() < deadline, f"not forgotten: {states(e)}"
        time.sleep(0.01)
    (kept,) = states(e)
    assert not any(e.transactions._table.is_pending(i) for i in ("a", "b", "c"))
    assert states(node()) == [kept]


def _wait_for_state(e: Engine, state: TxnState) -> None:
    deadline = time.monotonic() + TIMEOUT
    while e.transactions.describe("x").state is not state:
        assert time.monotonic() < deadline, f"never {state.value}"
        time.sleep(0.01)


def test_a_complete_record_refused_for_room_is_written_again_not_its_markers(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every marker of a commit is durable and the store refuses its
    CompleteCommit record for room until it heals: the EndTxn is answered
    done (Kafka has answered it once PrepareCommit was durable), the id
    stays pending in PrepareCommit meanwhile (InitProducerId:
    CONCURRENT_TRANSACTIONS; the timeout's abort passes it by), only the
    record is written again (one marker per partition), and once the store
    takes it the transaction completes as the commit it is."""
    e = node()
    producer_id, epoch = _open(e, timeout_ms=1)
    produce_in_transaction(e, "t", 0, b"v", producer_id, epoch)
    with monkeypatch.context() as faults:
        refused = RefusedStateWrites(faults, e, {"CompleteCommit": 1_000_000}, no_room)
        assert _answer(lambda: e.transactions.end_transaction("x", producer_id, epoch, True)) == (
            KafkaCode.NONE
        )
        deadline = time.monotonic() + TIMEOUT
        while len(refused.refused) < 3:  # written again, with its backoff
            assert time.monotonic() < deadline, f"written again {len(refused.refused)} times"
            time.sleep(0.01)
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        assert e.transactions._table.is_pending("x")
        with pytest.raises(ConcurrentTransactions):
            _init_future(e).result(TIMEOUT)
        _past_1_ms(e)
        assert e.transactions.abort_timed_out() == 0
        assert e.transactions._completer.retry_incomplete() == 0  # the timer's too
        refused.heal()
        _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    markers = control_batches(e, "t", 0)
    assert [(pid, marker.commit) for _, pid, _, marker in markers] == [(producer_id, True)]
    assert not e.transactions._table.is_pending("x")
    assert states(node()) == states(e)


def test_a_complete_record_the_wal_fails_is_completed_by_the_next_open(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every marker of a commit is durable and the WAL fails the
    CompleteCommit record: the EndTxn is answered done, memory keeps
    PrepareCommit as the state log does, and the next open completes the
    transaction as a commit (its markers written again, as a Kafka
    coordinator loading the log sends them again), never as an abort."""
    e = node()
    producer_id, epoch = _open(e)
    produce_in_transaction(e, "t", 0, b"v", producer_id, epoch)
    state_log = e.transactions._log
    submit = state_log.store.submit
    with monkeypatch.context() as faults:

        def failing_complete(stream_id: int, *args: Any, **kwargs: Any) -> Future[int]:
            if stream_id == state_log.stream_id and b"CompleteCommit" in bytes(args[2]):
                fail_wal_writes(faults)
            return submit(stream_id, *args, **kwargs)

        faults.setattr(state_log.store, "submit", failing_complete)
        assert _answer(lambda: e.transactions.end_transaction("x", producer_id, epoch, True)) == (
            KafkaCode.NONE
        )
        deadline = time.monotonic() + TIMEOUT
        while e.transactions._table.is_pending("x"):
            assert time.monotonic() < deadline, "the failed write never released its id"
            time.sleep(0.01)
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        before = states(e)
        e.close()
    e = node()
    _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    assert [m.state for m in before] == [TxnState.PREPARE_COMMIT]
    outcomes = {marker.commit for _, _, _, marker in control_batches(e, "t", 0)}
    assert outcomes == {True}


def _open_v2_at_the_last_epoch(node: Callable[[], Engine]) -> tuple[Engine, int, int]:
    """Producer "x" one epoch short of the last, its state log rewritten to
    say so and loaded by a reopen, with a transactions v2 transaction open
    on TP: the engine, the producer id and its epoch."""
    e = node()
    producer_id, _ = _init(e)
    meta = e.transactions.describe("x")
    e.transactions._log.put("x", replace(meta, producer_epoch=MAX_EPOCH - 1).to_wire()).result(
        TIMEOUT
    )
    e = node()
    epoch = MAX_EPOCH - 1
    e.transactions.add_partitions("x", producer_id, epoch, [TP], TV_2).result(TIMEOUT)
    return e, producer_id, epoch


def test_a_rotating_end_whose_complete_record_is_refused_is_answered_with_the_new_id(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transactions v2 end at the last epoch hands the id over to a new
    producer id with its Complete record. At the store's first refusal
    of that record the EndTxn is answered with the new id at epoch 0, as
    Kafka 4 answers it once Prepare* is durable; until the record is
    written the new id's requests are told to wait
    (CONCURRENT_TRANSACTIONS), never that it is another producer's; once
    the store takes it the coordinator holds the new id, which begins the
    next transaction."""
    e, producer_id, epoch = _open_v2_at_the_last_epoch(node)
    with monkeypatch.context() as faults:
        refused = RefusedStateWrites(faults, e, {"CompleteCommit": 1_000_000}, no_room)
        new_producer_id, new_epoch = e.transactions.end_transaction(
            "x", producer_id, epoch, True, TV_2
        ).result(TIMEOUT)
        assert new_producer_id != producer_id and new_epoch == 0
        assert refused.refused
        with pytest.raises(ConcurrentTransactions):
            e.transactions.add_partitions("x", new_producer_id, 0, [TP], TV_2).result(TIMEOUT)
        with pytest.raises(ConcurrentTransactions):
            e.transactions.end_transaction("x", new_producer_id, 0, False, TV_2).result(TIMEOUT)
        with pytest.raises(ConcurrentTransactions):
            e.transactions.verify_partitions("x", new_producer_id, 0, [TP])
        e.transactions.check_producer("x", new_producer_id)  # its batches wait for their add
        assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
        refused.heal()
        _wait_for_state(e, TxnState.COMPLETE_COMMIT)
    assert _producer(e) == (new_producer_id, 0)
    e.transactions.add_partitions("x", new_producer_id, 0, [TP], TV_2).result(TIMEOUT)
    assert states(node()) == states(e)


def test_complete_records_written_again_hold_no_completion_worker(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As many commits as there are completion workers write their refused
    Complete records again, with backoff: between attempts none holds a
    worker, so an abort decided meanwhile completes at once; each id is
    written again by one retry at a time; a close leaves the retries'
    transactions in PrepareCommit, which the next open completes."""
    e = node()
    workers = e.transactions._completer._workers._max_workers
    ids = [f"x{i}" for i in range(workers + 1)]
    producers = {}
    for transactional_id in ids:
        producer_id, epoch = e.transactions.init_producer_id(transactional_id, 60_000).result(
            TIMEOUT
        )
        e.transactions.add_partitions(transactional_id, producer_id, epoch, [TP]).result(TIMEOUT)
        producers[transactional_id] = (producer_id, epoch)
    with monkeypatch.context() as faults:
        refused = RefusedStateWrites(faults, e, {"CompleteCommit": 1_000_000}, no_room)
        ended = [
            e.transactions.end_transaction(transactional_id, *producers[transactional_id], True)
            for transactional_id in ids[:workers]
        ]
        for future in ended:
            assert future.result(TIMEOUT) is not None  # answered once its markers are durable
        deadline = time.monotonic() + TIMEOUT
        while len(refused.refused) < 2 * workers:
            assert time.monotonic() < deadline, "the Complete records were not written again"
            time.sleep(0.01)
        aborted = e.transactions.end_transaction(ids[-1], *producers[ids[-1]], False)
        assert aborted.result(TIMEOUT) == producers[ids[-1]]
        assert e.transactions.describe(ids[-1]).state is TxnState.COMPLETE_ABORT
        counted = len(refused.refused)
        time.sleep(0.3)  # the backoff reaches 400 ms: each id written again at most 3 times
        assert len(refused.refused) - counted <= 3 * workers
        assert all(e.transactions._table.is_pending(i) for i in ids[:workers])
        e.close()
    reopened = node()
    deadline = time.monotonic() + TIMEOUT
    while {meta.state for meta in states(reopened)} != {
        TxnState.COMPLETE_COMMIT,
        TxnState.COMPLETE_ABORT,
    }:
        assert time.monotonic() < deadline, f"not completed: {states(reopened)}"
        time.sleep(0.01)
    assert [meta.state for meta in states(reopened)][:workers] == [
        TxnState.COMPLETE_COMMIT
    ] * workers


def test_a_rotating_end_refused_as_close_begins_is_answered_and_completed_by_the_next_open(
    node: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Complete record of a v2 end at the last epoch refused for room
    just as the coordinator closes: the EndTxn is answered with the new
    id (the outcome is durable), the transaction is left Prepare* for the
    next open, which completes it and hands the id to that new id."""
    e, producer_id, epoch = _open_v2_at_the_last_epoch(node)
    closing = e.transactions._completer._closing
    closer: list[threading.Thread] = []

    def refused_as_close_begins(stream_id: int) -> BaseException:
        # The refusal is answered once close has begun (its completer
        # closing), while this completion's attempt is still in flight.
        closer.append(threading.Thread(target=e.close))
        closer[0].start()
        assert closing.wait(TIMEOUT)
        return no_room(stream_id)

    with monkeypatch.context() as faults:
        RefusedStateWrites(faults, e, {"CompleteCommit": 1}, refused_as_close_begins)
        ended = e.transactions.end_transaction("x", producer_id, epoch, True, TV_2)
        new_producer_id, new_epoch = ended.result(TIMEOUT)
        closer[0].join(TIMEOUT)
    assert new_producer_id != producer_id and new_epoch == 0
    assert e.transactions.describe("x").state is TxnState.PREPARE_COMMIT
    e = node()
    deadline = time.monotonic() + TIMEOUT
    while e.transactions.describe("x").state is not TxnState.COMPLETE_COMMIT:
        assert time.monotonic() < deadline, "the next open did not complete it"
        time.sleep(0.01)
    assert _producer(e) == (new_producer_id, 0)
