"""The embedded transactional producer sends a coordinator request again
after COORDINATOR_NOT_AVAILABLE (its state log refusing a write for room),
as Kafka's TransactionManager does, within its timeout (max_block_ms
without one; the sender's add within delivery_timeout_ms); a closed
engine's answer, and a failed store's (both NOT_COORDINATOR on the wire),
are raised at once: neither serves again until the engine is opened
again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.client.transactional_producer import TransactionAborted, TransactionError
from engine.engine import Engine
from engine.errors import CoordinatorCannotWrite, CoordinatorNotAvailable, NotCoordinator
from engine.transactions.metadata import TxnState
from engine.types import TopicPartition
from tests.engine.conftest import FAST_STORE
from tests.engine.test_transactions import values
from tests.engine.txn_state_faults import (
    RefusedStateWrites,
    WrittenButFailed,
    fail_wal_writes,
    no_room,
    store_failed,
)

TIMEOUT = 30.0


@pytest.fixture
def e(tmp_path: Path) -> Iterator[Engine]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    with engine.open(tmp_path / "data", f"file://{tmp_path / 'objects'}", config) as opened:
        opened.create_topic("t", 1)
        yield opened


def test_a_transaction_goes_on_through_refused_state_writes(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of the transaction's state writes (the new id, the add made by
    the sender, the offsets' add, the commit's prepare) is refused twice,
    then taken: every call returns, and the transaction commits once."""
    refused = RefusedStateWrites(
        monkeypatch,
        e,
        {"Empty": 2, "Ongoing": 4, "PrepareCommit": 2},
        no_room,
    )
    with e.producer(transactional_id="app") as producer:
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        sent = producer.send("t", b"one", partition=0)
        producer.send_offsets_to_transaction({TopicPartition("t", 0): 1}, "readers", TIMEOUT)
        producer.commit_transaction(TIMEOUT)
        assert sent.result(TIMEOUT).offset == 0
    assert sorted(refused.refused) == sorted(
        ["Empty"] * 2 + ["Ongoing"] * 4 + ["PrepareCommit"] * 2
    )
    assert values(e, "t", "read_committed") == [b"one"]
    tp = TopicPartition("t", 0)
    committed = e.groups.fetch_offsets("readers", [tp])[tp][0]
    assert committed is not None and committed.offset == 1


