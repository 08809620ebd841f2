"""librdkafka (confluent-kafka) and kafka-python transactional producers
whose transaction's marker on one of its two partitions the store refuses
(for room, or with an I/O error, nothing accepted): the coordinator writes
that partition's marker again alone until it is written, the client
commits once, every partition holds exactly one marker, and a
read_committed consumer sees the transaction once (docs/design/0108)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

import engine
from engine.transactions.metadata import TxnState
from tests.engine.conftest import FAST_STORE
from tests.engine.test_transactions import control_batches
from tests.engine.txn_state_faults import RefusedMarkers, io_error, no_room
from tests.faults.transactional_clients import kafka_python_commits
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_transactions_confluent import read_values

TIMEOUT = 30.0
VALUES = [b"one", b"two"]
"""One transaction each, both partitions written in each."""


def _librdkafka(bootstrap: str) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": "tx", **quiet_librdkafka()}
    )
    producer.init_transactions(TIMEOUT)
    for value in VALUES:
        producer.begin_transaction()
        for partition in (0, 1):
            producer.produce("out", value, partition=partition)
        producer.commit_transaction(TIMEOUT)  # raises on any error: committed once
    assert producer.flush(TIMEOUT) == 0


def _kafka_python(bootstrap: str) -> None:
    kafka_python_commits(bootstrap, "out", VALUES, (0, 1), TIMEOUT)


@pytest.mark.parametrize(
    "client", [_librdkafka, _kafka_python], ids=["confluent-kafka", "kafka-python"]
)
@pytest.mark.parametrize("make", [no_room, io_error], ids=["no room", "io error"])
def test_a_client_commits_once_through_a_refused_marker(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: Callable[[str], None],
    make: Callable[[int], BaseException],
) -> None:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    e = engine.open(tmp_path / "node", f"file://{tmp_path / 'objects'}", config)
    server = InProcessServer(e)
    try:
        e.create_topic("out", 2)
        refused = RefusedMarkers(monkeypatch, e, ("out", 1), 3, make)
        client(server.bootstrap)
        deadline = time.monotonic() + TIMEOUT
        while e.transactions.describe("tx").state is not TxnState.COMPLETE_COMMIT:
            assert time.monotonic() < deadline, "the last transaction never completed"
            time.sleep(0.01)
        assert refused.refused == 3
        for partition in (0, 1):
            markers = control_batches(e, "out", partition)
            assert [marker.commit for _, _, _, marker in markers] == [True, True], partition
        assert read_values(server.bootstrap, "out", "read_committed", partitions=2) == {
            0: VALUES,
            1: VALUES,
        }
    finally:
        server.stop()
        e.close()
