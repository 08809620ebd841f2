"""Members of the classic protocol inside a KIP-848 consumer group: their
JoinGroup, SyncGroup, Heartbeat and LeaveGroup, served through the
group's reconciliation as Kafka 4.0 serves them
(GroupMetadataManager.classicGroupJoinToConsumerGroup,
classicGroupSyncToConsumerGroup, classicGroupHeartbeatToConsumerGroup).

Such a member is a ConsumerMember with ``classic`` set. Its JoinGroup is
its heartbeat: the subscription in its protocol metadata is applied, the
group epoch and target assignment move as for any member, and the member
takes one reconciliation step with the partitions it says it owns. The
answer's generation is its member epoch; no member is the leader, the
assignor runs on the coordinator, and SyncGroup hands back the member's
assigned partitions. Its Heartbeat answers REBALANCE_IN_PROGRESS while it
has something to catch up with (a newer group epoch, partitions to give
up, partitions now free), which makes the client join again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from concurrent.futures import Future

from engine.futures import done, running_future
from engine.groups.assignors import TopicId
from engine.groups.classic_member import JoinRequest
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_heartbeat import Refused, new_member_id
from engine.groups.consumer_member import ClassicProtocol, ConsumerMember, ReconciliationState
from engine.groups.results import JoinResult, SyncResult
from engine.protocol.consumer_protocol import (
    CONSUMER_PROTOCOL_TYPE,
    Assignment,
    ConsumerProtocolError,
    Subscription,
    assignment_version,
    decode_subscription,
    encode_assignment,
)
from engine.protocol.kafka_code import KafkaCode
from engine.protocol.topic_partition import TopicPartition


def supports_protocols(group: ConsumerGroup, protocol_type: str, names: Collection[str]) -> bool:
    """Kafka's ConsumerGroup.supportsClassicProtocols: a consumer-protocol
    JoinGroup, with a protocol every classic member supports."""
    if protocol_type != CONSUMER_PROTOCOL_TYPE or not names:
        return False
    classic = [m.classic for m in group.members.values() if m.classic is not None]
    counts = Counter(name for c in classic for name in {n for n, _ in c.protocols})
    return any(counts[name] == len(classic) for name in names)


def join(group: ConsumerGroup, request: JoinRequest) -> Future[JoinResult]:
    """A classic member's JoinGroup to a consumer group; resolves once
    what it changed is durable."""
    member_id = request.member_id
    unknown = not member_id
    if unknown:
        member_id = new_member_id()
    limit = group.host.config.group_consumer_max_size
    if (
        len(group.members) >= limit
        and member_id not in group.members
        and request.group_instance_id not in group.static_members
    ):
        # Before the protocols and KIP-394's round trip, as Kafka's
        # classicGroupJoinToConsumerGroup (throwIfConsumerGroupIsFull): a
        # full group gives no member id to join again with. A static
        # member's new process takes its predecessor's place and is not
        # counted as a new member, as ConsumerGroupHeartbeat's is
        # (docs/design/0102: Kafka 4.0 counted it, KAFKA-20601 does not).
        return done(JoinResult(KafkaCode.GROUP_MAX_SIZE_REACHED, member_id=request.member_id))
    names = [name for name, _ in request.protocols]
    if not supports_protocols(group, request.protocol_type, names):
        return done(JoinResult(KafkaCode.INCONSISTENT_GROUP_PROTOCOL, member_id=request.member_id))
    if unknown and request.require_known_member_id and request.group_instance_id is None:
        # KIP-394: the member joins again with the id it is given; nothing is kept meanwhile.
        return done(JoinResult(KafkaCode.MEMBER_ID_REQUIRED, member_id=member_id))
    try:
        subscription = decode_subscription(request.protocols[0][1])
    except ConsumerProtocolError:
        return done(JoinResult(KafkaCode.INCONSISTENT_GROUP_PROTOCOL, member_id=request.member_id))
    try:
        member, replaced_consumer = _member(group, member_id, request.group_instance_id, unknown)
    except Refused as refused:
        return done(JoinResult(refused.code, member_id=request.member_id))
    subscription_changed = _apply(member, request, subscription)
    group.member_changed(member.member_id)
    group.advance(member, subscription_changed, _owned(group, subscription))
    # It has its rebalance timeout to send SyncGroup (Kafka's sync timeout).
    _set_deadline(group, member, request.rebalance_timeout_ms)
    if replaced_consumer:
        # It took the place of a consumer-protocol static member: if that
        # was the last one, a classic group takes the group over (with no
        # rebalance: the member keeps what its predecessor had).
        group.host.take_over_as_classic(group, None)
    result = JoinResult(
        KafkaCode.NONE,
        generation_id=member.epoch,
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocol_name=request.protocols[0][0],
        leader="",
        member_id=member.member_id,
    )
    return _when_durable(group, result)


def sync(
    group: ConsumerGroup,
    generation_id: int,
    member_id: str,
    instance_id: str | None,
    protocol_type: str | None,
    protocol_name: str | None,
) -> Future[SyncResult]:
    """A classic member's SyncGroup: its assigned partitions, in the
    consumer protocol's encoding of the version it subscribed with."""
    try:
        member = _classic_member(group, member_id, instance_id)
    except Refused as refused:
        return done(SyncResult(refused.code))
    assert member.classic is not None
    if generation_id != member.epoch:
        return done(SyncResult(KafkaCode.ILLEGAL_GENERATION))
    first_name, first_metadata = member.classic.protocols[0]
    if (protocol_type is not None and protocol_type != CONSUMER_PROTOCOL_TYPE) or (
        protocol_name is not None and protocol_name != first_name
    ):
        return done(SyncResult(KafkaCode.INCONSISTENT_GROUP_PROTOCOL))
    if _behind(group, member) and member.state != ReconciliationState.UNREVOKED_PARTITIONS:
        _set_deadline(group, member, member.rebalance_timeout_ms, if_absent=True)
        return done(SyncResult(KafkaCode.REBALANCE_IN_PROGRESS))
    if member.classic_timer is not None:
        member.classic_timer.cancel()
        member.classic_timer = None
    group.watch_session(member)
    by_id = {info.topic_id: name for name, info in group.host.topics().items()}
    partitions = [
        TopicPartition(by_id[topic_id], p)
        for topic_id, ps in sorted(member.assigned.items())
        if topic_id in by_id
        for p in sorted(ps)
    ]
    assignment = encode_assignment(Assignment(partitions), assignment_version(first_metadata))
    return done(SyncResult(KafkaCode.NONE, CONSUMER_PROTOCOL_TYPE, first_name, assignment))


