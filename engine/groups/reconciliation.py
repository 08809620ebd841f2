"""Moving a KIP-848 member towards its target assignment (Kafka's
CurrentAssignmentBuilder), and the fencing of a member by its epoch: in
its heartbeats, and in the offsets it commits and fetches.

A member is first asked to revoke the partitions it must give up, staying
in its epoch; once its heartbeat no longer reports them, it moves to the
target epoch and is given the partitions of its target that no other
member owns any more (a partition still owned elsewhere is "unreleased"
and given at a later heartbeat). So no partition is ever assigned or
pending revocation to two members at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from engine.errors import FencedMemberEpoch, StaleMemberEpoch, UnknownMemberId
from engine.groups.assignors import TopicId
from engine.groups.consumer_heartbeat import Refused
from engine.groups.consumer_member import (
    ConsumerMember,
    Partitions,
    ReconciliationState,
    as_partitions,
    freeze,
)
from engine.protocol.kafka_code import KafkaCode

Step = tuple[int, ReconciliationState, Partitions, Partitions]
"""A member's next current assignment: (epoch, state, assigned, pending revocation)."""


def check_epoch(
    member: ConsumerMember, received: int, owned: Mapping[TopicId, Collection[int]] | None
) -> None:
    """Kafka's fencing: a member heartbeats in its epoch, or in the one
    before with no partition it was not assigned (the answer that
    moved it on may have been lost). Raises Refused."""
    if received > member.epoch:
        raise Refused(
            KafkaCode.FENCED_MEMBER_EPOCH,
            f"the member has a greater epoch ({received}) than the coordinator knows "
            f"({member.epoch}); it must give up its partitions and rejoin",
        )
    if received < member.epoch and (
        received != member.previous_epoch
        or owned is None
        or not is_subset(as_partitions(owned), member.assigned)
    ):
        raise Refused(
            KafkaCode.FENCED_MEMBER_EPOCH,
            f"the member has a smaller epoch ({received}) than the coordinator knows "
            f"({member.epoch}); it must give up its partitions and rejoin",
        )


def epoch_error(received: int, current: int) -> KafkaCode:
    """A commit's or fetch's member epoch against the member's."""
    if received > current:
        return KafkaCode.FENCED_MEMBER_EPOCH
    if received < current:
        return KafkaCode.STALE_MEMBER_EPOCH
    return KafkaCode.NONE


def commit_error(
    members: Mapping[str, ConsumerMember],
    member_id: str,
    instance_id: str | None,
    member_epoch: int,
    transactional: bool,
    member_epochs: bool = True,
) -> KafkaCode:
    """Kafka's ConsumerGroup.validateOffsetCommit: members commit in
    their epoch; a commit from outside the group (epoch < 0) only while
    the group is empty. ``member_epochs``: the request can carry a member
    epoch (OffsetCommit v9+); a consumer-protocol member's OffsetCommit
    from an older version is UNSUPPORTED_VERSION; its TxnOffsetCommit
    (v3+ carries the epoch as its generation) is checked at any version,
    as Kafka exempts transactional commits."""
    if member_epoch < 0 and not members:
        return KafkaCode.NONE
    if transactional and member_epoch < 0 and not member_id and instance_id is None:
        return KafkaCode.NONE  # TxnOffsetCommit without group metadata is not checked
    member = members.get(member_id)
    if member is None:
        return KafkaCode.UNKNOWN_MEMBER_ID
    if not transactional and member.classic is None and not member_epochs:
        return KafkaCode.UNSUPPORTED_VERSION
    if member.classic is not None:
        # A classic member commits in its generation, which is its epoch.
        if member_epoch != member.epoch:
            return KafkaCode.ILLEGAL_GENERATION
        return KafkaCode.NONE
    return epoch_error(member_epoch, member.epoch)


