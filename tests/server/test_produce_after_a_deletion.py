"""A topic deleted between a Produce's lookups and its append is created
again by the append only for a principal that may create it: one allowed
to WRITE but not CREATE gets TOPIC_AUTHORIZATION_FAILED, the answer the
request's own auto-creation gives, and no topic. Both the one-partition
path and the general one (engine/server/handlers/produce.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AclOperation, ResourceType

import engine
from engine.partition import Partition
from engine.protocol.kafka_code import KafkaCode
from tests.server.test_acls import Cluster, _allow, _create
from tests.server.test_bad_input import batch, produce
from tests.server.wire import Wire

WRITER = "User:writer"
"""WRITE and DESCRIBE on the topics, no CREATE anywhere."""
CREATOR = "User:creator"
"""The same, and CREATE on the topics."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    config = engine.EngineConfig(auto_create_topics=True)
    with engine.open(tmp_path / "node", config=config) as opened:
        running = Cluster(opened)
        try:
            rights = [AclOperation.WRITE, AclOperation.DESCRIBE]
            _create(
                running.admin(),
                *(_allow(ResourceType.TOPIC, "t", WRITER, op) for op in rights),
                *(_allow(ResourceType.TOPIC, "t", CREATOR, op) for op in rights),
                _allow(ResourceType.TOPIC, "t", CREATOR, AclOperation.CREATE),
            )
            yield running
        finally:
            running.stop()


def _deleted_once_looked_up(
    monkeypatch: pytest.MonkeyPatch, opened: engine.Engine, names: set[str]
) -> None:
    """Each of ``names`` deleted right after the handler first finds it
    exists (asking whether it does, or for a partition of it): the race
    with a DeleteTopics no client can time."""
    has_topic, partition = opened.has_topic, opened.partition
    pending = set(names)

    def deleted_if_pending(name: str) -> None:
        if name in pending:
            pending.discard(name)
            opened.delete_topic(name)

    def found_then_deleted(name: str) -> bool:
        found = has_topic(name)
        if found:
            deleted_if_pending(name)
        return found

    def partition_then_deleted(name: str, index: int, **options: Any) -> Partition:
        found = partition(name, index, **options)
        deleted_if_pending(name)
        return found

    monkeypatch.setattr(opened, "has_topic", found_then_deleted)
    monkeypatch.setattr(opened, "partition", partition_then_deleted)


@pytest.mark.parametrize(
    ("principal", "expected"),
    [(WRITER, KafkaCode.TOPIC_AUTHORIZATION_FAILED), (CREATOR, KafkaCode.NONE)],
)
@pytest.mark.parametrize("topics", [("t",), ("t", "t_other")], ids=["one", "general"])
def test_an_append_recreates_a_deleted_topic_only_for_a_principal_that_may_create(
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    principal: str,
    expected: KafkaCode,
    topics: tuple[str, ...],
) -> None:
    opened = cluster.engine
    opened.create_topic("t", 1)
    bootstrap = cluster.bootstrap(principal)
    _deleted_once_looked_up(monkeypatch, opened, {"t"})
    with Wire(bootstrap) as wire:
        # A second topic the principal may not write sends the request
        # down the general path (two partitions).
        answer = wire.request(produce(dict.fromkeys(topics, batch())))
    codes = {t.name: t.partition_responses[0].error_code for t in answer.responses}
    assert codes["t"] == expected
    assert ("t" in opened.list_topics()) == (expected == KafkaCode.NONE)
    if "t_other" in codes:
        assert codes["t_other"] == KafkaCode.TOPIC_AUTHORIZATION_FAILED
        assert "t_other" not in opened.list_topics()