def test_a_request_refused_past_its_timeout_raises_the_last_answer(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = RefusedStateWrites(monkeypatch, e, {"Empty": 1_000_000}, no_room)
    with e.producer(transactional_id="app", max_block_ms=300) as producer:
        with pytest.raises(CoordinatorNotAvailable):
            producer.init_transactions()  # bounded by max_block_ms
        assert len(refused.refused) >= 2  # sent again before it gave up
        refused.heal()
        producer.init_transactions(TIMEOUT)


def test_a_closed_engines_answer_is_raised_not_retried(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = e.producer(transactional_id="app")
    asked: list[Any] = []
    init: Callable[..., Any] = e.transactions.init_producer_id

    def counted(*args: Any) -> Any:
        asked.append(args)
        return init(*args)

    monkeypatch.setattr(e.transactions, "init_producer_id", counted)
    e.close()
    with pytest.raises(engine.EngineClosed) as caught:
        producer.init_transactions(TIMEOUT)
    assert isinstance(caught.value, NotCoordinator)  # NOT_COORDINATOR on the wire
    assert len(asked) == 1


def _counted(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[Any]:
    asked: list[Any] = []
    call: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any) -> Any:
        asked.append(args)
        return call(*args)

    monkeypatch.setattr(target, name, counted)
    return asked


def test_a_failed_stores_answer_is_raised_not_retried(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store failed under a write of the WAL's: it takes no write
    again until the engine is opened again, so the coordinator's
    NOT_COORDINATOR is raised at once, not sent again for max_block_ms."""
    asked = _counted(monkeypatch, e.transactions, "init_producer_id")
    fail_wal_writes(monkeypatch)
    producer = e.producer(transactional_id="app")  # max_block_ms 60 s
    with pytest.raises(NotCoordinator) as caught:
        producer.init_transactions()
    assert isinstance(caught.value, CoordinatorCannotWrite)
    assert len(asked) == 1


def test_the_senders_add_to_a_failed_store_fails_the_record_at_once(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's AddPartitionsToTxn is not sent again either: the record
    fails, and close does not wait out max_block_ms for it."""
    producer = e.producer(transactional_id="app")
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    asked = _counted(monkeypatch, e.transactions, "add_partitions")
    fail_wal_writes(monkeypatch)
    sent = producer.send("t", b"one", partition=0)
    with pytest.raises(NotCoordinator):
        sent.result(TIMEOUT)
    producer.close()
    assert len(asked) == 1


def test_the_senders_add_is_sent_again_within_the_delivery_timeout_not_max_block_ms(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's producer sends AddPartitionsToTxn again for as long as the
    batch waiting for it may wait, delivery.timeout.ms from when it was
    opened; max.block.ms bounds no add. The add refused for longer than
    max_block_ms goes through once taken, and the record is sent once."""
    producer = e.producer(transactional_id="app", max_block_ms=50, delivery_timeout_ms=20_000)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    refused = RefusedStateWrites(monkeypatch, e, {"Ongoing": 1_000_000}, no_room)
    sent = producer.send("t", b"one", partition=0)
    deadline = time.monotonic() + TIMEOUT
    while len(refused.refused) < 4:  # 0.1 + 0.2 + 0.4 s: past max_block_ms
        assert time.monotonic() < deadline, "the add was not sent again"
        time.sleep(0.01)
    refused.heal()
    assert sent.result(TIMEOUT).offset == 0
    producer.commit_transaction(TIMEOUT)
    producer.close()
    assert values(e, "t", "read_committed") == [b"one"]


def test_the_senders_add_refused_past_the_delivery_timeout_fails_the_record(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past delivery.timeout.ms the batch expires with the last answer, and
    the transaction can only be aborted, as at Kafka."""
    producer = e.producer(transactional_id="app", delivery_timeout_ms=300)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    refused = RefusedStateWrites(monkeypatch, e, {"Ongoing": 1_000_000}, no_room)
    sent = producer.send("t", b"one", partition=0)
    with pytest.raises(CoordinatorNotAvailable):
        sent.result(TIMEOUT)
    assert len(refused.refused) >= 2  # sent again before it expired
    with pytest.raises(TransactionError):
        producer.commit_transaction(TIMEOUT)
    refused.heal()
    producer.abort_transaction(TIMEOUT)
    producer.close()
    assert values(e, "t", "read_uncommitted") == []


def test_a_delivery_timeout_that_is_no_number_of_seconds_is_refused(e: Engine) -> None:
    for wrong in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="delivery_timeout_ms"):
            e.producer(transactional_id="app", delivery_timeout_ms=wrong)


def test_a_delivery_timeout_shorter_than_linger_is_refused(e: Engine) -> None:
    """Kafka's producer refuses a delivery.timeout.ms below linger.ms +
    request.timeout.ms (a batch would expire before it may be sent); the
    embedded producer sends without a request timeout, so linger_ms is the
    floor. Left at its default, it is raised to linger_ms, as Kafka raises
    a delivery.timeout.ms the user did not set."""
    with pytest.raises(ValueError, match="delivery_timeout_ms"):
        e.producer(transactional_id="app", linger_ms=500, delivery_timeout_ms=499)
    at_floor = e.producer(transactional_id="app", linger_ms=500, delivery_timeout_ms=500)
    assert at_floor.delivery_timeout_s == 0.5
    at_floor.close()
    by_default = e.producer(transactional_id="app", linger_ms=300_000)
    assert by_default.delivery_timeout_s == 300.0
    by_default.close()


def test_an_abort_fails_the_unsent_records_at_once_and_awaits_those_written(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """abort_transaction while the sender's AddPartitionsToTxn is refused
    and sent again: as Kafka's producer aborts its undrained batches, the
    records not sent fail at once (TransactionAborted) rather than wait
    out delivery_timeout_ms, the record already written is aborted with
    the transaction, a read_committed consumer sees none of them, and the
    producer's next transaction commits."""
    e.create_topic("u", 1)
    delivery_timeout_s = 60.0
    producer = e.producer(
        transactional_id="app", delivery_timeout_ms=delivery_timeout_s * 1000, max_in_flight=1
    )
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    assert producer.send("t", b"written", partition=0).result(TIMEOUT).offset == 0
    refused = RefusedStateWrites(monkeypatch, e, {"Ongoing": 1_000_000}, no_room)
    adding = producer.send("u", b"adding", partition=0)
    deadline = time.monotonic() + TIMEOUT
    while len(refused.refused) < 2:  # the add is being sent again
        assert time.monotonic() < deadline, "the add was not sent again"
        time.sleep(0.01)
    queued = producer.send("u", b"queued", partition=0)  # behind the batch being added
    aborting = threading.Thread(target=producer.abort_transaction, args=(TIMEOUT,))
    aborting.start()
    aborting.join(delivery_timeout_s / 10)
    stuck = aborting.is_alive()
    refused.heal()  # lets a stuck abort end, to be reported below
    aborting.join(TIMEOUT)
    assert not stuck, "the abort waited for the refused add"
    for future in (adding, queued):
        with pytest.raises(TransactionAborted):
            future.result(0)
    assert e.transactions.describe("app").state is TxnState.COMPLETE_ABORT
    assert values(e, "t", "read_committed") == []
    assert values(e, "u", "read_committed") == []
    producer.begin_transaction()
    producer.send("u", b"next", partition=0)
    producer.commit_transaction(TIMEOUT)
    producer.close()
    assert values(e, "u", "read_committed") == [b"next"]
    assert values(e, "t", "read_uncommitted") == [b"written"]


def test_an_abort_ends_what_an_add_answered_not_coordinator_may_have_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction's only AddPartitionsToTxn is written but answered
    NOT_COORDINATOR, its outcome unknown to the producer (and to the
    coordinator's memory, which is what was answered): the abort adds the
    partition again and ends the transaction, so a restart that reads the
    add finds the transaction aborted, not open until its timeout, and
    the next transaction commits with nothing of the aborted one read."""
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    objects = f"file://{tmp_path / 'objects'}"
    with engine.open(tmp_path / "data", objects, config) as e:
        e.create_topic("t", 1)
        producer = e.producer(transactional_id="app", transaction_timeout_ms=900_000)
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        unknown = WrittenButFailed(monkeypatch, e, "Ongoing", 1, store_failed)
        lost = producer.send("t", b"lost", partition=0)
        with pytest.raises(NotCoordinator):
            lost.result(TIMEOUT)
        assert unknown.failed == 1
        producer.abort_transaction(TIMEOUT)
        assert e.transactions.describe("app").state is TxnState.COMPLETE_ABORT
        producer.close()
    monkeypatch.undo()
    with engine.open(tmp_path / "data", objects, config) as e:
        assert e.transactions.describe("app").state is TxnState.COMPLETE_ABORT
        producer = e.producer(transactional_id="app")
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        producer.send("t", b"next", partition=0)
        producer.commit_transaction(TIMEOUT)
        producer.close()
        assert values(e, "t", "read_committed") == [b"next"]


class _PausedHeaders(list[tuple[str, bytes]]):
    """Headers whose reading holds a send between its check that a
    transaction is open and the queueing of its record, as a thread
    preempted there would be."""

    def __init__(self) -> None:
        super().__init__([("h", b"v")])
        self.reading = threading.Event()
        self.go_on = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        self.reading.set()
        assert self.go_on.wait(TIMEOUT)
        return super().__iter__()


@pytest.mark.parametrize("ending", ["abort", "commit"])
def test_a_send_racing_the_end_of_its_transaction_is_never_written_in_the_next(
    e: Engine, ending: str
) -> None:
    """A send that found the transaction open, and queues its record once
    abort_transaction or commit_transaction has ended it, is refused: its
    record is not left queued for the sender, which would add its
    partition to a transaction the producer has not begun and commit it
    with the next one (Kafka's producer refuses a send once the end has
    begun, and sends a batch only to a partition of the open transaction)."""
    producer = e.producer(transactional_id="app", linger_ms=60_000)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    first_sent = producer.send("t", b"first", partition=0)
    producer.flush(TIMEOUT)
    assert first_sent.result(TIMEOUT).offset == 0
    headers = _PausedHeaders()
    raced: dict[str, Any] = {}

    def racing() -> None:
        try:
            raced["future"] = producer.send("t", b"raced", partition=0, headers=headers)
        except Exception as error:
            raced["refused"] = error

    sending = threading.Thread(target=racing)
    sending.start()
    assert headers.reading.wait(TIMEOUT)
    if ending == "abort":
        producer.abort_transaction(TIMEOUT)
    else:
        producer.commit_transaction(TIMEOUT)
    headers.go_on.set()
    sending.join(TIMEOUT)
    producer.begin_transaction()
    producer.send("t", b"next", partition=0)
    producer.commit_transaction(TIMEOUT)
    producer.close()
    if "future" in raced:
        with pytest.raises(Exception):  # noqa: B017 - refused, however it says so
            raced["future"].result(TIMEOUT)
    first = [b"first"] if ending == "commit" else []
    assert values(e, "t", "read_committed") == [*first, b"next"]


def test_an_abort_ends_an_offsets_add_whose_answer_was_not_awaited(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction's only add (its offsets' group) is written after
    send_offsets_to_transaction gave up waiting (TimeoutError): its outcome
    is unknown to the producer, and the coordinator has it. The abort adds
    the group again and ends the transaction, rather than leave it open
    until its timeout (which would then fence the producer)."""
    producer = e.producer(transactional_id="app", transaction_timeout_ms=900_000)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    held = HeldStateWrites(monkeypatch, e, "Ongoing")
    with pytest.raises(TimeoutError):
        producer.send_offsets_to_transaction({TopicPartition("t", 0): 1}, "readers", 0.2)
    held.release()
    deadline = time.monotonic() + TIMEOUT
    while e.transactions.describe("app").state is not TxnState.ONGOING:
        assert time.monotonic() < deadline, "the held add was never written"
        time.sleep(0.01)
    producer.abort_transaction(TIMEOUT)
    assert e.transactions.describe("app").state is TxnState.COMPLETE_ABORT
    producer.close()


class HeldStateWrites:
    """Holds the transactions state log's appends whose record names
    ``state`` until ``release``: they are written then, after their caller
    may have stopped waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, e: Engine, state: str) -> None:
        self._released = threading.Event()
        self.holding = threading.Event()
        """Set once a write is held."""
        state_log = e.transactions._log
        submit = state_log.store.submit

        def holding(stream_id: int, *args: Any, **kwargs: Any) -> Any:
            if stream_id != state_log.stream_id or state.encode() not in bytes(args[2]):
                return submit(stream_id, *args, **kwargs)
            answered: Future[int] = Future()
            answered.set_running_or_notify_cancel()

            def later() -> None:
                self._released.wait(TIMEOUT)
                written = submit(stream_id, *args, **kwargs)
                written.add_done_callback(lambda done: _settle_as(answered, done))

            threading.Thread(target=later, daemon=True).start()
            self.holding.set()
            return answered

        monkeypatch.setattr(state_log.store, "submit", holding)

    def release(self) -> None:
        self._released.set()


def _settle_as(answered: Future[int], done: Future[int]) -> None:
    error = done.exception()
    if error is None:
        answered.set_result(done.result())
    else:
        answered.set_exception(error)


def test_an_abort_whose_records_are_still_being_added_times_out_and_aborts_again(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's add of the transaction's only partition is still being
    written when the abort's ``timeout`` ends: the abort raises
    TimeoutError, rather than return with the transaction left open (the
    add then written, and the record after it, holding the partition's
    last stable offset until the transaction's timeout). Aborted again
    once the add is written, the transaction ends and nothing of it is
    read committed."""
    producer = e.producer(transactional_id="app", transaction_timeout_ms=900_000)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    held = HeldStateWrites(monkeypatch, e, "Ongoing")
    sent = producer.send("t", b"aborted", partition=0)
    assert held.holding.wait(TIMEOUT)  # the sender took the record: it is being added
    with pytest.raises(TimeoutError):
        producer.abort_transaction(0.2)
    held.release()
    producer.abort_transaction(TIMEOUT)
    assert e.transactions.describe("app").state is TxnState.COMPLETE_ABORT
    assert sent.done()
    with e.producer() as plain:
        plain.send("t", b"after", partition=0).result(TIMEOUT)
    assert values(e, "t", "read_committed") == [b"after"]
    producer.close()


def test_a_commit_ends_an_offsets_add_whose_answer_was_not_awaited(
    e: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for the abort: the offsets' add, written after
    send_offsets_to_transaction gave up waiting, is the transaction's only
    one; the commit adds the group again and ends the transaction, rather
    than return with it left open until its timeout (whose abort would
    then fence the producer)."""
    producer = e.producer(transactional_id="app", transaction_timeout_ms=900_000)
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    held = HeldStateWrites(monkeypatch, e, "Ongoing")
    with pytest.raises(TimeoutError):
        producer.send_offsets_to_transaction({TopicPartition("t", 0): 1}, "readers", 0.2)
    held.release()
    producer.commit_transaction(TIMEOUT)
    assert e.transactions.describe("app").state is TxnState.COMPLETE_COMMIT
    producer.begin_transaction()
    producer.send("t", b"next", partition=0)
    producer.commit_transaction(TIMEOUT)
    producer.close()
    assert values(e, "t", "read_committed") == [b"next"]
