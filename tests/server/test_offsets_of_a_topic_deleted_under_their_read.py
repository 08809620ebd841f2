"""ListOffsets and OffsetForLeaderEpoch of a topic deleted between the
handler's lookup of the partition and its read of the partition's log:
answered UNKNOWN_TOPIC_OR_PARTITION, as Kafka's ReplicaManager answers a
partition it no longer hosts, and the connection keeps serving (the
stream's own error, StreamNotFound, is no storage failure)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine.offset_lookup import MAX_TIMESTAMP
from engine.protocol.apis import ApiKey, load_request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers import offsets
from tests.server.fetching import answer, changed_after, send_records
from tests.server.wire import build

RECORDS = 4


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[engine.Engine]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as served:
        served.create_topic("t", 1)
        send_records(served, "t", {0: RECORDS})
        yield served


def _deleted_after_the_lookup(opened: engine.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    changed_after(monkeypatch, offsets, "leader_or_error", lambda: opened.delete_topic("t"))


def test_an_offset_for_leader_epoch_of_a_topic_deleted_after_the_lookup(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deleted_after_the_lookup(opened, monkeypatch)
    request = build(
        load_request_schema(ApiKey.OFFSET_FOR_LEADER_EPOCH, 4),
        replica_id=-2,
        topics=[
            {
                "topic": "t",
                "partitions": [{"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}],
            }
        ],
    )
    ((entry,),) = [topic.partitions for topic in answer(opened, request).topics]
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert (entry.leader_epoch, entry.end_offset) == (-1, -1)


def test_a_list_offsets_of_a_topic_deleted_after_the_offset_was_found(
    opened: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader epoch answered beside an offset found is read after it."""
    changed_after(monkeypatch, opened, "list_offset", lambda: opened.delete_topic("t"))
    request = build(
        load_request_schema(ApiKey.LIST_OFFSETS, 7),
        replica_id=-1,
        isolation_level=0,
        topics=[
            {
                "name": "t",
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": -1, "timestamp": MAX_TIMESTAMP}
                ],
            }
        ],
    )
    ((entry,),) = [topic.partitions for topic in answer(opened, request).topics]
    assert entry.error_code == KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
    assert (entry.offset, entry.leader_epoch) == (-1, -1)
