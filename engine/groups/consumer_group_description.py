"""How a KIP-848 group is described: by ConsumerGroupDescribe, and listed
by ListGroups (type and protocol type "consumer", its own state names).
DescribeGroups does not describe it: Kafka answers it GROUP_ID_NOT_FOUND
there, a classic group's API (coordinator.describe_groups)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from engine.groups.assignors import TopicId
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_heartbeat import CONSUMER
from engine.groups.consumer_member import ConsumerMember, Partitions
from engine.groups.results import GroupListing
from engine.protocol.kafka_code import KafkaCode


class ConsumerMemberDescription(NamedTuple):
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: list[str]
    subscribed_topic_regex: str | None
    assignment: Partitions
    target_assignment: Partitions
    classic: bool = False
    """A member of the classic protocol (ConsumerGroupDescribe v1's member type 0)."""


class ConsumerGroupDescription(NamedTuple):
    group_id: str
    error: KafkaCode
    error_message: str | None
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor_name: str
    members: list[ConsumerMemberDescription]
    topic_names: dict[TopicId, str]
    """The names of the topics the assignments name (deleted ones are absent)."""


def describe_members(
    members: Iterable[ConsumerMember], targets: Mapping[str, Partitions]
) -> list[ConsumerMemberDescription]:
    return [
        ConsumerMemberDescription(
            m.member_id,
            m.instance_id,
            m.rack_id,
            m.epoch,
            m.client_id,
            m.client_host,
            list(m.subscribed_topic_names),
            m.subscribed_topic_regex,
            dict(m.assigned),
            dict(targets.get(m.member_id, {})),
            m.classic is not None,
        )
        for m in members
    ]


def describe(group: ConsumerGroup) -> ConsumerGroupDescription:
    """The group as ConsumerGroupDescribe shows it."""
    return ConsumerGroupDescription(
        group.group_id,
        KafkaCode.NONE,
        None,
        group.state.value,
        group.epoch,
        group.assignment_epoch,
        group.assignor_name(),
        describe_members(group.members.values(), group.target),
        {info.topic_id: name for name, info in group.host.topics().items()},
    )


def listing(group: ConsumerGroup) -> GroupListing:
    return GroupListing(group.group_id, CONSUMER, group.state.value, CONSUMER)
