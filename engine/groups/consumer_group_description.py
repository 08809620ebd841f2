"""How a KIP-848 group is described: by ConsumerGroupDescribe, and by
DescribeGroups, which shows it as a classic group would look (protocol
type "consumer", each member's subscription and assignment in the
classic consumer protocol's encodings)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from engine.groups.assignors import TopicId
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_heartbeat import CONSUMER
from engine.groups.consumer_member import ConsumerMember, Partitions
from engine.groups.results import GroupDescription, GroupListing, MemberDescription
from engine.groups.topic_subscriptions import RegexResolutions, TopicInfo
from engine.protocol.consumer_protocol import Assignment as ProtocolAssignment
from engine.protocol.consumer_protocol import Subscription, encode_assignment, encode_subscription
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition


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
        )
        for m in members
    ]


def describe_members_classic(
    members: Iterable[ConsumerMember],
    resolutions: RegexResolutions,
    existing: Mapping[str, TopicInfo],
) -> list[MemberDescription]:
    """Each member with its subscription (names, and the existing topics
    its regex resolved to) and assignment encoded as a classic consumer's."""
    names = {info.topic_id: name for name, info in existing.items()}
    described = []
    for m in members:
        by_regex = {n for n in resolutions.topic_names(m) if n in existing}
        topics = sorted(set(m.subscribed_topic_names) | by_regex)
        assigned = [
            TopicPartition(names[t], p)
            for t, ps in sorted(m.assigned.items())
            if t in names
            for p in sorted(ps)
        ]
        described.append(
            MemberDescription(
                m.member_id,
                m.instance_id,
                m.client_id,
                m.client_host,
                encode_subscription(Subscription(topics), 0),
                encode_assignment(ProtocolAssignment(assigned), 0),
            )
        )
    return described


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


def describe_classic(group: ConsumerGroup) -> GroupDescription:
    """The group as DescribeGroups shows it (protocol type "consumer")."""
    members = describe_members_classic(group.members.values(), group.regexes, group.host.topics())
    return GroupDescription(
        group.group_id, KafkaCode.NONE, group.state.value, CONSUMER, group.assignor_name(), members
    )


def listing(group: ConsumerGroup) -> GroupListing:
    return GroupListing(group.group_id, CONSUMER, group.state.value, CONSUMER)
