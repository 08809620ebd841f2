"""kafkajs 2.2.4's transactional producer (transactions v1: explicit adds,
EndTxn v1) against a server that finalizes transaction.version 2: its
commits and aborts, and the offsets it commits in a transaction, read as
before (docs/design/0076), and nothing bumps its epoch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine.types import TopicPartition
from tests.engine.test_transactions import values
from tests.server.in_process import InProcessServer
from tests.server.test_kafkajs import Message, kafkajs


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            yield opened, server
        finally:
            server.stop()


def test_kafkajs_commits_and_aborts_transactions_as_before(
    node: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = node
    steps = [
        {"messages": [Message(0, b"k", b"one").to_driver()], "commit": True},
        {"messages": [Message(0, b"k", b"dropped").to_driver()], "commit": False},
        {
            "messages": [Message(0, b"k", b"two").to_driver()],
            "offsets": [{"partition": 0, "offset": "2"}],
            "commit": True,
        },
    ]
    kafkajs(
        "transactions",
        server.bootstrap,
        topic="in",
        transactionalId="kafkajs-app",
        groupId="readers",
        steps=steps,
    )
    assert values(opened, "in", "read_committed") == [b"one", b"two"]
    described = opened.transactions.describe("kafkajs-app")
    assert described.transaction_version == 0  # it spoke transactions v1
    epochs = {p.producer_epoch for p in opened.partition("in", 0).describe_producers()}
    assert epochs == {described.producer_epoch}  # its markers kept its epoch
    committed = opened.groups.fetch_offsets("readers", [TopicPartition("in", 0)])
    offset, code = committed[TopicPartition("in", 0)]
    assert code == 0 and offset is not None and offset.offset == 2
