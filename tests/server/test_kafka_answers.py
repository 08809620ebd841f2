"""Answers that follow Apache Kafka 4.x to the error code, over the wire:
an OffsetCommit naming a generation of a group that does not exist, and
ListTransactions v2's transactional-id pattern. Raw requests against
``tidelog serve``."""

from __future__ import annotations

import pytest

from engine.protocol.apis import request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import ServerProcess
from tests.server.wire import Wire, build

OFFSET_COMMIT = 8
CREATE_TOPICS = 19


def create_topic(server: ServerProcess, name: str) -> None:
    request = build(
        request_schema(CREATE_TOPICS, 5),
        topics=[{"name": name, "num_partitions": 1, "replication_factor": 1}],
        timeout_ms=10000,
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        [created] = wire.request(request).topics
    assert created.error_code in (KafkaCode.NONE, KafkaCode.TOPIC_ALREADY_EXISTS)


def commit_codes(server: ServerProcess, version: int, group: str, generation: int) -> set[int]:
    """The error codes of an OffsetCommit of partition 0 of topic ``t`` by
    ``group`` at ``generation``."""
    request = build(
        request_schema(OFFSET_COMMIT, version),
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id="member-1" if generation >= 0 else "",
        retention_time_ms=-1,
        topics=[{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 5}]}],
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        body = wire.request(request)
    return {int(p.error_code) for t in body.topics for p in t.partitions}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (9, KafkaCode.GROUP_ID_NOT_FOUND),
        (8, KafkaCode.ILLEGAL_GENERATION),
        (2, KafkaCode.ILLEGAL_GENERATION),
    ],
)
def test_a_generation_of_a_group_that_does_not_exist(
    kafka_server: ServerProcess, version: int, expected: KafkaCode
) -> None:
    """Kafka's OffsetMetadataManager: from v9 (the KIP-848 protocol's
    version) the group is named as missing; older clients are told their
    generation is illegal, which they already handle."""
    create_topic(kafka_server, "t")
    assert commit_codes(kafka_server, version, f"missing-v{version}", 3) == {expected}
