"""The ConsumerGroupHeartbeat request as a KIP-848 group sees it: its
fields, its answer, the member epochs with a meaning of their own, and
Kafka's checks of a request as a whole (before any group is looked at)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence, Set
from typing import NamedTuple

from engine.groups.assignors import TopicId
from engine.groups.config import GroupConfig
from engine.groups.consumer_member import ConsumerMember, Partitions, member_facts
from engine.groups.topic_subscriptions import compile_regex
from engine.linear_regex import InvalidPattern
from engine.protocol.kafka_code import KafkaCode
from engine.topic_id import uuid_text

JOIN_GROUP_MEMBER_EPOCH = 0
LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
"""A static member's temporary leave: it keeps its place (and partitions)
for its session timeout, for a new process with its instance id."""

CONSUMER = "consumer"
"""The group type, and the protocol type its members have, on the wire."""


class TopicInfo(NamedTuple):
    topic_id: TopicId
    partitions: int


class Heartbeat(NamedTuple):
    """A ConsumerGroupHeartbeat request; None (or -1) is "unchanged"."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: Sequence[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned_partitions: Mapping[TopicId, Collection[int]] | None = None
    """The partitions the member owns (by topic id); None: unchanged."""
    client_id: str = ""
    client_host: str = ""
    refused_topics: Callable[[Collection[str]], Set[str]] | None = None
    """The topics among those given that the member's principal may not
    DESCRIBE (None: it may describe every topic). The group's regexes never
    resolve to them, as Kafka's refreshRegularExpressions filters by the
    context of the heartbeat that asked for the resolution."""


class HeartbeatResult(NamedTuple):
    error: KafkaCode
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Partitions | None = None
    """The member's assignment, when it changed or the request was a full one."""


class Refused(Exception):
    """A heartbeat, commit or fetch the group refuses, with Kafka's error."""

    def __init__(self, code: KafkaCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validate(request: Heartbeat, config: GroupConfig, member_id_required: bool) -> None:
    """Kafka's checks of a ConsumerGroupHeartbeat request as a whole; raises Refused."""
    epoch = request.member_epoch
    if (member_id_required or epoch > 0 or epoch == LEAVE_GROUP_MEMBER_EPOCH) and not (
        request.member_id
    ):
        raise Refused(KafkaCode.INVALID_REQUEST, "MemberId can't be empty.")
    if not request.group_id:
        raise Refused(KafkaCode.INVALID_REQUEST, "GroupId can't be empty.")
    if request.instance_id == "":
        raise Refused(KafkaCode.INVALID_REQUEST, "InstanceId can't be empty.")
    if request.rack_id == "":
        raise Refused(KafkaCode.INVALID_REQUEST, "RackId can't be empty.")
    if epoch == JOIN_GROUP_MEMBER_EPOCH:
        if request.rebalance_timeout_ms == -1:
            raise Refused(
                KafkaCode.INVALID_REQUEST, "RebalanceTimeoutMs must be provided in first request."
            )
        if request.owned_partitions is None or any(request.owned_partitions.values()):
            raise Refused(
                KafkaCode.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining."
            )
        if request.subscribed_topic_names is None and request.subscribed_topic_regex is None:
            raise Refused(
                KafkaCode.INVALID_REQUEST,
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                "when (re-)joining.",
            )
    elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
        if request.instance_id is None:
            raise Refused(KafkaCode.INVALID_REQUEST, "InstanceId can't be null.")
    elif epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
        raise Refused(KafkaCode.INVALID_REQUEST, "MemberEpoch is invalid.")
    if request.rebalance_timeout_ms < -1:
        raise Refused(KafkaCode.INVALID_REQUEST, "RebalanceTimeoutMs is invalid.")
    assignor = request.server_assignor
    if assignor is not None and assignor not in config.group_consumer_assignors:
        raise Refused(
            KafkaCode.UNSUPPORTED_ASSIGNOR,
            f"ServerAssignor {assignor} is not supported. Supported assignors: "
            f"{', '.join(config.group_consumer_assignors)}.",
        )
    if request.subscribed_topic_regex:
        try:
            compile_regex(request.subscribed_topic_regex)
        except InvalidPattern as error:
            raise Refused(
                KafkaCode.INVALID_REGULAR_EXPRESSION,
                f"SubscribedTopicRegex {request.subscribed_topic_regex!r} is not a valid "
                f"regular expression: {error}",
            ) from None


def new_member_id() -> str:
    """A member id as Kafka makes them: a random UUID, URL-safe base64."""
    return uuid_text(uuid.uuid4().bytes)


def apply_heartbeat(member: ConsumerMember, request: Heartbeat) -> tuple[bool, bool]:
    """Applies what the request changes to the member: whether its
    subscription (topics, regex or assignor) changed, and whether anything
    stored of it did."""
    before = member_facts(member)
    changed = False
    if request.rack_id is not None:
        member.rack_id = request.rack_id
    if request.rebalance_timeout_ms != -1:
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
    if request.subscribed_topic_names is not None:
        names = tuple(sorted(set(request.subscribed_topic_names)))
        changed |= names != member.subscribed_topic_names
        member.subscribed_topic_names = names
    if request.subscribed_topic_regex is not None:
        regex = request.subscribed_topic_regex or None
        changed |= regex != member.subscribed_topic_regex
        member.subscribed_topic_regex = regex
    if request.server_assignor is not None:
        changed |= request.server_assignor != member.server_assignor
        member.server_assignor = request.server_assignor
    member.client_id = request.client_id
    member.client_host = request.client_host
    if member.classic is not None:
        # A classic member heartbeating with this protocol is now one of its
        # members (as Kafka's consumerGroupHeartbeat drops the classic
        # metadata): no JoinGroup or SyncGroup deadline, this group's
        # session timeout, no longer answered through the classic APIs.
        member.classic = None
        if member.classic_timer is not None:
            member.classic_timer.cancel()
            member.classic_timer = None
    return changed, member_facts(member) != before
