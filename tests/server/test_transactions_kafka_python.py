"""kafka-python 3.0 against a server that finalizes transaction.version 2:
its admin client reads the feature as a Kafka 4.0 client does, and its
transactional producer (transactions v1: explicit adds, EndTxn v3 at most)
commits and aborts as before, its epoch never bumped (docs/design/0076)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer

import engine
from tests.engine.test_transactions import values
from tests.server.in_process import InProcessServer


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            yield opened, server
        finally:
            server.stop()


def test_kafka_pythons_admin_reads_transaction_version_2_finalized(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=node[1].bootstrap, request_timeout_ms=30_000)
    try:
        features = admin.describe_features()
    finally:
        admin.close()
    assert features["transaction.version"]["supported"] == (0, 2)
    assert features["transaction.version"]["finalized"] == (2, 2)


def test_kafka_pythons_transactional_producer_commits_and_aborts_as_before(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = node
    producer = KafkaProducer(
        bootstrap_servers=server.bootstrap, transactional_id="kp-app", max_block_ms=30_000
    )
    try:
        producer.init_transactions()
        for value, commit in [(b"one", True), (b"dropped", False), (b"two", True)]:
            producer.begin_transaction()
            producer.send("in", value, partition=0).get(timeout=30)
            if commit:
                producer.commit_transaction()
            else:
                producer.abort_transaction()
    finally:
        producer.close(timeout=10)
    assert values(opened, "in", "read_committed") == [b"one", b"two"]
    described = opened.transactions.describe("kp-app")
    assert described.transaction_version == 0  # it spoke transactions v1
    epochs = {p.producer_epoch for p in opened.partition("in", 0).describe_producers()}
    assert epochs == {described.producer_epoch}
