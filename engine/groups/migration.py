"""Online migration between a classic group with members and a KIP-848
consumer group (Kafka 4.0's GroupMetadataManager.convertToConsumerGroup
and convertToClassicGroup, ConsumerGroup.fromClassicGroup and
ClassicGroup.fromConsumerGroup).

Upgrade: a consumer-protocol member joining such a group takes it over,
and its classic members stay, served by classic_members.py.

The consumer group starts where the classic group is: its group epoch,
target assignment epoch and every member's epoch are the classic
generation, every member is Stable with the partitions of its last
assignment and those it says it owns that no one was assigned (also its
target), its subscription is the one of its protocol metadata. The
joining member's heartbeat then bumps the epoch, which sends the classic
members to join again. The classic group's record is
deleted in the same state-log write that stores the consumer group and
its members (ConsumerGroup.deletes_to_flush), so a restart finds either
the classic group or the consumer group, never both or neither.

Downgrade: when the last consumer-protocol member is fenced (it leaves,
its session or rebalance timeout expires) and classic members remain, a
classic group of them takes the group's place: Stable in a generation of
the group epoch, each member's assignment its target assignment in the
consumer protocol's encoding, and then rebalancing, so that the members
join again and their leader assigns. The consumer group's records are
deleted in the write that stores the classic group's
(ConsumerGroup.hand_over).
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.groups.classic import ClassicGroup
from engine.groups.classic_member import Member
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_heartbeat import Refused
from engine.groups.consumer_member import ClassicProtocol, ConsumerMember, Partitions, freeze
from engine.groups.records import classic_group_key
from engine.groups.results import GroupState
from engine.groups.subscription import group_subscription
from engine.groups.topic_subscriptions import TopicInfo
from engine.protocol.consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    Assignment,
    ConsumerProtocolError,
    Subscription,
    assignment_version,
    decode_assignment,
    decode_subscription,
    encode_assignment,
)
from engine.protocol.kafka_code import KafkaCode
from engine.protocol.topic_partition import TopicPartition


def check_online_upgrade(classic: ClassicGroup, config: GroupConfig) -> None:
    """Kafka's validateOnlineUpgrade; raises Refused with what Kafka
    answers a heartbeat that may not take the group over, and
    COORDINATOR_LOAD_IN_PROGRESS while the classic group has not chosen a
    protocol yet (its first rebalance): Kafka 4.0 fails that heartbeat
    with UNKNOWN_SERVER_ERROR, which clients take as fatal; this one they
    retry until the rebalance completes (docs/design/0089)."""
    why = None
    if not config.online_upgrade_enabled:
        why = "the online upgrade is disabled"
    elif classic.protocol_type != CONSUMER_PROTOCOL_TYPE:
        why = "the group does not use the consumer embedded protocol"
    elif len(classic.members) > config.group_consumer_max_size:
        why = "the group size exceeds the consumer group maximum size"
    if why is not None:
        raise Refused(
            KafkaCode.GROUP_ID_NOT_FOUND,
            f"Cannot upgrade classic group {classic.group_id} to consumer group because {why}.",
        )
    if classic.protocol_name is None:
        # The members' subscriptions are read from their metadata for the
        # chosen protocol; until one is chosen there is nothing to convert.
        raise Refused(
            KafkaCode.COORDINATOR_LOAD_IN_PROGRESS,
            f"Cannot upgrade classic group {classic.group_id} to consumer group before its "
            "first rebalance chooses a protocol; retry.",
        )


def take_over(classic: ClassicGroup, group: ConsumerGroup, topics: Mapping[str, TopicInfo]) -> None:
    """Fills the new, empty ``group`` with ``classic``'s members; raises
    Refused (and changes nothing) if a member's metadata does not parse."""
    generation = classic.generation_id
    members: list[ConsumerMember] = []
    parsed: list[tuple[Member, Subscription, Assignment]] = []
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
        parsed.append((classic_member, subscription, assignment))
    # Each member holds its last assignment; then what it says it owns in
    # its JoinGroup and no one was assigned. A group preparing a rebalance
    # from CompletingRebalance has reset every assignment, while its
    # cooperative members still consume what they own: counted as held,
    # those partitions go to another member only once given up.
    held: set[tuple[bytes, int]] = set()
    holds: dict[str, dict[bytes, set[int]]] = {m.member_id: {} for m, _, _ in parsed}
    claims = [(m.member_id, a.partitions) for m, _, a in parsed]
    claims += [(m.member_id, sub.owned_partitions) for m, sub, _ in parsed]
    for member_id, partitions in claims:
        for tp in partitions:
            info = topics.get(tp.topic)
            if info is None or (info.topic_id, tp.partition) in held:
                continue  # gone, or held already
            held.add((info.topic_id, tp.partition))
            holds[member_id].setdefault(info.topic_id, set()).add(tp.partition)
    for classic_member, subscription, _ in parsed:
        assigned = holds[classic_member.member_id]
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


