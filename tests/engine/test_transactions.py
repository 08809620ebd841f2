"""Transactions through the engine's API (no sockets): the coordinator's
state machine, markers, the last stable offset, the aborted index,
read_committed reads, fencing, timeouts, and restarts in every state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine import markers
from engine.client.transactional_producer import TransactionError
from engine.clock import ManualClock
from engine.errors import (
    ConcurrentTransactions,
    EngineClosed,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTransactionRequest,
    InvalidTransactionTimeout,
    InvalidTxnState,
    ProducerFenced,
    TransactionalIdNotFound,
)
from engine.groups import GroupCoordinator
from engine.partition import AppendResult, Partition
from engine.partition_txns import AbortedTxn
from engine.transactions.metadata import TxnState
from engine.types import OffsetAndMetadata, TopicPartition
from native import RecordSpec
from tests.engine.conftest import FAST_STORE, EngineFactory
from tests.engine.held_answers import never_answered
from tests.engine.helpers_records import batch

TIMEOUT = 30.0
TS = 1_700_000_000_000
FAST_ABORTS = engine.TransactionConfig(
    transaction_abort_timed_out_transaction_cleanup_interval_ms=20
)


class TxnClient:
    """A transactional producer that drives the engine's coordinator as a
    Kafka client drives it over the wire."""

    def __init__(self, e: engine.Engine, transactional_id: str, timeout_ms: int = 60_000) -> None:
        self.engine = e
        self.transactional_id = transactional_id
        self.timeout_ms = timeout_ms
        self.producer_id = self.epoch = -1
        self.sequences: dict[tuple[str, int], int] = {}
        self.init()

    def init(self) -> tuple[int, int]:
        """InitProducerId, retried while an open transaction is aborted."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                self.producer_id, self.epoch = self.engine.transactions.init_producer_id(
                    self.transactional_id, self.timeout_ms
                ).result(TIMEOUT)
                break
            except ConcurrentTransactions:
                assert time.monotonic() < deadline, "InitProducerId kept answering concurrent"
                time.sleep(0.01)
        self.sequences.clear()
        return self.producer_id, self.epoch

    def begin(self, *partitions: tuple[str, int]) -> None:
        self.engine.transactions.add_partitions(
            self.transactional_id,
            self.producer_id,
            self.epoch,
            [TopicPartition(*tp) for tp in partitions],
        ).result(TIMEOUT)

    def send(self, topic: str, partition: int, *values: bytes, key: bytes = b"k") -> AppendResult:
        sequence = self.sequences.get((topic, partition), 0)
        data = native.encode_batch(
            [RecordSpec(TS + i, key, value) for i, value in enumerate(values)],
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            base_sequence=sequence,
            is_transactional=True,
        )
        result = self.engine.produce(topic, partition, data)
        self.sequences[(topic, partition)] = sequence + len(values)
        return result

    def end(self, commit: bool) -> None:
        self.engine.transactions.end_transaction(
            self.transactional_id, self.producer_id, self.epoch, commit
        ).result(TIMEOUT)

    def commit(self) -> None:
        self.end(True)

    def abort(self) -> None:
        self.end(False)


def plain(
    e: engine.Engine, topic: str, partition: int, *values: bytes, key: bytes = b"k"
) -> AppendResult:
    return e.produce(topic, partition, batch(list(values), key=key))


def control_batches(
    e: engine.Engine, topic: str, partition: int
) -> list[tuple[int, int, int, markers.Marker]]:
    """(offset, producer id, producer epoch, marker) of every control batch."""
    found = []
    offset = e.offsets(topic, partition)[0]
    end = e.offsets(topic, partition)[1]
    while offset < end:
        fetched = e.fetch(topic, partition, offset)
        for payload in fetched.records:
            view = memoryview(payload)
            for header in native.scan_batches(view):
                if header.is_control:
                    assert header.is_transactional
                    data = view[header.position : header.position + header.size]
                    marker = markers.decode(data)
                    assert marker is not None
                    found.append(
                        (header.base_offset, header.producer_id, header.producer_epoch, marker)
                    )
        offset = fetched.next_offset
    return found


