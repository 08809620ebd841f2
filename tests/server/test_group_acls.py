"""ACLs on consumer groups and their offsets over the wire, with the ACL
authorizer on, answered as Kafka's KafkaApis answers: ListGroups lists and
DescribeGroups describes only the groups the principal may DESCRIBE;
a KIP-848 ConsumerGroupHeartbeat needs READ on the group and DESCRIBE on
every topic it subscribes to; ConsumerGroupDescribe needs DESCRIBE on the
group and hides a group whose members name a topic the principal may not
describe; OffsetCommit needs READ on each topic, OffsetFetch DESCRIBE
(all-topics fetches list only those), OffsetDelete DELETE on the group and
READ on each topic."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from kio.index import load_request_schema as request_schema

from engine.authorization import AUTHORIZED_OPERATIONS_OMITTED
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.test_acls import ADMIN, TIMEOUT, Cluster, _allow, _create, cluster_of_topics
from tests.server.wire import Wire, build

USER = "User:gus"


@pytest.fixture
def groups(tmp_path: Path) -> Iterator[Cluster]:
    """Topics ``orders`` and ``secret``; USER may describe ``orders`` only."""
    read_orders = _allow(ResourceType.TOPIC, "orders", USER, AclOperation.READ)
    with cluster_of_topics(tmp_path / "node", {"orders": 1, "secret": 1}, read_orders) as running:
        yield running


def _ask(cluster: Cluster, principal: str, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(cluster.bootstrap(principal), timeout=TIMEOUT) as wire:
        return wire.request(build(request_schema(key, version), **values))


def _commit(cluster: Cluster, principal: str, group: str, *topics: str) -> dict[str, int]:
    """Commits offset 1 of partition 0 of ``topics`` (no generation: a
    group of no members); each topic's error code."""
    answer = _ask(
        cluster, principal, ApiKey.OFFSET_COMMIT, 8,
        group_id=group, generation_id_or_member_epoch=-1, member_id="",
        topics=[
            {"name": t, "partitions": [{"partition_index": 0, "committed_offset": 1}]}
            for t in topics
        ],
    )  # fmt: skip
    return {t.name: t.partitions[0].error_code for t in answer.topics}


def _heartbeat(cluster: Cluster, principal: str, group: str, *topics: str) -> Any:
    return _ask(
        cluster, principal, ApiKey.CONSUMER_GROUP_HEARTBEAT, 1,
        group_id=group, member_id=str(uuid.uuid4()), member_epoch=0,
        rebalance_timeout=datetime.timedelta(seconds=30),
        subscribed_topic_names=list(topics), topic_partitions=[],
    )  # fmt: skip


def test_list_and_describe_groups_show_only_groups_the_principal_may_describe(
    groups: Cluster,
) -> None:
    for group in ("seen-1", "hidden-1"):
        assert _commit(groups, ADMIN, group, "orders") == {"orders": KafkaCode.NONE}
    prefixed = ResourcePatternType.PREFIXED
    _create(
        groups.admin(), _allow(ResourceType.GROUP, "seen-", USER, AclOperation.DESCRIBE, prefixed)
    )
    listed = _ask(groups, USER, ApiKey.LIST_GROUPS, 4, states_filter=[])
    assert listed.error_code == KafkaCode.NONE
    assert [g.group_id for g in listed.groups] == ["seen-1"]
    everyone = _ask(groups, ADMIN, ApiKey.LIST_GROUPS, 4, states_filter=[])
    assert {g.group_id for g in everyone.groups} == {"seen-1", "hidden-1"}
    described = _ask(
        groups, USER, ApiKey.DESCRIBE_GROUPS, 5,
        groups=["seen-1", "hidden-1"], include_authorized_operations=True,
    )  # fmt: skip
    assert {g.group_id: g.error_code for g in described.groups} == {
        "seen-1": KafkaCode.NONE,
        "hidden-1": KafkaCode.GROUP_AUTHORIZATION_FAILED,
    }
    # As KafkaApis: a refused group's operations are not filled in.
    operations = {g.group_id: g.authorized_operations for g in described.groups}
    assert operations == {
        "seen-1": 1 << AclOperation.DESCRIBE.value,
        "hidden-1": AUTHORIZED_OPERATIONS_OMITTED,
    }


def test_a_consumer_group_heartbeat_needs_read_on_the_group_and_describe_on_its_topics(
    groups: Cluster,
) -> None:
    _create(groups.admin(), _allow(ResourceType.GROUP, "app", USER, AclOperation.READ))
    refused = _heartbeat(groups, USER, "other-app", "orders")
    assert refused.error_code == KafkaCode.GROUP_AUTHORIZATION_FAILED
    # as Kafka: a subscription naming a topic the member may not describe
    # is refused as a whole, and the group is not joined
    unseen = _heartbeat(groups, USER, "app", "orders", "secret")
    assert unseen.error_code == KafkaCode.TOPIC_AUTHORIZATION_FAILED
    assert unseen.member_epoch == -1
    joined = _heartbeat(groups, USER, "app", "orders")
    assert joined.error_code == KafkaCode.NONE
    assert joined.member_epoch >= 1
    described = _ask(groups, ADMIN, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=["app"])
    assert [len(g.members) for g in described.groups] == [1]  # the refused member never joined


