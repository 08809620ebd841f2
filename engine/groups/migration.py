"""Online migration of a classic group with members to a KIP-848
consumer group (Kafka 4.0's GroupMetadataManager.convertToConsumerGroup
and ConsumerGroup.fromClassicGroup): a consumer-protocol member joining
such a group takes it over, and its classic members stay, served by
classic_members.py.

The consumer group starts where the classic group is: its group epoch,
target assignment epoch and every member's epoch are the classic
generation, every member is Stable with the partitions of its last
assignment (also its target), its subscription is the one of its protocol
metadata. The joining member's heartbeat then bumps the epoch, which
sends the classic members to join again. The classic group's record is
deleted in the same state-log write that stores the consumer group and
its members (ConsumerGroup.deletes_to_flush), so a restart finds either
the classic group or the consumer group, never both or neither.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.groups.classic import ClassicGroup
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_heartbeat import Refused
from engine.groups.consumer_member import ClassicProtocol, ConsumerMember, Partitions, freeze
from engine.groups.records import classic_group_key
from engine.groups.topic_subscriptions import TopicInfo
from engine.protocol.consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    ConsumerProtocolError,
    decode_assignment,
    decode_subscription,
)
from engine.protocol.kafka_code import KafkaCode


def check_online_upgrade(classic: ClassicGroup, config: GroupConfig) -> None:
    """Kafka's validateOnlineUpgrade; raises Refused with what Kafka
    answers a heartbeat that may not take the group over."""
    why = None
    if not config.online_upgrade_enabled:
        why = "the online upgrade is disabled"
    elif classic.protocol_type != CONSUMER_PROTOCOL_TYPE or classic.protocol_name is None:
        why = "the group does not use the consumer embedded protocol"
    elif len(classic.members) > config.group_consumer_max_size:
        why = "the group size exceeds the consumer group maximum size"
    if why is not None:
        raise Refused(
            KafkaCode.GROUP_ID_NOT_FOUND,
            f"Cannot upgrade classic group {classic.group_id} to consumer group because {why}.",
        )


def take_over(classic: ClassicGroup, group: ConsumerGroup, topics: Mapping[str, TopicInfo]) -> None:
    """Fills the new, empty ``group`` with ``classic``'s members; raises
    Refused (and changes nothing) if a member's metadata does not parse."""
    generation = classic.generation_id
    members: list[ConsumerMember] = []
    held: set[tuple[bytes, int]] = set()
    for classic_member in classic.members.values():
        try:
            subscription = decode_subscription(classic_member.metadata(classic.protocol_name))
            assignment = decode_assignment(classic_member.assignment)
        except ConsumerProtocolError:
            raise Refused(
                KafkaCode.GROUP_ID_NOT_FOUND,
                f"Cannot upgrade the classic group {classic.group_id} to consumer group "
                "because the embedded consumer protocol is malformed.",
            ) from None
        assigned: dict[bytes, set[int]] = {}
        for tp in assignment.partitions:
            info = topics.get(tp.topic)
            if info is None or (info.topic_id, tp.partition) in held:
                continue  # gone, or (never in a sound group) given twice
            held.add((info.topic_id, tp.partition))
            assigned.setdefault(info.topic_id, set()).add(tp.partition)
        member = ConsumerMember(classic_member.member_id)
        member.instance_id = classic_member.group_instance_id
        member.rack_id = subscription.rack_id
        member.client_id = classic_member.client_id
        member.client_host = classic_member.client_host
        member.rebalance_timeout_ms = classic_member.rebalance_timeout_ms
        member.subscribed_topic_names = tuple(sorted(set(subscription.topics)))
        member.epoch = member.previous_epoch = generation
        member.assigned = freeze(assigned)
        member.classic = ClassicProtocol(
            classic_member.session_timeout_ms, list(classic_member.protocols)
        )
        members.append(member)
    group.epoch = group.assignment_epoch = generation
    for member in members:
        group.add_member(member)
        target: Partitions = dict(member.assigned)
        group.target[member.member_id] = target
        group.watch_session(member)
    group.group_changed()
    group.deletes_to_flush.append(classic_group_key(classic.group_id))