def values(e: engine.Engine, topic: str, isolation_level: str, partitions: int = 1) -> list[bytes]:
    """Every value the embedded consumer returns from the log start up to
    the end its isolation level reads to (on any clock: polls never wait)."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    ends = {tp: e.list_offset(topic, tp.partition, -1, isolation_level).offset for tp in tps}
    deadline = time.monotonic() + TIMEOUT
    with e.consumer(auto_offset_reset="earliest", isolation_level=isolation_level) as consumer:
        consumer.assign(tps)
        out: list[bytes] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "the consumer never reached the end"
            out += [r.value for r in consumer.poll(timeout=0) if r.value is not None]
        return out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- commit, abort, the LSO and the aborted index ------------------------------------------------


def test_the_last_stable_offset_is_never_below_the_log_start(
    engine_factory: EngineFactory,
) -> None:
    """DeleteRecords may move the log start past an open transaction's first
    offset (it is bounded by the high watermark, not the last stable
    offset); the last stable offset then stands at the log start, as
    Kafka's UnifiedLog.maybeIncrementFirstUnstableOffset clamps it: an
    offset below the log start names nothing a consumer can read."""
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"a", b"b")
    plain(e, "t", 0, b"after", b"more")
    leader = e.partition("t", 0)
    assert (leader.last_stable_offset, leader.high_watermark) == (0, 4)
    assert e.delete_records("t", 0, 3) == 3
    assert leader.last_stable_offset == 3
    assert leader.read_offsets() == (3, 4, 3)
    assert e.list_offset("t", 0, -1, isolation_level="read_committed").offset == 3
    fetched = e.fetch("t", 0, 3, isolation_level="read_committed")
    assert (fetched.log_start_offset, fetched.last_stable_offset) == (3, 3)
    client.commit()
    assert leader.last_stable_offset == leader.high_watermark


def test_commit_writes_a_commit_marker_to_every_partition_and_releases_the_lso(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    client = TxnClient(e, "app")
    client.begin(("t", 0), ("t", 1))
    assert e.transactions.describe("app").state is TxnState.ONGOING
    first = client.send("t", 0, b"a", b"b")
    client.send("t", 1, b"c")
    plain(e, "t", 0, b"after")
    leader = e.partition("t", 0)
    assert leader.high_watermark == 3
    assert leader.last_stable_offset == first.base_offset == 0
    assert e.list_offset("t", 0, -1, isolation_level="read_committed").offset == 0
    assert e.list_offset("t", 0, -1).offset == 3
    client.commit()
    assert e.transactions.describe("app").state is TxnState.COMPLETE_COMMIT
    for partition in (0, 1):
        ((offset, producer_id, epoch, marker),) = control_batches(e, "t", partition)
        assert offset == e.offsets("t", partition)[1] - 1
        assert (producer_id, epoch) == (client.producer_id, client.epoch)
        assert marker == markers.Marker(True, e.leader_epoch)
        assert e.partition("t", partition).last_stable_offset == offset + 1
    assert leader.txns.aborted == []
    assert values(e, "t", "read_committed", 2) == [b"a", b"b", b"after", b"c"]


def test_abort_indexes_the_transaction_and_read_committed_drops_it(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    plain(e, "t", 0, b"before")
    client.begin(("t", 0))
    client.send("t", 0, b"x1", b"x2")
    plain(e, "t", 0, b"between")
    client.send("t", 0, b"x3")
    client.abort()
    ((marker_offset, _, _, marker),) = control_batches(e, "t", 0)
    assert not marker.commit
    assert e.partition("t", 0).txns.aborted == [AbortedTxn(client.producer_id, 1, marker_offset)]
    client.begin(("t", 0))
    client.send("t", 0, b"y")
    client.commit()
    assert values(e, "t", "read_committed") == [b"before", b"between", b"y"]
    # read_uncommitted: every record, never a control record
    assert values(e, "t", "read_uncommitted") == [b"before", b"x1", b"x2", b"between", b"x3", b"y"]
    fetched = e.fetch("t", 0, 2, isolation_level="read_committed")
    assert fetched.aborted_transactions == [AbortedTxn(client.producer_id, 1, marker_offset)]
    assert fetched.last_stable_offset == e.offsets("t", 0)[1]
    # a fetch past the aborted transaction is not told about it
    past = e.fetch("t", 0, marker_offset + 1, isolation_level="read_committed")
    assert past.aborted_transactions == []
    assert e.fetch("t", 0, 0).aborted_transactions is None


def test_read_committed_stops_at_the_first_open_transaction(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    early, late = TxnClient(e, "early"), TxnClient(e, "late")
    plain(e, "t", 0, b"p0")
    early.begin(("t", 0))
    late.begin(("t", 0))
    early.send("t", 0, b"e0")  # offset 1: the LSO while early is open
    plain(e, "t", 0, b"p1")
    late.send("t", 0, b"l0")
    leader = e.partition("t", 0)
    assert leader.last_stable_offset == 1
    fetched = e.fetch("t", 0, 0, isolation_level="read_committed")
    assert fetched.next_offset == 1
    assert [r.value for p in fetched.records for r in native.decode_records(p)] == [b"p0"]
    assert values(e, "t", "read_committed") == [b"p0"]
    early.commit()
    assert leader.last_stable_offset == 3  # late's first batch
    assert values(e, "t", "read_committed") == [b"p0", b"e0", b"p1"]
    late.abort()
    assert leader.last_stable_offset == leader.high_watermark
    assert values(e, "t", "read_committed") == [b"p0", b"e0", b"p1"]
    assert (
        e.list_offset("t", 0, -1, isolation_level="read_committed").offset == leader.high_watermark
    )


def _beside(read: Callable[[], Any]) -> tuple[list[Any], threading.Thread]:
    """``read`` on another thread (as a Fetch on the event loop reads the
    partition) while this one is mid-append and holds the partition's lock:
    given a moment to finish without the lock, else it waits for it."""
    found: list[Any] = []
    reader = threading.Thread(target=lambda: found.append(read()))
    reader.start()
    reader.join(0.2)
    return found, reader


def _transaction_after_a_record(e: engine.Engine) -> tuple[TxnClient, Partition]:
    """A transaction begun on t-0 after one plain record; its leader."""
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    plain(e, "t", 0, b"p0")
    client.begin(("t", 0))
    return client, e.partition("t", 0)


def test_a_reader_beside_a_transactions_first_append_stops_before_it(
    engine_factory: EngineFactory,
) -> None:
    """The WAL's thread moves the high watermark past a transaction's first
    batch once it is durable, while the appending thread still holds the
    partition's lock: a read_committed reader on another thread then finds
    the last stable offset at that batch, never past it (an uncommitted
    record exposed)."""
    e = engine_factory()
    client, leader = _transaction_after_a_record(e)
    store = leader.store
    real_submit = store.submit
    readers = []

    def submit_then_read(*args: Any, **kwargs: Any) -> Any:
        handle = real_submit(*args, **kwargs)
        handle.result(TIMEOUT)  # durable: the high watermark is past the batch
        readers.append(_beside(leader.read_offsets))
        return handle

    store.submit = submit_then_read  # type: ignore[method-assign]
    try:
        client.send("t", 0, b"x")
    finally:
        del store.submit
    ((found, reader),) = readers
    reader.join(TIMEOUT)
    assert found == [(0, 2, 1)]


def test_a_transactions_first_batch_refused_by_the_store_leaves_it_unopened(
    engine_factory: EngineFactory,
) -> None:
    """The transaction is noted open before the store takes its first batch:
    a store that refuses the batch leaves the last stable offset where it was."""
    e = engine_factory()
    client, leader = _transaction_after_a_record(e)
    store = leader.store

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the store refused it")

    store.submit = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError, match="refused"):
            client.send("t", 0, b"x")
    finally:
        del store.submit
    assert leader.txns.ongoing == {}
    assert leader.read_offsets() == (0, 1, 1)


def test_a_reader_beside_a_marker_stops_before_the_transaction(
    engine_factory: EngineFactory,
) -> None:
    """Once a marker's transaction is no longer open and its marker not yet
    durable, a reader on another thread at the watermarks below the
    marker (0, 2) finds the last stable offset at the transaction's first batch."""
    e = engine_factory()
    client, leader = _transaction_after_a_record(e)
    client.send("t", 0, b"x")
    readers = []

    class Ongoing(dict[int, int]):
        """The open transactions, read beside each one's ending."""

        def pop(self, *args: Any) -> Any:
            first = super().pop(*args)
            readers.append(_beside(lambda: leader.stable_offset(0, 2)))
            return first

        def __delitem__(self, key: int) -> None:
            super().__delitem__(key)
            readers.append(_beside(lambda: leader.stable_offset(0, 2)))

    leader.txns.ongoing = Ongoing(leader.txns.ongoing)
    client.abort()
    ((found, reader),) = readers
    reader.join(TIMEOUT)
    assert found == [1]
    assert values(e, "t", "read_committed") == [b"p0"]