def may_downgrade(
    group: ConsumerGroup, leaving: ConsumerMember | None, config: GroupConfig
) -> bool:
    """Kafka's validateOnlineDowngradeWithFencedMember: ``leaving`` is the
    last member of the consumer protocol, classic members remain, the
    policy allows it and they fit in a classic group. ``leaving`` None:
    validateOnlineDowngradeWithReplacedMemberId, every member is classic
    now that a classic static member replaced a consumer-protocol one."""
    others = [
        m for m in group.members.values() if leaving is None or m.member_id != leaving.member_id
    ]
    return (
        (leaving is None or leaving.classic is None)
        and bool(others)
        and all(m.classic is not None for m in others)
        and config.online_downgrade_enabled
        and len(others) <= config.group_max_size
    )


def targets_are_free(group: ConsumerGroup) -> bool:
    """Whether no member's target assignment holds a partition another
    member still owns: the classic group that gives each member its target
    then gives no partition to two members at once."""
    for member_id, target in group.target.items():
        if member_id not in group.members:
            continue
        for topic_id, partitions in target.items():
            for p in partitions:
                holder = group.owners.get((topic_id, p))
                if holder is not None and holder != member_id:
                    return False
    return True


def fill_classic_group(
    group: ConsumerGroup,
    leaving: ConsumerMember | None,
    classic: ClassicGroup,
    topics: Mapping[str, TopicInfo],
) -> dict[str, bytes]:
    """Makes the new, empty ``classic`` hold ``group``'s members but
    ``leaving``, Stable; returns each member's assignment: its target
    without the partitions another member holds."""
    leaving_id = None if leaving is None else leaving.member_id
    names = {info.topic_id: name for name, info in topics.items()}
    classic.generation_id = group.epoch
    classic.protocol_type = CONSUMER_PROTOCOL_TYPE
    for member in group.members.values():
        if member.member_id == leaving_id or member.classic is None:
            continue
        classic.members[member.member_id] = Member(
            member.member_id,
            member.instance_id,
            member.client_id,
            member.client_host,
            member.rebalance_timeout_ms,
            member.classic.session_timeout_ms,
            list(member.classic.protocols),
        )
        if member.instance_id is not None:
            classic.static_members[member.instance_id] = member.member_id
    classic.protocol_name = classic.select_protocol()
    classic.leader_id = next(iter(classic.members))
    classic.subscribed_topics = group_subscription(
        CONSUMER_PROTOCOL_TYPE,
        (m.metadata(classic.protocol_name) for m in classic.members.values()),
    )
    assignments: dict[str, bytes] = {}
    for member_id, classic_member in classic.members.items():
        # Its target, but for what another member still holds (the fenced
        # one holds nothing now): stored Stable, this is what a SyncGroup
        # after a restart hands out (the rebalance that follows is not stored).
        target = group.target.get(member_id, {})
        partitions = [
            TopicPartition(names[topic_id], p)
            for topic_id, ps in sorted(target.items())
            if topic_id in names
            for p in sorted(ps)
            if group.owners.get((topic_id, p)) in (None, member_id, leaving_id)
        ]
        version = assignment_version(classic_member.metadata(classic.protocol_name))
        classic_member.assignment = encode_assignment(Assignment(partitions), version)
        assignments[member_id] = classic_member.assignment
    classic.state = GroupState.STABLE
    classic.state_timestamp = group.host.now_ms()
    return assignments
