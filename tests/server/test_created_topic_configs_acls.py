"""CreateTopics v5+ answers a created topic's configs (every effective one,
the broker's defaults included) only to a principal that may
DESCRIBE_CONFIGS the topic, as Kafka's controller does
(ReplicationControlManager's authorizedToReturnConfigs): one that may only
CREATE it gets the topic with no configs and TOPIC_AUTHORIZATION_FAILED as
its topic_config_error_code (and, as there, num_partitions and
replication_factor left at -1), so CREATE is not a way round DescribeConfigs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AclOperation, ResourceType
from kio.index import load_request_schema as request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.test_acls import TIMEOUT, Cluster, _allow, _create, open_cluster
from tests.server.wire import Wire, build

CREATOR = "User:carol"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with open_cluster(tmp_path / "node") as running:
        yield running


def _created(cluster: Cluster, name: str) -> Any:
    request = build(
        request_schema(ApiKey.CREATE_TOPICS, 7),
        topics=[{"name": name, "num_partitions": 3, "replication_factor": 1}],
        timeout_ms=TIMEOUT * 1000,
    )
    with Wire(cluster.bootstrap(CREATOR), timeout=TIMEOUT) as wire:
        (topic,) = wire.request(request).topics
    assert topic.error_code == KafkaCode.NONE
    return topic


def test_a_creator_without_describe_configs_is_not_told_the_configs(cluster: Cluster) -> None:
    _create(cluster.admin(), _allow(ResourceType.TOPIC, "plans", CREATOR, AclOperation.CREATE))
    topic = _created(cluster, "plans")
    assert cluster.engine.has_topic("plans")
    assert not topic.configs
    assert topic.topic_config_error_code == KafkaCode.TOPIC_AUTHORIZATION_FAILED
    # Kafka's controller sets them only with the configs: their defaults, -1.
    assert (topic.num_partitions, topic.replication_factor) == (-1, -1)


def test_a_creator_with_describe_configs_is_told_them(cluster: Cluster) -> None:
    _create(
        cluster.admin(),
        _allow(ResourceType.TOPIC, "plans", CREATOR, AclOperation.CREATE),
        _allow(ResourceType.TOPIC, "plans", CREATOR, AclOperation.DESCRIBE_CONFIGS),
    )
    topic = _created(cluster, "plans")
    assert {c.name for c in topic.configs} >= {"cleanup.policy", "retention.ms"}
    assert topic.topic_config_error_code == KafkaCode.NONE
    assert (topic.num_partitions, topic.replication_factor) == (3, 1)
