"""The target assignment of a KIP-848 group: which server-side assignor
the group uses, and every member's partitions as that assignor computes
them for the group epoch (Kafka's TargetAssignmentBuilder)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from engine.groups.assignors import ASSIGNORS, MemberSpec
from engine.groups.config import GroupConfig
from engine.groups.consumer_member import ConsumerMember, Partitions
from engine.groups.topic_subscriptions import RegexResolutions, TopicInfo, member_topic_ids


def default_assignor(config: GroupConfig) -> str:
    return config.group_consumer_assignors[0]


def assignor_name(members: Mapping[str, ConsumerMember], config: GroupConfig) -> str:
    """The assignor most members ask for (the configured default if none
    does; a tie goes to the one configured first)."""
    configured = config.group_consumer_assignors
    votes = Counter(m.server_assignor for m in members.values() if m.server_assignor in configured)
    if not votes:
        return default_assignor(config)
    return max(votes, key=lambda name: (votes[name], -configured.index(name)))


def compute_target(
    assignor: str,
    members: Mapping[str, ConsumerMember],
    current: Mapping[str, Partitions],
    topics: Mapping[str, TopicInfo],
    resolutions: RegexResolutions,
) -> dict[str, Partitions]:
    """Every member's target assignment over the subscribed ``topics``; the
    ``current`` targets let a sticky assignor move as little as it can."""
    specs = {
        member_id: MemberSpec(
            member.instance_id,
            member.rack_id,
            member_topic_ids(member, topics, resolutions),
            current.get(member_id, {}),
        )
        for member_id, member in members.items()
    }
    partitions = {info.topic_id: info.partitions for info in topics.values()}
    return ASSIGNORS[assignor].assign(specs, partitions)