def test_a_read_committed_consumer_waits_for_the_transaction_to_end(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"v")
    with e.consumer(auto_offset_reset="earliest", isolation_level="read_committed") as consumer:
        consumer.assign([("t", 0)])
        started = time.monotonic()
        assert consumer.poll(timeout=0.3) == []
        assert time.monotonic() - started >= 0.25  # it waited rather than returning at once
        client.commit()
        assert [r.value for r in consumer.poll(timeout=TIMEOUT)] == [b"v"]


def test_timestamps_are_found_only_below_the_lso_read_committed(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"v")
    assert e.list_offset("t", 0, TS).offset == 0
    assert e.list_offset("t", 0, TS, isolation_level="read_committed").offset == -1
    client.commit()
    assert e.list_offset("t", 0, TS, isolation_level="read_committed").offset == 0


def test_an_unknown_isolation_level_is_refused(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    with pytest.raises(ValueError, match="isolation_level"):
        e.fetch("t", 0, 0, isolation_level="committed")
    with pytest.raises(ValueError, match="isolation_level"):
        e.consumer(isolation_level="serializable")


# -- what a partition accepts ---------------------------------------------------------------


def test_a_transactional_batch_needs_the_partition_in_an_open_transaction(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    client = TxnClient(e, "app")
    with pytest.raises(InvalidTxnState):
        client.send("t", 0, b"no transaction")
    client.begin(("t", 0))
    with pytest.raises(InvalidTxnState):
        client.send("t", 1, b"not added")
    client.send("t", 0, b"ok")
    client.commit()
    with pytest.raises(InvalidTxnState):
        client.send("t", 0, b"after the end")
    idempotent_id, idempotent_epoch = e.init_producer_id()
    with pytest.raises(InvalidTxnState):  # an idempotent producer has no transactional id
        e.produce(
            "t",
            0,
            batch(
                [b"v"],
                producer_id=idempotent_id,
                producer_epoch=idempotent_epoch,
                base_sequence=0,
                is_transactional=True,
            ),
        )
    assert values(e, "t", "read_uncommitted", 2) == [b"ok"]


def test_a_recompressed_transactional_batch_stays_transactional(
    engine_factory: EngineFactory,
) -> None:
    """A topic's compression.type re-encodes batches; the transactional bit
    goes with them, so an aborted one is still dropped."""
    e = engine_factory()
    e.create_topic("t", 1, {"compression.type": "gzip"})
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"aborted")
    client.abort()
    (stored,) = native.scan_batches(b"".join(e.fetch("t", 0, 0).records))[:1]
    assert stored.is_transactional and stored.compression == 1
    assert values(e, "t", "read_committed") == []


def test_a_retried_transactional_batch_is_a_duplicate(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    first = client.send("t", 0, b"v")
    client.sequences[("t", 0)] = 0
    again = client.send("t", 0, b"v")
    assert again.duplicate and again.base_offset == first.base_offset
    client.commit()
    assert values(e, "t", "read_committed") == [b"v"]


# -- fencing -------------------------------------------------------------------------------------


def test_init_producer_id_bumps_the_epoch_and_fences_the_older_producer(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    zombie = TxnClient(e, "app")
    zombie.begin(("t", 0))
    zombie.send("t", 0, b"zombie")
    zombie.commit()
    fresh = TxnClient(e, "app")
    assert (fresh.producer_id, fresh.epoch) == (zombie.producer_id, zombie.epoch + 1)
    with pytest.raises(ProducerFenced):
        zombie.begin(("t", 0))
    with pytest.raises(InvalidProducerEpoch):
        zombie.send("t", 0, b"late write")
    with pytest.raises(ProducerFenced):
        zombie.commit()
    with pytest.raises(InvalidProducerIdMapping):
        e.transactions.add_partitions("app", zombie.producer_id + 1, fresh.epoch, [])
    fresh.begin(("t", 0))
    fresh.send("t", 0, b"fresh")
    fresh.commit()
    assert values(e, "t", "read_committed") == [b"zombie", b"fresh"]


def test_init_producer_id_aborts_an_open_transaction_first(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    zombie = TxnClient(e, "app")
    zombie.begin(("t", 0))
    zombie.send("t", 0, b"never committed")
    with pytest.raises(ConcurrentTransactions):
        e.transactions.init_producer_id("app", 60_000).result(TIMEOUT)
    fresh = TxnClient(e, "app")  # retries until the abort is complete
    # One bump fenced the open transaction (its abort marker carries it), the
    # retry bumped again.
    assert fresh.epoch == zombie.epoch + 2
    ((_, _, marker_epoch, marker),) = control_batches(e, "t", 0)
    assert (marker.commit, marker_epoch) == (False, zombie.epoch + 1)
    with pytest.raises(InvalidProducerEpoch):  # the partition saw the fencing epoch
        zombie.send("t", 0, b"late write")
    with pytest.raises(ProducerFenced):
        zombie.commit()
    assert values(e, "t", "read_committed") == []
    assert e.partition("t", 0).last_stable_offset == e.offsets("t", 0)[1]


def test_init_producer_id_with_the_current_id_and_epoch_resumes(
    engine_factory: EngineFactory,
) -> None:
    """KIP-360: a producer that had an error bumps its own epoch; a retry of
    that call gets the same answer; a fenced one is told so."""
    e = engine_factory()
    client = TxnClient(e, "app")
    pid, epoch = client.producer_id, client.epoch
    coordinator = e.transactions
    assert coordinator.init_producer_id("app", 60_000, pid, epoch).result(TIMEOUT) == (
        pid,
        epoch + 1,
    )
    # a retry of the same request (its answer was lost) gets the same epoch
    assert coordinator.init_producer_id("app", 60_000, pid, epoch).result(TIMEOUT) == (
        pid,
        epoch + 1,
    )
    assert coordinator.init_producer_id("app", 60_000).result(TIMEOUT) == (pid, epoch + 2)
    with pytest.raises(ProducerFenced):
        coordinator.init_producer_id("app", 60_000, pid, epoch + 1).result(TIMEOUT)
    with pytest.raises(ProducerFenced):
        coordinator.init_producer_id("app", 60_000, pid + 100, epoch).result(TIMEOUT)
    with pytest.raises(InvalidTransactionRequest):
        coordinator.init_producer_id("app", 60_000, pid, -1)


def test_an_exhausted_epoch_gets_a_new_producer_id(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    client = TxnClient(e, "app")
    meta = e.transactions.describe("app")
    exhausted = replace(meta, producer_epoch=32766)
    e.transactions._log.put("app", exhausted.to_wire()).result(TIMEOUT)
    e.close()
    e = engine_factory()
    pid, epoch = e.transactions.init_producer_id("app", 60_000).result(TIMEOUT)
    assert pid != client.producer_id and epoch == 0
    described = e.transactions.describe("app")
    assert described.last_producer_id == client.producer_id


def test_transaction_timeouts_are_checked(engine_factory: EngineFactory) -> None:
    e = engine_factory(transactions=engine.TransactionConfig(transaction_max_timeout_ms=1000))
    with pytest.raises(InvalidTransactionTimeout):
        e.transactions.init_producer_id("app", 1001)
    with pytest.raises(InvalidTransactionTimeout):
        e.transactions.init_producer_id("app", 0)
    with pytest.raises(InvalidTransactionRequest):
        e.transactions.init_producer_id("", 1000)
    assert e.transactions.init_producer_id("app", 1000).result(TIMEOUT)[1] == 0


def test_end_txn_answers_as_kafka_does_in_every_state(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    with pytest.raises(InvalidTxnState):  # Empty: nothing to end
        client.commit()
    client.begin(("t", 0))
    client.commit()
    client.commit()  # a retried commit of a committed transaction succeeds
    with pytest.raises(InvalidTxnState):
        client.abort()
    with pytest.raises(InvalidProducerIdMapping):
        e.transactions.end_transaction("nobody", 1, 0, True)


# -- listing ------------------------------------------------------------------------------------


def test_listing_filters_as_kafkas_list_transactions(engine_factory: EngineFactory) -> None:
    """States, producer ids, and a duration counted on the coordinator's
    clock: listed only once strictly older than asked. An id with no
    transaction begun has a start time of -1, so Kafka lists it under any
    duration; so does this."""
    clock = ManualClock()
    e = engine_factory(clock=clock)
    e.create_topic("t", 1)
    idle = TxnClient(e, "idle")
    busy = TxnClient(e, "busy", timeout_ms=900_000)
    busy.begin(("t", 0))

    def names(**filters: Any) -> set[str]:
        return {m.transactional_id for m in e.transactions.listing(**filters)}

    assert names() == {"idle", "busy"}
    assert names(states=[TxnState.ONGOING]) == {"busy"}
    assert names(states=[]) == set()
    assert names(producer_ids=[idle.producer_id]) == {"idle"}
    clock.advance(30)
    assert names(running_longer_than_ms=30_000) == {"idle"}
    clock.advance(0.001)
    assert names(running_longer_than_ms=30_000) == {"idle", "busy"}


# -- timeouts and expiry ------------------------------------------------------------------------


def test_an_open_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(
    engine_factory: EngineFactory,
) -> None:
    clock = ManualClock()
    e = engine_factory(clock=clock)  # the timed-out check runs every 10 s
    e.create_topic("t", 1)
    client = TxnClient(e, "slow", timeout_ms=200)
    client.begin(("t", 0))
    client.send("t", 0, b"too late")
    clock.advance(1)  # past the transaction's timeout, before the check
    assert e.transactions.describe("slow").state is TxnState.ONGOING
    clock.advance(9)
    wait_for(
        lambda: e.transactions.describe("slow").state is TxnState.COMPLETE_ABORT,
        "the timed-out transaction to be aborted",
    )
    assert e.transactions.describe("slow").producer_epoch == client.epoch + 1
    with pytest.raises(ProducerFenced):
        client.commit()
    assert values(e, "t", "read_committed") == []
    assert e.partition("t", 0).last_stable_offset == e.offsets("t", 0)[1]


def test_idle_transactional_ids_expire_but_open_transactions_do_not(
    engine_factory: EngineFactory,
) -> None:
    clock = ManualClock()
    e = engine_factory(
        clock=clock,
        transactions=engine.TransactionConfig(
            transactional_id_expiration_ms=60_000,
            transaction_remove_expired_transaction_cleanup_interval_ms=120_000,
        ),
    )
    e.create_topic("t", 1)
    TxnClient(e, "idle")
    busy = TxnClient(e, "busy", timeout_ms=900_000)
    busy.begin(("t", 0))
    clock.advance(100)  # past the expiration, before the check
    assert "idle" in {m.transactional_id for m in e.transactions.transactions()}
    clock.advance(30)  # the check; the busy transaction is within its timeout
    wait_for(
        lambda: "idle" not in {m.transactional_id for m in e.transactions.transactions()},
        "the idle transactional id to expire",
    )
    with pytest.raises(TransactionalIdNotFound):
        e.transactions.describe("idle")
    assert e.transactions.describe("busy").state is TxnState.ONGOING
    e.close()
    e = engine_factory()
    with pytest.raises(TransactionalIdNotFound):  # the removal was durable
        e.transactions.describe("idle")


# -- restarts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_an_open_transaction_is_aborted_after_a_restart_once_its_timeout_passes(
    engine_factory: EngineFactory, how: str
) -> None:
    clock = ManualClock()
    e = engine_factory(clock=clock)
    e.create_topic("t", 2)
    client = TxnClient(e, "app", timeout_ms=500)
    client.begin(("t", 0), ("t", 1))
    client.send("t", 0, b"a")
    client.send("t", 1, b"b")
    plain(e, "t", 0, b"plain")
    e.close(flush=how == "clean")
    e = engine_factory(clock=clock)
    # until the timeout passes the transaction is open: nothing past it is readable
    clock.advance(9.9)  # past its timeout, not yet at the check
    assert e.transactions.describe("app").state is TxnState.ONGOING
    assert e.partition("t", 0).last_stable_offset == 0
    clock.advance(0.2)
    wait_for(
        lambda: e.transactions.describe("app").state is TxnState.COMPLETE_ABORT,
        "the restarted engine to abort the transaction",
    )
    assert values(e, "t", "read_committed", 2) == [b"plain"]
    assert values(e, "t", "read_uncommitted", 2) == [b"a", b"plain", b"b"]
    for partition in (0, 1):
        assert e.partition("t", partition).last_stable_offset == e.offsets("t", partition)[1]


@pytest.mark.parametrize("commit", [True, False])
def test_a_prepared_transaction_is_completed_after_a_crash(
    engine_factory: EngineFactory, commit: bool
) -> None:
    """A crash after PrepareCommit/PrepareAbort is durable but before the
    markers: the state log holds the decision, the restart carries it out."""
    e = engine_factory()
    e.create_topic("t", 2)
    client = TxnClient(e, "app")
    client.begin(("t", 0), ("t", 1))
    client.send("t", 0, b"a")
    client.send("t", 1, b"b")
    prepared = replace(
        e.transactions.describe("app"),
        state=TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT,
    )
    e.transactions._log.put("app", prepared.to_wire()).result(TIMEOUT)
    e.close(flush=False)
    e = engine_factory()
    wait_for(
        lambda: (
            e.transactions.describe("app").state
            is (TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT)
        ),
        "the prepared transaction to complete",
    )
    expected = [b"a", b"b"] if commit else []
    assert values(e, "t", "read_committed", 2) == expected
    for partition in (0, 1):
        ((_, _, _, marker),) = control_batches(e, "t", partition)
        assert marker.commit is commit


def test_a_completed_transaction_whose_markers_are_written_again_reads_the_same(
    engine_factory: EngineFactory,
) -> None:
    """A crash after the markers but before CompleteCommit: the restart
    writes the markers again, which changes nothing a reader sees."""
    e = engine_factory()
    e.create_topic("t", 1)
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    client.abort()
    client.begin(("t", 0))
    client.send("t", 0, b"b")
    meta = e.transactions.describe("app")
    client.commit()
    e.transactions._log.put("app", replace(meta, state=TxnState.PREPARE_COMMIT).to_wire()).result(
        TIMEOUT
    )
    aborted = list(e.partition("t", 0).txns.aborted)
    e.close(flush=False)
    e = engine_factory()
    wait_for(lambda: e.transactions.describe("app").state is TxnState.COMPLETE_COMMIT, "completion")
    assert len(control_batches(e, "t", 0)) == 3
    assert e.partition("t", 0).txns.aborted == aborted
    assert values(e, "t", "read_committed") == [b"b"]


@pytest.mark.parametrize("how", ["clean", "crash"])
def test_the_aborted_index_and_open_transactions_survive_a_restart(
    engine_factory: EngineFactory, how: str
) -> None:
    """A clean close checkpoints them; a crash rebuilds them from the batch
    headers after the last checkpoint (markers decoded)."""
    e = engine_factory()
    e.create_topic("t", 1)
    first, second = TxnClient(e, "first"), TxnClient(e, "second")
    for round_ in range(3):
        first.begin(("t", 0))
        first.send("t", 0, b"f%d" % round_)
        first.end(commit=round_ != 1)
        if round_ == 1:
            e.checkpoint()  # a crash replays what comes after this
    second.begin(("t", 0))
    second.send("t", 0, b"open")
    leader = e.partition("t", 0)
    aborted, ongoing, stable = (
        list(leader.txns.aborted),
        dict(leader.txns.ongoing),
        leader.last_stable_offset,
    )
    assert len(aborted) == 1 and ongoing == {second.producer_id: stable}
    e.close(flush=how == "clean")
    e = engine_factory()
    leader = e.partition("t", 0)
    assert leader.txns.aborted == aborted
    assert leader.txns.ongoing == ongoing
    assert leader.last_stable_offset == stable
    assert e.transactions.describe("second").state is TxnState.ONGOING


def test_a_format_1_checkpoint_is_read(engine_factory: EngineFactory) -> None:
    """Checkpoints written before transactions (format 1: no "txns", producer
    entries of four fields) are read: the partition had no transactions."""
    import msgpack

    e = engine_factory()
    e.create_topic("t", 1)
    producer_id, epoch = e.init_producer_id()
    e.produce("t", 0, batch([b"v"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0))
    leader = e.partition("t", 0)
    record = {
        "v": 1,
        "end": leader.high_watermark,
        "full": True,
        "index": [],
        "ti": leader.time_index.state(),
        "producers": [entry[:4] for entry in leader.producers.to_wire()],
        "epochs": [list(epoch_) for epoch_ in leader.leader_epochs],
        "cleaned": 0,
    }
    offset = e.store.next_offset(leader.state_stream_id)
    e.store.append(leader.state_stream_id, offset, offset, msgpack.packb(record, use_bin_type=True))
    e.close(flush=False)
    e = engine_factory()
    leader = e.partition("t", 0)
    assert leader.txns.ongoing == {} and leader.txns.aborted == []
    # the producer table came from the checkpoint: the next sequence is 1
    assert e.produce(
        "t", 0, batch([b"v"], producer_id=producer_id, producer_epoch=epoch, base_sequence=0)
    ).duplicate


# -- admin views -----------------------------------------------------------------------------------


def test_describe_producers_shows_open_transactions(engine_factory: EngineFactory) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    plain(e, "t", 0, b"x")
    client = TxnClient(e, "app")
    client.begin(("t", 0))
    client.send("t", 0, b"a", b"b")
    (info,) = e.partition("t", 0).describe_producers()
    assert (info.producer_id, info.producer_epoch) == (client.producer_id, client.epoch)
    assert (info.last_sequence, info.current_txn_start_offset) == (1, 1)
    client.commit()
    (info,) = e.partition("t", 0).describe_producers()
    assert info.current_txn_start_offset == -1
    assert info.coordinator_epoch == e.leader_epoch


# -- the log cleaner -------------------------------------------------------------------------------


def test_the_cleaner_drops_aborted_records_then_their_marker(
    tmp_path: Path, engine_factory: EngineFactory
) -> None:
    """Kafka's rules: aborted records never hide committed ones and are
    removed; a marker goes once its transaction has no batch left (a later
    pass) and it is older than delete.retention.ms; its index entry goes
    with it; an open transaction is never cleaned."""
    from tests.engine.conftest import QUIET_STORE

    e = engine_factory(store=QUIET_STORE)
    e.create_topic(
        "t",
        1,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": 0, "delete.retention.ms": 0},
    )
    client = TxnClient(e, "app")
    plain(e, "t", 0, b"committed")  # key k
    client.begin(("t", 0))
    client.send("t", 0, b"aborted")  # same key: must not replace the committed value
    client.abort()
    client.begin(("t", 0))
    client.send("t", 0, b"other", key=b"j")
    client.commit()
    assert e.flush(30)
    leader = e.partition("t", 0)
    assert e.cleaner.clean(leader, force=True)
    assert values(e, "t", "read_uncommitted") == [b"committed", b"other"]
    assert values(e, "t", "read_committed") == [b"committed", b"other"]
    assert len(control_batches(e, "t", 0)) == 2  # the abort marker stays this pass
    assert len(leader.txns.aborted) == 1
    plain(e, "t", 0, b"newer", key=b"n")
    assert e.flush(30)
    assert e.cleaner.clean(leader, force=True)
    assert all(marker.commit for _, _, _, marker in control_batches(e, "t", 0))
    assert leader.txns.aborted == []
    assert values(e, "t", "read_committed") == [b"committed", b"other", b"newer"]
    # an open transaction holds the cleaner back
    client.begin(("t", 0))
    client.send("t", 0, b"open", key=b"n")
    plain(e, "t", 0, b"newest", key=b"n")
    assert e.flush(30)
    e.cleaner.clean(leader, force=True)
    assert b"open" in values(e, "t", "read_uncommitted")
    client.commit()
    assert values(e, "t", "read_committed")[-2:] == [b"open", b"newest"]


# -- the embedded transactional producer -----------------------------------------------------------


def test_the_embedded_transactional_producer_commits_aborts_and_is_fenced(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    with e.producer(transactional_id="embedded") as producer:
        with pytest.raises(InvalidTxnState):
            producer.begin_transaction()  # init_transactions comes first
        producer.init_transactions(TIMEOUT)
        with pytest.raises(InvalidTxnState):
            producer.send("t", b"outside", partition=0)
        producer.begin_transaction()
        sent = [producer.send("t", b"c%d" % i, partition=i % 2) for i in range(4)]
        producer.commit_transaction(TIMEOUT)
        assert [f.result(TIMEOUT).partition for f in sent] == [0, 1, 0, 1]
        producer.begin_transaction()
        producer.send("t", b"aborted", partition=0)
        producer.flush(TIMEOUT)  # written, so the abort leaves it aborted (unsent, it would fail)
        producer.abort_transaction(TIMEOUT)
        producer.begin_transaction()
        producer.commit_transaction(TIMEOUT)  # nothing sent: nothing to end
        successor = e.producer(transactional_id="embedded")
        successor.init_transactions(TIMEOUT)
        producer.begin_transaction()
        producer.send("t", b"zombie", partition=0)
        with pytest.raises(TransactionError) as caught:
            producer.commit_transaction(TIMEOUT)
        assert isinstance(caught.value.__cause__, ProducerFenced)
        successor.close()
    assert values(e, "t", "read_committed", 2) == [b"c0", b"c2", b"c1", b"c3"]
    assert values(e, "t", "read_uncommitted", 2) == [b"c0", b"c2", b"aborted", b"c1", b"c3"]


@pytest.mark.parametrize("commit", [True, False])
def test_offsets_sent_in_a_transaction_are_committed_with_it(
    engine_factory: EngineFactory, commit: bool
) -> None:
    e = engine_factory()
    e.create_topic("in", 1)
    e.create_topic("out", 1)
    source = TopicPartition("in", 0)
    with e.producer(transactional_id="pipeline") as producer:
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        producer.send("out", b"transformed", partition=0)
        producer.send_offsets_to_transaction({source: 7}, "readers", TIMEOUT)
        # pending until the transaction ends: invisible to a fetch
        assert e.groups.fetch_offsets("readers", [source])[source][0] is None
        if commit:
            producer.commit_transaction(TIMEOUT)
        else:
            producer.abort_transaction(TIMEOUT)
    found = e.groups.fetch_offsets("readers", [source])[source][0]
    assert (found.offset if found is not None else None) == (7 if commit else None)
    assert values(e, "out", "read_committed") == ([b"transformed"] if commit else [])


def test_the_embedded_transactional_producer_sends_only_inside_a_transaction(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 1)
    producer = e.producer(transactional_id="strict")
    producer.init_transactions()
    with pytest.raises(InvalidTxnState, match="begin_transaction"):
        producer.send("t", b"before")
    producer.begin_transaction()
    producer.send("t", b"inside")
    producer.commit_transaction()
    with pytest.raises(InvalidTxnState, match="begin_transaction"):
        producer.send("t", b"after the commit")
    producer.close()
    with pytest.raises(InvalidTxnState):  # outside a transaction, closed or not
        producer.send("t", b"closed")
    assert values(e, "t", "read_committed") == [b"inside"]
    plain = e.producer()
    plain.close()
    with pytest.raises(EngineClosed):
        plain.send("t", b"closed")


def test_pending_offsets_of_a_producer_with_no_open_transaction_are_dropped_at_start(
    engine_factory: EngineFactory,
) -> None:
    """A TxnOffsetCommit's pending record with no open transaction left to
    complete it (its transaction ended while it was written, and the engine
    stopped before its deletion was): dropped when the engine opens, never
    completed by the producer's next transaction."""
    e = engine_factory()
    e.create_topic("in", 1)
    source = TopicPartition("in", 0)
    producer_id, epoch = e.transactions.init_producer_id("pipeline", 60_000).result(TIMEOUT)
    orphan = e.groups.commit_transactional_offsets(
        "readers", producer_id, epoch, "", -1, None, {source: OffsetAndMetadata(7)}
    )
    assert orphan.result(TIMEOUT) == {source: 0}
    e.close()
    e = engine_factory()
    assert e.groups.fetch_offsets("readers", [source], require_stable=True)[source] == (None, 0)
    e.transactions.add_offsets("pipeline", producer_id, epoch, "readers").result(TIMEOUT)
    e.transactions.end_transaction("pipeline", producer_id, epoch, True).result(TIMEOUT)
    assert e.groups.fetch_offsets("readers", [source])[source] == (None, 0)


def test_a_transaction_timing_out_between_an_offset_commits_check_and_its_write_voids_it(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TxnOffsetCommit's check passes while the transaction is open; the
    transaction times out and its abort completes before the commit reaches
    the group coordinator. The commit is void: refused, and never completed
    by the producer's next transaction (same producer id) as its own."""
    clock = ManualClock()
    e = engine_factory(clock=clock)
    e.create_topic("in", 2)
    first, second = TopicPartition("in", 0), TopicPartition("in", 1)
    check = e.transactions.check_offset_commit

    def check_then_time_out(*args: Any) -> None:
        check(*args)
        clock.advance(1)  # past the transaction's timeout
        assert e.transactions.abort_timed_out() == 1
        wait_for(
            lambda: e.transactions.describe("pipeline").state is TxnState.COMPLETE_ABORT,
            "the timed-out transaction to be aborted",
        )

    monkeypatch.setattr(e.transactions, "check_offset_commit", check_then_time_out)
    doomed = e.producer(transactional_id="pipeline", transaction_timeout_ms=200)
    doomed.init_transactions(TIMEOUT)
    doomed.begin_transaction()
    with pytest.raises(TransactionError, match="INVALID_TXN_STATE"):
        doomed.send_offsets_to_transaction({first: 7}, "readers", TIMEOUT)
    assert e.groups.fetch_offsets("readers", [first], require_stable=True)[first] == (None, 0)
    monkeypatch.undo()
    with e.producer(transactional_id="pipeline") as successor:
        successor.init_transactions(TIMEOUT)
        assert successor.producer_id == doomed.producer_id
        successor.begin_transaction()
        successor.send_offsets_to_transaction({second: 5}, "readers", TIMEOUT)
        successor.commit_transaction(TIMEOUT)
    found = e.groups.fetch_offsets("readers", [first, second])
    assert {tp: om.offset if om else None for tp, (om, _) in found.items()} == {
        first: None,
        second: 5,
    }


def commits_its_own_offsets_only(
    e: engine.Engine, producer_id: int, epoch: int, void: TopicPartition, own: TopicPartition
) -> None:
    """The "pipeline" producer's open transaction, at ``epoch``, commits
    offset 5 of ``own``: "readers" gets that, and nothing of ``void``."""
    assert e.transactions.describe("pipeline").state is TxnState.ONGOING
    commit = e.groups.commit_transactional_offsets(
        "readers", producer_id, epoch, "", -1, None, {own: OffsetAndMetadata(5)}
    )
    assert commit.result(TIMEOUT) == {own: 0}
    e.transactions.end_transaction("pipeline", producer_id, epoch, True).result(TIMEOUT)
    found = e.groups.fetch_offsets("readers", [void, own])
    assert {tp: om.offset if om else None for tp, (om, _) in found.items()} == {
        void: None,
        own: 5,
    }


def test_a_transactions_commit_completes_only_the_offsets_committed_at_its_epoch(
    engine_factory: EngineFactory,
) -> None:
    """A void TxnOffsetCommit's record (its transaction timed out while it
    was written) left by a stop before its deletion, while the producer's
    next transaction (same producer id, a later epoch) was already open:
    that transaction's commit completes its own offsets only."""
    e = engine_factory()
    e.create_topic("in", 2)
    first, second = TopicPartition("in", 0), TopicPartition("in", 1)
    producer_id, epoch = e.transactions.init_producer_id("pipeline", 60_000).result(TIMEOUT)
    void = e.groups.commit_transactional_offsets(
        "readers", producer_id, epoch, "", -1, None, {first: OffsetAndMetadata(7)}
    )
    assert void.result(TIMEOUT) == {first: 0}
    next_id, next_epoch = e.transactions.init_producer_id("pipeline", 60_000).result(TIMEOUT)
    assert (next_id, next_epoch) == (producer_id, epoch + 1)
    e.transactions.add_offsets("pipeline", producer_id, next_epoch, "readers").result(TIMEOUT)
    e.close()
    commits_its_own_offsets_only(engine_factory(), producer_id, next_epoch, first, second)


def offset_commit_being_written(
    e: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int, TopicPartition, TopicPartition, list[Any]]:
    """The "pipeline" producer's open transaction commits offset 7 of the
    first partition of "in" for "readers"; the write's answer is held.
    Returns the producer id and epoch, both partitions, the held answers."""
    e.create_topic("in", 2)
    first, second = TopicPartition("in", 0), TopicPartition("in", 1)
    producer_id, epoch = e.transactions.init_producer_id("pipeline", 60_000).result(TIMEOUT)
    e.transactions.add_offsets("pipeline", producer_id, epoch, "readers").result(TIMEOUT)
    held = never_answered(e.groups, "txn", monkeypatch)
    e.groups.commit_transactional_offsets(
        "readers", producer_id, epoch, "", -1, None, {first: OffsetAndMetadata(7)}
    )
    return producer_id, epoch, first, second, held


def test_an_end_txn_sent_before_an_offset_commits_answer_voids_it_across_a_crash(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EndTxn reaches the coordinator while a TxnOffsetCommit of the same
    transaction is still being written; the client begins its next
    transaction at the same producer epoch; the engine crashes before the
    void write's answer. After the restart the next transaction's commit
    must not commit the void write's offsets (docs/design/0053)."""
    e = engine_factory()
    producer_id, epoch, first, second, held = offset_commit_being_written(e, monkeypatch)
    e.transactions.end_transaction("pipeline", producer_id, epoch, False).result(TIMEOUT)
    assert len(held) == 1  # the write is durable; its answer never came
    e.transactions.add_offsets("pipeline", producer_id, epoch, "readers").result(TIMEOUT)
    e.close(flush=False)
    commits_its_own_offsets_only(engine_factory(), producer_id, epoch, first, second)


def test_a_void_offset_commit_stays_void_when_its_completion_is_run_again(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EndTxn while a TxnOffsetCommit of the transaction is being written;
    the completion's record fails to write, and the completion settles the
    offsets again (its markers are durable: the EndTxn is answered, as
    Kafka answers it). That attempt must end the void commit's record:
    after a crash, the producer's next transaction at the same epoch must
    not commit its offsets (docs/design/0053, 0108)."""
    e = engine_factory(transactions=FAST_ABORTS)
    producer_id, epoch, first, second, held = offset_commit_being_written(e, monkeypatch)
    wait_for(lambda: len(held) == 1, "the commit's write is durable")
    state_log = e.groups._run.state_log
    update = state_log.update

    def refused_once(puts: Any = None, deletes: Any = None) -> Any:
        monkeypatch.setattr(state_log, "update", update)
        raise OSError("the WAL's disk is full")

    monkeypatch.setattr(state_log, "update", refused_once)
    e.transactions.end_transaction("pipeline", producer_id, epoch, False).result(TIMEOUT)
    wait_for(
        lambda: e.transactions.describe("pipeline").state is TxnState.COMPLETE_ABORT,
        "the offsets settled again",
    )
    e.transactions.add_offsets("pipeline", producer_id, epoch, "readers").result(TIMEOUT)
    e.close(flush=False)
    commits_its_own_offsets_only(engine_factory(), producer_id, epoch, first, second)


def test_an_offset_commit_whose_group_is_deleted_while_written_stays_void_across_a_crash(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteGroups while a TxnOffsetCommit to the group is being written;
    the engine crashes before the write's answer. After the restart the
    group is not brought back by the record, nor by its transaction's
    commit (docs/design/0053)."""
    e = engine_factory()
    e.create_topic("in", 2)
    first, second = TopicPartition("in", 0), TopicPartition("in", 1)
    producer_id, epoch = e.transactions.init_producer_id("pipeline", 60_000).result(TIMEOUT)
    e.transactions.add_offsets("pipeline", producer_id, epoch, "readers").result(TIMEOUT)
    assert e.groups.commit_offsets("readers", -1, "", None, {second: OffsetAndMetadata(3)}).result(
        TIMEOUT
    ) == {second: 0}
    held = never_answered(e.groups, "txn", monkeypatch)
    e.groups.commit_transactional_offsets(
        "readers", producer_id, epoch, "", -1, None, {first: OffsetAndMetadata(7)}
    )
    assert e.groups.delete_groups(["readers"]).result(TIMEOUT) == {"readers": 0}
    assert len(held) == 1
    e.close(flush=False)
    e = engine_factory()
    assert [g.group_id for g in e.groups.list_groups()] == []
    e.transactions.end_transaction("pipeline", producer_id, epoch, True).result(TIMEOUT)
    found = e.groups.fetch_offsets("readers", [first, second])
    assert {tp: om.offset if om else None for tp, (om, _) in found.items()} == {
        first: None,
        second: None,
    }


def test_a_start_whose_drop_of_orphaned_offsets_is_never_durable_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start drops the pending offsets of producers with no open
    transaction (docs/design/0048). A drop whose write never becomes durable
    (a stalled disk: fault injection) fails the open within the store's
    open_timeout_s, with an error that says what, instead of hanging it."""
    config = engine.EngineConfig(store=replace(FAST_STORE, open_timeout_s=0.2))
    with engine.open(tmp_path / "node", config=config) as opened:
        opened.create_topic("t", 1)
        orphan = opened.groups.commit_transactional_offsets(
            "g", 7, 0, "", -1, None, {TopicPartition("t", 0): OffsetAndMetadata(3)}
        )
        assert orphan.result(TIMEOUT) == {TopicPartition("t", 0): 0}
    never: list[Future[None]] = []

    def stalled(self: GroupCoordinator, producer_id: int, committed: bool) -> Future[None]:
        never.append(Future())
        return never[-1]

    monkeypatch.setattr(GroupCoordinator, "complete_transaction", stalled)
    failed: list[BaseException] = []

    def open_it() -> None:
        try:
            engine.open(tmp_path / "node", config=config).close()
        except BaseException as error:
            failed.append(error)

    opening = threading.Thread(target=open_it, daemon=True)
    opening.start()
    opening.join(TIMEOUT)
    for future in never:  # lets a hung open finish, so the test does not leak it
        future.set_result(None)
    assert not opening.is_alive(), "the open hung on the drop's write"
    (error,) = failed
    assert isinstance(error, TimeoutError)
    assert "pending offsets of producer 7" in str(error)
    monkeypatch.undo()  # and the store was closed: the node opens again
    with engine.open(tmp_path / "node", config=config) as reopened:
        assert reopened.groups.fetch_offsets("g", None) == {}
