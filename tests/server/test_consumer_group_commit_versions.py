"""OffsetCommit versions against a KIP-848 consumer group, over a real
socket: a member of the consumer protocol commits with v9 (its member
epoch), and a commit of v8 or older from it is UNSUPPORTED_VERSION on every
partition, as Kafka's ConsumerGroup.validateOffsetCommit answers. No Kafka
client sends that (a KIP-848 consumer negotiates v9), so the requests are
built by hand."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.configured_servers import server_fixtures
from tests.server.confluent_helpers import create_topic
from tests.server.wire import Wire, build

server, _ = server_fixtures("[engine]\ngroup_initial_rebalance_delay_ms = 0\n", "commit-versions")


def _ask(bootstrap: str, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(bootstrap) as wire:
        return wire.request(build(load_request_schema(key, version), **values))


def _commit(
    bootstrap: str, version: int, group: str, member_id: str, epoch: int, topic: str
) -> Any:
    answer = _ask(
        bootstrap,
        ApiKey.OFFSET_COMMIT,
        version,
        group_id=group,
        generation_id_or_member_epoch=epoch,
        member_id=member_id,
        topics=[
            {
                "name": topic,
                "partitions": [{"partition_index": p, "committed_offset": 5 + p} for p in range(2)],
            }
        ],
    )
    return [KafkaCode(p.error_code) for t in answer.topics for p in t.partitions]


def _fetch(bootstrap: str, group: str, topic: str) -> list[int]:
    answer = _ask(
        bootstrap,
        ApiKey.OFFSET_FETCH,
        8,
        groups=[{"group_id": group, "topics": [{"name": topic, "partition_indexes": [0, 1]}]}],
    )
    return [p.committed_offset for t in answer.groups[0].topics for p in t.partitions]


def test_a_consumer_protocol_member_commits_with_v9_only(server: Any, topic: str) -> None:
    bootstrap = server.bootstrap
    create_topic(bootstrap, topic, 2)
    group = f"g-{topic}"
    member_id = uuid.uuid4().hex
    joined = _ask(
        bootstrap,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        0,
        group_id=group,
        member_id=member_id,
        member_epoch=0,
        rebalance_timeout=timedelta(seconds=30),
        subscribed_topic_names=[topic],
        topic_partitions=[],
    )
    assert joined.error_code == KafkaCode.NONE, joined.error_message
    epoch = joined.member_epoch
    refused = [KafkaCode.UNSUPPORTED_VERSION] * 2
    for version in (2, 7, 8):
        assert _commit(bootstrap, version, group, member_id, epoch, topic) == refused, version
    # Without a member epoch either: the member is found, then its version refused.
    assert _commit(bootstrap, 8, group, member_id, -1, topic) == refused
    assert _fetch(bootstrap, group, topic) == [-1, -1]
    # A commit from outside a group with members: UNKNOWN_MEMBER_ID at any version.
    assert _commit(bootstrap, 8, group, "", -1, topic) == [KafkaCode.UNKNOWN_MEMBER_ID] * 2
    assert _commit(bootstrap, 9, group, member_id, epoch, topic) == [KafkaCode.NONE] * 2
    assert _fetch(bootstrap, group, topic) == [5, 6]