def test_a_regex_subscription_resolves_only_to_topics_the_member_may_describe(
    groups: Cluster,
) -> None:
    """As Kafka's refreshRegularExpressions: a regex matching ``orders``
    and ``secret`` is resolved for the principal who subscribed, so the
    member is assigned ``orders`` and never learns of ``secret``."""
    _create(groups.admin(), _allow(ResourceType.GROUP, "by-regex", USER, AclOperation.READ))
    described = (groups.engine.describe_topic(n) for n in ("orders", "secret"))
    ids = {uuid.UUID(bytes=d.topic_id): d.name for d in described}
    member = str(uuid.uuid4())
    assigned: set[str] = set()
    with Wire(groups.bootstrap(USER), timeout=TIMEOUT) as wire:
        schema = request_schema(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1)
        epoch = 0
        deadline = time.monotonic() + TIMEOUT
        while not assigned and time.monotonic() < deadline:
            answer = wire.request(
                build(
                    schema, group_id="by-regex", member_id=member, member_epoch=epoch,
                    rebalance_timeout=datetime.timedelta(seconds=30),
                    subscribed_topic_regex="orders|secret", topic_partitions=[],
                )
            )  # fmt: skip
            assert answer.error_code == KafkaCode.NONE, answer.error_message
            epoch = answer.member_epoch
            if answer.assignment is not None:
                assigned = {ids[t.topic_id] for t in answer.assignment.topic_partitions}
            time.sleep(0.05)
    assert assigned == {"orders"}


def test_consumer_group_describe_needs_describe_on_the_group_and_on_its_members_topics(
    groups: Cluster,
) -> None:
    for group, topic in (("readers", "orders"), ("snoops", "secret"), ("private", "orders")):
        assert _heartbeat(groups, ADMIN, group, topic).error_code == KafkaCode.NONE
    for group in ("readers", "snoops"):
        _create(groups.admin(), _allow(ResourceType.GROUP, group, USER, AclOperation.DESCRIBE))
    described = _ask(
        groups, USER, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=["readers", "snoops", "private"]
    )
    by_id = {g.group_id: g for g in described.groups}
    assert by_id["readers"].error_code == KafkaCode.NONE
    assert len(by_id["readers"].members) == 1
    assert by_id["snoops"].error_code == KafkaCode.TOPIC_AUTHORIZATION_FAILED
    assert by_id["snoops"].members == ()
    assert by_id["private"].error_code == KafkaCode.GROUP_AUTHORIZATION_FAILED


def test_offsets_are_committed_fetched_and_deleted_per_authorized_topic(groups: Cluster) -> None:
    assert _commit(groups, ADMIN, "g", "orders", "secret") == {
        "orders": KafkaCode.NONE,
        "secret": KafkaCode.NONE,
    }
    _create(groups.admin(), _allow(ResourceType.GROUP, "g", USER, AclOperation.READ))
    assert _commit(groups, USER, "g", "orders", "secret") == {
        "orders": KafkaCode.NONE,
        "secret": KafkaCode.TOPIC_AUTHORIZATION_FAILED,
    }
    named = _ask(
        groups, USER, ApiKey.OFFSET_FETCH, 8,
        groups=[{"group_id": "g", "topics": [
            {"name": t, "partition_indexes": [0]} for t in ("orders", "secret")
        ]}],
    )  # fmt: skip
    fetched = {t.name: t.partitions[0] for t in named.groups[0].topics}
    assert fetched["orders"].error_code == KafkaCode.NONE
    assert fetched["orders"].committed_offset == 1
    assert fetched["secret"].error_code == KafkaCode.TOPIC_AUTHORIZATION_FAILED
    assert fetched["secret"].committed_offset == -1
    every = _ask(groups, USER, ApiKey.OFFSET_FETCH, 8, groups=[{"group_id": "g", "topics": None}])
    assert [t.name for t in every.groups[0].topics] == ["orders"]  # "secret" is not listed

    def delete() -> Any:
        partitions = [{"partition_index": 0}]
        return _ask(
            groups, USER, ApiKey.OFFSET_DELETE, 0, group_id="g",
            topics=[{"name": t, "partitions": partitions} for t in ("orders", "secret")],
        )  # fmt: skip

    assert delete().error_code == KafkaCode.GROUP_AUTHORIZATION_FAILED  # READ is not DELETE
    _create(groups.admin(), _allow(ResourceType.GROUP, "g", USER, AclOperation.DELETE))
    deleted = delete()
    assert deleted.error_code == KafkaCode.NONE
    assert {t.name: t.partitions[0].error_code for t in deleted.topics} == {
        "orders": KafkaCode.NONE,
        "secret": KafkaCode.TOPIC_AUTHORIZATION_FAILED,
    }
    remaining = _ask(
        groups, ADMIN, ApiKey.OFFSET_FETCH, 8, groups=[{"group_id": "g", "topics": None}]
    )
    assert [t.name for t in remaining.groups[0].topics] == ["secret"]
