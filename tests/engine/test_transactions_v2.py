"""Transactions v2 (KIP-890 part 2) through the engine's coordinator: every
EndTxn bumps the epoch and its markers carry the bumped one, a write at
the epoch before is fenced, a retried EndTxn is answered with the epoch it
bumped to, the last epoch rotates the producer id, an abort with nothing
added still ends a transaction, and a restart finds each state where it
was (docs/design/0076)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import engine
from engine.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTxnState,
    ProducerFenced,
)
from engine.transactions.metadata import (
    MAX_EPOCH,
    TV_2,
    TransactionMetadata,
    TxnState,
    prepare_end,
)
from engine.types import TopicPartition
from tests.engine.conftest import EngineFactory
from tests.engine.test_transactions import (
    TIMEOUT,
    TxnClient,
    control_batches,
    values,
    wait_for,
)


class TV2Client(TxnClient):
    """A transactions v2 client: its adds and ends say TV_2, and it goes on
    with the producer id and epoch each EndTxn answers."""

    def begin(self, *partitions: tuple[str, int]) -> None:
        self.engine.transactions.add_partitions(
            self.transactional_id,
            self.producer_id,
            self.epoch,
            [TopicPartition(*tp) for tp in partitions],
            TV_2,
        ).result(TIMEOUT)

    def end(self, commit: bool) -> None:
        self.producer_id, self.epoch = self.ended(commit, self.producer_id, self.epoch)
        self.sequences.clear()

    def ended(self, commit: bool, producer_id: int, epoch: int) -> tuple[int, int]:
        answer: tuple[int, int] = self.engine.transactions.end_transaction(
            self.transactional_id, producer_id, epoch, commit, TV_2
        ).result(TIMEOUT)
        return answer


def with_client(
    engine_factory: EngineFactory, partitions: int = 1, **options: Any
) -> tuple[engine.Engine, TV2Client]:
    """An engine opened with ``options``, its topic "t" of ``partitions``,
    and a v2 client of the transactional id "app"."""
    e = engine_factory(**options)
    e.create_topic("t", partitions)
    return e, TV2Client(e, "app")


def markers_of(e: engine.Engine, topic: str, partition: int = 0) -> list[tuple[int, int, bool]]:
    """(producer id, producer epoch, commit) of every marker."""
    return [(pid, epoch, m.commit) for _, pid, epoch, m in control_batches(e, topic, partition)]


def test_every_end_bumps_the_epoch_and_the_markers_carry_it(engine_factory: EngineFactory) -> None:
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    client.send("t", 0, b"committed")
    client.commit()
    assert (client.producer_id, client.epoch) == (pid, epoch + 1)
    client.begin(("t", 0))
    client.send("t", 0, b"aborted")
    client.abort()
    assert (client.producer_id, client.epoch) == (pid, epoch + 2)
    assert markers_of(e, "t") == [(pid, epoch + 1, True), (pid, epoch + 2, False)]
    assert values(e, "t", "read_committed") == [b"committed"]
    # The aborted index names the aborted transaction as under v1.
    ((aborted_pid, first, _),) = [tuple(a) for a in e.partition("t", 0).txns.aborted]
    assert (aborted_pid, first) == (pid, 2)
    described = e.transactions.describe("app")
    assert (described.state, described.producer_epoch) == (TxnState.COMPLETE_ABORT, epoch + 2)


def test_a_write_at_the_epoch_before_the_end_is_fenced(engine_factory: EngineFactory) -> None:
    e, client = with_client(engine_factory)
    old = client.epoch
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    client.commit()
    with pytest.raises(ProducerFenced):  # the add a Produce v12 makes
        e.transactions.add_partitions(
            "app", client.producer_id, old, [TopicPartition("t", 0)], TV_2
        ).result(TIMEOUT)
    late = TxnClient.__new__(TxnClient)
    late.engine, late.producer_id, late.epoch, late.sequences = e, client.producer_id, old, {}
    with pytest.raises(InvalidProducerEpoch):  # the partition's own check
        late.send("t", 0, b"late")
    assert values(e, "t", "read_uncommitted") == [b"a"]
    client.begin(("t", 0))  # the bumped epoch goes on, its sequences from 0
    client.send("t", 0, b"b")
    client.commit()
    assert values(e, "t", "read_committed") == [b"a", b"b"]


def test_a_retried_end_is_answered_with_the_epoch_it_bumped_to(
    engine_factory: EngineFactory,
) -> None:
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    client.commit()
    assert client.ended(True, pid, epoch) == (pid, epoch + 1)  # the retry
    assert markers_of(e, "t") == [(pid, epoch + 1, True)]  # nothing written again
    with pytest.raises(InvalidTxnState):  # the other outcome is no retry
        client.ended(False, pid, epoch)
    with pytest.raises(ProducerFenced):  # an epoch from before the retried one
        client.ended(True, pid, epoch - 1)
    with pytest.raises(InvalidTxnState):  # the bumped epoch: no transaction to commit
        client.ended(True, pid, epoch + 1)


def test_an_abort_with_nothing_added_bumps_the_epoch_and_writes_no_marker(
    engine_factory: EngineFactory,
) -> None:
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.abort()
    assert (client.producer_id, client.epoch) == (pid, epoch + 1)
    assert e.transactions.describe("app").state is TxnState.COMPLETE_ABORT
    assert markers_of(e, "t") == []
    with pytest.raises(InvalidTxnState):  # a commit of nothing stays refused
        client.commit()


def at_epoch(e: engine.Engine, transactional_id: str, epoch: int) -> None:
    meta = e.transactions.describe(transactional_id)
    e.transactions._log.put(transactional_id, replace(meta, producer_epoch=epoch).to_wire()).result(
        TIMEOUT
    )


def restarted_at(
    engine_factory: EngineFactory, client: TV2Client, epoch: int, **options: Any
) -> engine.Engine:
    """Puts ``client``'s transactional id at ``epoch`` (at_epoch) and opens
    its engine again with ``options``: the client goes on at that epoch,
    on the engine returned."""
    at_epoch(client.engine, client.transactional_id, epoch)
    client.engine.close()
    e = engine_factory(**options)
    client.engine, client.epoch = e, epoch
    return e


def test_the_last_epoch_rotates_the_producer_id(engine_factory: EngineFactory) -> None:
    e, client = with_client(engine_factory)
    pid = client.producer_id
    e = restarted_at(engine_factory, client, MAX_EPOCH - 2)
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    client.commit()
    assert (client.producer_id, client.epoch) == (pid, MAX_EPOCH - 1)
    client.begin(("t", 0))
    client.send("t", 0, b"b")
    client.commit()
    new_pid = client.producer_id
    assert new_pid != pid and client.epoch == 0
    # The markers fence the old id at the epoch past the last one handed out.
    assert markers_of(e, "t") == [(pid, MAX_EPOCH - 1, True), (pid, MAX_EPOCH, True)]
    described = e.transactions.describe("app")
    assert (described.last_producer_id, described.last_producer_epoch) == (pid, MAX_EPOCH - 1)
    # A retry with the old id and the last epoch is answered with the new id.
    assert client.ended(True, pid, MAX_EPOCH - 1) == (new_pid, 0)
    with pytest.raises(InvalidProducerIdMapping):  # the old id is no longer the id's
        client.ended(True, pid, MAX_EPOCH - 2)
    client.begin(("t", 0))
    client.send("t", 0, b"c")
    client.commit()
    assert (client.producer_id, client.epoch) == (new_pid, 1)
    assert values(e, "t", "read_committed") == [b"a", b"b", b"c"]


@pytest.mark.parametrize("rotating", [False, True])
@pytest.mark.parametrize("commit", [True, False])
def test_a_prepared_end_is_completed_after_a_crash_with_the_bumped_epoch(
    engine_factory: EngineFactory, commit: bool, rotating: bool
) -> None:
    """A crash after PrepareCommit/PrepareAbort of a v2 end is durable but
    before the markers: the restart writes them at the bumped epoch and
    hands over to the next producer id if the end rotates it."""
    e, client = with_client(engine_factory)
    pid = client.producer_id
    if rotating:
        e = restarted_at(engine_factory, client, MAX_EPOCH - 1)
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    meta = e.transactions.describe("app")
    next_pid = e.catalog.allocate_producer_id() if rotating else -1
    prepared = prepare_end(meta, commit, TV_2, next_pid, meta.update_ms)
    e.transactions._log.put("app", prepared.to_wire()).result(TIMEOUT)
    e.close(flush=False)
    e = engine_factory()
    wanted = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    wait_for(lambda: e.transactions.describe("app").state is wanted, "the completion")
    assert markers_of(e, "t") == [(pid, client.epoch + 1, commit)]
    assert values(e, "t", "read_committed") == ([b"a"] if commit else [])
    going_on = (next_pid, 0) if rotating else (pid, client.epoch + 1)
    client.engine = e
    assert client.ended(commit, pid, client.epoch) == going_on  # the client's retry


def test_ongoing_and_completed_v2_states_survive_a_restart(engine_factory: EngineFactory) -> None:
    e, client = with_client(engine_factory)
    pid, epoch = client.producer_id, client.epoch
    client.begin(("t", 0))
    client.send("t", 0, b"a")
    e.close(flush=False)
    e = engine_factory()
    client.engine = e
    assert e.transactions.describe("app").transaction_version == TV_2
    client.commit()  # the open transaction goes on after the restart
    e.close(flush=False)
    e = engine_factory()
    client.engine = e
    assert client.ended(True, pid, epoch) == (pid, epoch + 1)  # still told a retry
    client.begin(("t", 0))
    client.send("t", 0, b"b")
    client.commit()
    assert values(e, "t", "read_committed") == [b"a", b"b"]


def test_a_state_without_v2_fields_is_written_as_format_1() -> None:
    """A tidelog that reads only format 1 still reads every id no v2 client
    touched; a v2 state round-trips."""
    v1 = TransactionMetadata("app", 7, 3, 60_000, TxnState.EMPTY)
    assert v1.to_wire()["v"] == 1 and "tv" not in v1.to_wire()
    assert TransactionMetadata.from_wire("app", v1.to_wire()) == v1
    v2 = prepare_end(replace(v1, state=TxnState.ONGOING), True, TV_2, 8, 5)
    assert v2.to_wire()["v"] == 2
    assert TransactionMetadata.from_wire("app", v2.to_wire()) == v2