def check_fetch(
    group_id: str, members: Mapping[str, ConsumerMember], member_id: str | None, member_epoch: int
) -> None:
    """Kafka's ConsumerGroup.validateOffsetFetch: a fetch that names a
    member (OffsetFetch v9+) is in its epoch; raises UnknownMemberId,
    StaleMemberEpoch or FencedMemberEpoch. Without one (an admin, or an
    older version, or a consumer that assigns its partitions itself) it is
    not checked."""
    if member_id is None and member_epoch < 0:
        return
    member = members.get(member_id or "")
    if member is None:
        raise UnknownMemberId(f"member {member_id} is not in group {group_id}")
    error = epoch_error(member_epoch, member.epoch)
    if error == KafkaCode.FENCED_MEMBER_EPOCH:
        raise FencedMemberEpoch(
            f"epoch {member_epoch} is ahead of member {member_id}'s ({member.epoch})"
        )
    if error == KafkaCode.STALE_MEMBER_EPOCH:
        raise StaleMemberEpoch(
            f"epoch {member_epoch} is behind member {member_id}'s ({member.epoch})"
        )


def next_step(
    member: ConsumerMember,
    target_epoch: int,
    target: Partitions,
    owners: Mapping[tuple[TopicId, int], str],
    owned: Mapping[TopicId, Collection[int]] | None,
) -> Step | None:
    """One step of the member towards its target assignment; None when it
    stays where it is. ``owners``: which member holds each partition."""
    owned_now = None if owned is None else as_partitions(owned)
    match member.state:
        case ReconciliationState.STABLE:
            if member.epoch == target_epoch:
                return None
        case ReconciliationState.UNREVOKED_PARTITIONS:
            if owns_any(owned_now, member.revoking):
                return None
        case ReconciliationState.UNRELEASED_PARTITIONS:
            pass
    return next_assignment(member, target_epoch, target, owners, owned_now)


def next_assignment(
    member: ConsumerMember,
    target_epoch: int,
    target: Partitions,
    owners: Mapping[tuple[TopicId, int], str],
    owned: Partitions | None,
) -> Step:
    """Kafka's computeNextAssignment."""
    member_epoch = member.epoch
    unreleased = False
    assigned: dict[TopicId, set[int]] = {}
    revoking: dict[TopicId, set[int]] = {}
    pending: dict[TopicId, set[int]] = {}
    for topic_id in sorted(set(target) | set(member.assigned)):
        wanted = target.get(topic_id, frozenset())
        current = member.assigned.get(topic_id, frozenset())
        keep = current & wanted
        give_up = current - keep
        to_get = set(wanted - keep)
        held = {p for p in to_get if (topic_id, p) in owners}
        if held:
            unreleased = True
            to_get -= held
        if keep:
            assigned[topic_id] = set(keep)
        if give_up:
            revoking[topic_id] = set(give_up)
        if to_get:
            pending[topic_id] = to_get
    frozen = freeze(assigned)
    if revoking and owns_any(owned, freeze(revoking)):
        # It gives up partitions first, in its current epoch.
        return member_epoch, ReconciliationState.UNREVOKED_PARTITIONS, frozen, freeze(revoking)
    if pending:
        for topic_id, partitions in pending.items():
            assigned.setdefault(topic_id, set()).update(partitions)
        state = (
            ReconciliationState.UNRELEASED_PARTITIONS if unreleased else ReconciliationState.STABLE
        )
        return target_epoch, state, freeze(assigned), {}
    if unreleased:
        return target_epoch, ReconciliationState.UNRELEASED_PARTITIONS, frozen, {}
    return target_epoch, ReconciliationState.STABLE, frozen, {}


def is_subset(owned: Partitions, assigned: Partitions) -> bool:
    return all(ps <= assigned.get(t, frozenset()) for t, ps in owned.items())


def owns_any(owned: Partitions | None, partitions: Partitions) -> bool:
    """Whether the member still holds any of ``partitions``; a member that
    did not say what it owns holds what it held."""
    if owned is None:
        return True
    return any(owned.get(t, frozenset()) & ps for t, ps in partitions.items())