def heartbeat(
    group: ConsumerGroup, generation_id: int, member_id: str, instance_id: str | None
) -> KafkaCode:
    """A classic member's Heartbeat: REBALANCE_IN_PROGRESS while it has to
    join again to catch up with the group (Kafka's three reasons)."""
    try:
        member = _classic_member(group, member_id, instance_id)
    except Refused as refused:
        return refused.code
    if generation_id != member.epoch:
        return KafkaCode.ILLEGAL_GENERATION
    group.watch_session(member)
    if (
        _behind(group, member)
        or member.state == ReconciliationState.UNREVOKED_PARTITIONS
        or (
            member.state == ReconciliationState.UNRELEASED_PARTITIONS
            and not _waiting_on_unreleased(group, member)
        )
    ):
        _set_deadline(group, member, member.rebalance_timeout_ms, if_absent=True)
        return KafkaCode.REBALANCE_IN_PROGRESS
    return KafkaCode.NONE


def leave(group: ConsumerGroup, member_id: str, instance_id: str | None) -> KafkaCode:
    """A LeaveGroup member: its partitions are free and the epoch moves on."""
    if instance_id is not None:
        found = group.static_members.get(instance_id)
        if found is None:
            return KafkaCode.UNKNOWN_MEMBER_ID
        if member_id and found != member_id:
            return KafkaCode.FENCED_INSTANCE_ID
        member_id = found
    member = group.members.get(member_id)
    if member is None:
        return KafkaCode.UNKNOWN_MEMBER_ID
    group.remove_member(member, "it left the group")
    return KafkaCode.NONE


# -- the steps ---------------------------------------------------------------------------


