"""A librdkafka transactional producer (confluent-kafka) through
transaction state writes the store refuses for room (past its unuploaded
headroom, as through an object-store outage) and its recovery: each
refused write (the transaction's start, its PrepareCommit, its
CompleteCommit) is answered as Kafka answers a log append that timed out,
COORDINATOR_NOT_AVAILABLE, or, for the Complete record, written again
while the EndTxn is answered done; the client's retries go through once
the store takes writes, and the transaction commits exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

import engine
from engine.transactions.metadata import TxnState
from tests.engine.conftest import FAST_STORE
from tests.engine.test_transactions import control_batches
from tests.engine.txn_state_faults import RefusedStateWrites, no_room
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_transactions_confluent import read_values

TIMEOUT = 30.0


def test_a_librdkafka_transaction_commits_once_through_refused_state_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    e = engine.open(tmp_path / "node", f"file://{tmp_path / 'objects'}", config)
    server = InProcessServer(e)
    try:
        e.create_topic("out", 1)
        producer = Producer(
            {
                "bootstrap.servers": server.bootstrap,
                "transactional.id": "tx",
                **quiet_librdkafka(),
            }
        )
        producer.init_transactions(TIMEOUT)
        refused = RefusedStateWrites(
            monkeypatch, e, {"Ongoing": 2, "PrepareCommit": 2, "CompleteCommit": 2}, no_room
        )
        producer.begin_transaction()
        for value in (b"a", b"b", b"c"):
            producer.produce("out", value, partition=0)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                producer.commit_transaction(TIMEOUT)
                break
            except KafkaException as error:
                # librdkafka hands a retriable error of EndTxn to the
                # application, whose retry is the documented answer.
                assert error.args[0].retriable(), error
                assert time.monotonic() < deadline, "the commit never went through"
        deadline = time.monotonic() + TIMEOUT
        while e.transactions.describe("tx").state is not TxnState.COMPLETE_COMMIT:
            assert time.monotonic() < deadline, "the transaction never completed"
            time.sleep(0.01)
        assert sorted(refused.refused) == sorted(
            ["Ongoing"] * 2 + ["PrepareCommit"] * 2 + ["CompleteCommit"] * 2
        )
        assert [marker.commit for _, _, _, marker in control_batches(e, "out", 0)] == [True]
        assert read_values(server.bootstrap, "out", "read_committed") == {0: [b"a", b"b", b"c"]}
        producer.begin_transaction()  # the next transaction starts where it is
        producer.produce("out", b"d", partition=0)
        producer.commit_transaction(TIMEOUT)
        assert read_values(server.bootstrap, "out", "read_committed") == {
            0: [b"a", b"b", b"c", b"d"]
        }
    finally:
        server.stop()
        e.close()
    with engine.open(tmp_path / "node", f"file://{tmp_path / 'objects'}", config) as reopened:
        assert reopened.transactions.describe("tx").state is TxnState.COMPLETE_COMMIT
