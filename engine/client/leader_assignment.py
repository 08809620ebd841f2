"""The group leader's part of a classic rebalance, done by the embedded
member the coordinator makes leader: decode every member's subscription,
assign the subscribed topics' partitions with the assignor the group chose,
and encode each member's assignment for SyncGroup."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from engine.client.assignors import Assignor, MemberSubscription
from engine.errors import InconsistentGroupProtocol
from engine.protocol.consumer_protocol import (
    Assignment,
    ConsumerProtocolError,
    Subscription,
    decode_subscription,
    encode_assignment,
)

if TYPE_CHECKING:
    from engine.groups import JoinResult

log = logging.getLogger("tidelog.consumer")


def assign_members(
    group_id: str,
    leader_id: str,
    result: JoinResult,
    assignors: Mapping[str, Assignor],
    partition_counts: Callable[[Iterable[str]], Mapping[str, int]],
) -> tuple[dict[str, bytes], dict[str, int]]:
    """Every member's encoded assignment, and the partition counts of the
    group's topics it was made from (a change of them calls for a rebalance)."""
    members = []
    for joined in result.members:
        try:
            subscription = decode_subscription(joined.metadata)
        except ConsumerProtocolError as error:
            log.warning(
                "group %s: the subscription of %s does not parse (%s); it is assigned nothing",
                group_id,
                joined.member_id,
                error,
            )
            subscription = Subscription([])
        members.append(MemberSubscription(joined.member_id, joined.group_instance_id, subscription))
    topics = {topic for member in members for topic in member.subscription.topics}
    counts = partition_counts(topics)
    snapshot = {topic: counts.get(topic, 0) for topic in topics}
    chosen = assignors.get(result.protocol_name or "")
    if chosen is None:
        raise InconsistentGroupProtocol(
            f"group {group_id}: the group chose {result.protocol_name!r}, "
            f"which this consumer does not have"
        )
    partitions = chosen.assign({t: c for t, c in counts.items() if c > 0}, members)
    log.info(
        "group %s: %s leads generation %d and assigned %d partitions to %d members (%s)",
        group_id,
        leader_id,
        result.generation_id,
        sum(len(p) for p in partitions.values()),
        len(members),
        chosen.name,
    )
    assignments = {
        member_id: encode_assignment(Assignment(assigned))
        for member_id, assigned in partitions.items()
    }
    return assignments, snapshot