def _member(
    group: ConsumerGroup, member_id: str, instance_id: str | None, unknown: bool
) -> tuple[ConsumerMember, bool]:
    """The joining member: found, a static member's new process, or new;
    and whether it replaced a member of the consumer protocol."""
    if instance_id is not None:
        current_id = group.static_members.get(instance_id)
        if current_id is not None and current_id != member_id:
            if not unknown:
                raise Refused(
                    KafkaCode.FENCED_INSTANCE_ID,
                    f"instance id {instance_id} belongs to member {current_id}",
                )
            # A classic static member's new process takes its place at once.
            replaced = group.members[current_id]
            return group.replace_static_member(replaced, member_id), replaced.classic is None
    member = group.members.get(member_id)
    if member is not None:
        if member.classic is None:
            raise Refused(
                KafkaCode.UNKNOWN_MEMBER_ID,
                f"member {member_id} does not use the classic protocol",
            )
        return member, False
    # A member id not in the group is a new member's (the one a
    # MEMBER_ID_REQUIRED answer gave it; nothing is kept in between).
    member = ConsumerMember(member_id)
    member.instance_id = instance_id
    group.add_member(member)
    return member, False


def _apply(member: ConsumerMember, request: JoinRequest, subscription: Subscription) -> bool:
    """The JoinGroup's facts on the member; whether its subscription changed."""
    topics = tuple(sorted(set(subscription.topics)))
    changed = topics != member.subscribed_topic_names or member.server_assignor is not None
    member.subscribed_topic_names = topics
    member.subscribed_topic_regex = None
    member.server_assignor = None
    if subscription.rack_id is not None:
        member.rack_id = subscription.rack_id
    if request.rebalance_timeout_ms != -1:
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
    member.client_id = request.client_id
    member.client_host = request.client_host
    member.classic = ClassicProtocol(request.session_timeout_ms, list(request.protocols))
    return changed


def _owned(group: ConsumerGroup, subscription: Subscription) -> dict[TopicId, set[int]]:
    """The partitions the member says it owns, by topic id (topics that no
    longer exist are owned by no one)."""
    topics = group.host.topics()
    owned: dict[TopicId, set[int]] = {}
    for tp in subscription.owned_partitions:
        info = topics.get(tp.topic)
        if info is not None:
            owned.setdefault(info.topic_id, set()).add(tp.partition)
    return owned


def _classic_member(
    group: ConsumerGroup, member_id: str, instance_id: str | None
) -> ConsumerMember:
    if instance_id is not None:
        found = group.static_members.get(instance_id)
        if found is None:
            raise Refused(KafkaCode.UNKNOWN_MEMBER_ID, f"instance id {instance_id} is unknown")
        if found != member_id:
            raise Refused(KafkaCode.FENCED_INSTANCE_ID, f"instance id {instance_id} is fenced")
    member = group.members.get(member_id)
    if member is None or member.classic is None:
        raise Refused(KafkaCode.UNKNOWN_MEMBER_ID, f"member {member_id} is not a classic member")
    return member


def _behind(group: ConsumerGroup, member: ConsumerMember) -> bool:
    return member.epoch < group.epoch


def _waiting_on_unreleased(group: ConsumerGroup, member: ConsumerMember) -> bool:
    """Whether a partition of its target is still held by another member."""
    target = group.target.get(member.member_id, {})
    for topic_id, partitions in target.items():
        for p in partitions - member.assigned.get(topic_id, frozenset()):
            holder = group.owners.get((topic_id, p))
            if holder is not None and holder != member.member_id:
                return True
    return False


def _set_deadline(
    group: ConsumerGroup, member: ConsumerMember, timeout_ms: int, if_absent: bool = False
) -> None:
    """A classic member that does not join (or sync) within ``timeout_ms``
    is removed (Kafka's join and sync timeouts)."""
    if member.classic_timer is not None:
        if if_absent:
            return
        member.classic_timer.cancel()

    def expired() -> None:
        if group.members.get(member.member_id) is member:
            member.classic_timer = None
            group.remove_member(member, "it did not join or sync in its rebalance timeout")
            group.flush()

    member.classic_timer = group.host.schedule_consumer(group, timeout_ms / 1000, expired)


def _when_durable(group: ConsumerGroup, result: JoinResult) -> Future[JoinResult]:
    future: Future[JoinResult] = running_future()

    def written(error: KafkaCode) -> None:
        if error != KafkaCode.NONE:
            group.host.resolve(future, JoinResult(error, member_id=result.member_id))
        else:
            group.host.resolve(future, result)

    if not group.flush(written):
        group.host.resolve(future, result)
    return future
