"""KIP-430 authorized operations through confluent-kafka's AdminClient
(describe_cluster, describe_topics, describe_consumer_groups) and raw
Metadata v8 frames (librdkafka asks DescribeCluster for the cluster's):
when asked, Kafka's operations of each resource type, as the server's
authorizer allows them; when not, Kafka's sentinel. A denying authorizer
put in the server's place shows every handler asks it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AclOperation
from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.server import authorizer
from engine.server.authorizer import AUTHORIZED_OPERATIONS_OMITTED, ResourceType
from tests.server.in_process import ServedNode
from tests.server.wire import Wire, build

TIMEOUT = 30
A = AclOperation
CLUSTER = {
    A.CREATE,
    A.CLUSTER_ACTION,
    A.DESCRIBE_CONFIGS,
    A.ALTER_CONFIGS,
    A.IDEMPOTENT_WRITE,
    A.ALTER,
    A.DESCRIBE,
}
TOPIC = {A.READ, A.WRITE, A.CREATE, A.DESCRIBE, A.DELETE, A.ALTER, A.DESCRIBE_CONFIGS}
TOPIC |= {A.ALTER_CONFIGS}
GROUP = {A.READ, A.DESCRIBE, A.DELETE, A.DESCRIBE_CONFIGS, A.ALTER_CONFIGS}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ServedNode]:
    opened = ServedNode(tmp_path)
    opened.engine.create_topic("t", 1)
    yield opened
    opened.close()


class DenyWrites:
    """Refuses WRITE and ALTER on topic "t", and DELETE on group "g"."""

    def authorize(
        self,
        principal: str,
        operation: authorizer.AclOperation,
        resource_type: ResourceType,
        name: str,
        host: str = "*",
    ) -> bool:
        assert principal == authorizer.ANONYMOUS
        if resource_type is ResourceType.TOPIC and name == "t":
            return operation not in (authorizer.AclOperation.WRITE, authorizer.AclOperation.ALTER)
        if resource_type is ResourceType.GROUP and name == "g":
            return operation is not authorizer.AclOperation.DELETE
        return True


def operations(node: ServedNode, *, asked: bool = True) -> dict[str, set[AclOperation] | None]:
    admin = node.admin
    cluster = admin.describe_cluster(include_authorized_operations=asked).result(TIMEOUT)
    [topic] = admin.describe_topics(
        TopicCollection(["t"]), include_authorized_operations=asked
    ).values()
    [group] = admin.describe_consumer_groups(["g"], include_authorized_operations=asked).values()
    found: dict[str, set[AclOperation] | None] = {}
    for name, result in (
        ("cluster", cluster),
        ("topic", topic.result(TIMEOUT)),
        ("group", group.result(TIMEOUT)),
    ):
        listed = result.authorized_operations
        found[name] = None if listed is None else set(listed)
    return found


def test_every_operation_of_each_resource_type_is_allowed_without_acls(node: ServedNode) -> None:
    assert operations(node) == {"cluster": CLUSTER, "topic": TOPIC, "group": GROUP}


def test_operations_not_asked_for_are_not_sent(node: ServedNode) -> None:
    assert operations(node, asked=False) == {"cluster": None, "topic": None, "group": None}


def test_the_handlers_ask_the_servers_authorizer(node: ServedNode) -> None:
    node.server.server.state.authorizer = DenyWrites()
    assert operations(node) == {
        "cluster": CLUSTER,
        "topic": TOPIC - {A.WRITE, A.ALTER},
        "group": GROUP - {A.DELETE},
    }


@pytest.mark.parametrize("asked", [True, False])
def test_metadata_v8_carries_the_clusters_and_each_topics_operations(
    node: ServedNode, asked: bool
) -> None:
    request = build(
        load_request_schema(ApiKey.METADATA, 8),
        topics=[{"name": "t"}],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=asked,
        include_topic_authorized_operations=asked,
    )
    with Wire(node.server.bootstrap) as wire:
        response = wire.request(request)
    [topic] = response.topics
    if asked:
        assert response.cluster_authorized_operations == sum(1 << op.value for op in CLUSTER)
        assert topic.topic_authorized_operations == sum(1 << op.value for op in TOPIC)
    else:
        assert response.cluster_authorized_operations == AUTHORIZED_OPERATIONS_OMITTED
        assert topic.topic_authorized_operations == AUTHORIZED_OPERATIONS_OMITTED
