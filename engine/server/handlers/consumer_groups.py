"""The consumer group protocol's APIs (KIP-848): ConsumerGroupHeartbeat and
ConsumerGroupDescribe, over the engine's group coordinator
(engine/groups/consumer_group.py).

Assignments travel by topic id, as Kafka sends them; a heartbeat that
changed the group is answered once the change is durable (the handler
awaits the coordinator's future, the event loop never blocks on it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import EngineError, error_code
from engine.groups.consumer_group_description import ConsumerGroupDescription
from engine.groups.consumer_heartbeat import Heartbeat, HeartbeatResult
from engine.groups.consumer_member import Partitions
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation, ResourceType
from engine.server.context import Body, RequestContext, Response, answer, error_message
from engine.server.handlers.common import (
    authorized_operations,
    client_host,
    distinct,
    millis,
    uuid_bytes,
)
from engine.server.handlers.registry import handles

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import (
        ConsumerGroupDescribeRequest,
        ConsumerGroupHeartbeatRequest,
    )

"""READ, DELETE and DESCRIBE: every operation on a group (no ACLs here)."""
_CONSUMER_MEMBER = 1
"""ConsumerGroupDescribe v1's member type of a member of this protocol."""
_CLASSIC_MEMBER = 0
"""... and of a classic member of the group (online migration)."""


_DESCRIBE = AclOperation.DESCRIBE


@handles(
    ApiKey.CONSUMER_GROUP_HEARTBEAT,
    0,
    1,
    notes={
        0: "the consumer group protocol (KIP-848), server-side assignors",
        1: "members make their own member ids; regex subscriptions",
    },
)
def handle_consumer_group_heartbeat(
    context: RequestContext, request: ConsumerGroupHeartbeatRequest
) -> Response:
    if not authorize.may_read_group(context, request.group_id):
        return _heartbeat_refused(KafkaCode.GROUP_AUTHORIZATION_FAILED)
    if request.subscribed_topic_names and authorize.refused_topics(
        context, AclOperation.DESCRIBE, request.subscribed_topic_names
    ):
        # Kafka's KafkaApis.handleConsumerGroupHeartbeat: a member may not
        # learn of, nor be assigned, a topic it may not describe.
        return _heartbeat_refused(KafkaCode.TOPIC_AUTHORIZATION_FAILED)
    owned: dict[bytes, set[int]] | None = None
    if request.topic_partitions is not None:
        owned = {}
        for topic in request.topic_partitions:
            owned.setdefault(uuid_bytes(topic.topic_id), set()).update(topic.partitions)
    names = request.subscribed_topic_names
    heartbeat = Heartbeat(
        group_id=request.group_id,
        member_id=request.member_id,
        member_epoch=request.member_epoch,
        instance_id=request.instance_id,
        rack_id=request.rack_id,
        rebalance_timeout_ms=millis(request.rebalance_timeout),
        subscribed_topic_names=None if names is None else list(names),
        subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
        server_assignor=request.server_assignor,
        owned_partitions=owned,
        client_id=context.header.client_id or "",
        client_host=client_host(context),
        refused_topics=lambda names: authorize.refused_topics(context, _DESCRIBE, names),
    )
    # v1 members make their own member id (KIP-1082); v0 ones may leave it to us.
    future = context.engine.groups.consumer_group_heartbeat(
        heartbeat, member_id_required=context.version >= 1
    )

    def build(result: HeartbeatResult) -> Body:
        return {
            "throttle_time": 0,
            "error_code": result.error,
            "error_message": result.error_message,
            "member_id": result.member_id,
            "member_epoch": result.member_epoch,
            "heartbeat_interval": result.heartbeat_interval_ms,
            "assignment": None
            if result.assignment is None
            else {"topic_partitions": _topic_partitions(result.assignment)},
        }

    return answer(context, future, build)


def _heartbeat_refused(code: KafkaCode) -> Body:
    return {
        "throttle_time": 0,
        "error_code": code,
        "error_message": None,
        "member_id": None,
        "member_epoch": -1,
        "heartbeat_interval": 0,
        "assignment": None,
    }


def _topic_partitions(partitions: Partitions) -> list[dict[str, Any]]:
    return [
        {"topic_id": topic_id, "partitions": sorted(ps)}
        for topic_id, ps in sorted(partitions.items())
    ]


@handles(
    ApiKey.CONSUMER_GROUP_DESCRIBE,
    0,
    1,
    notes={
        1: "member type",
    },
)
def handle_consumer_group_describe(
    context: RequestContext, request: ConsumerGroupDescribeRequest
) -> Body:
    def operations(group_id: str) -> int:
        return authorized_operations(
            context, ResourceType.GROUP, group_id, request.include_authorized_operations
        )

    wanted = distinct(request.group_ids)
    hidden = authorize.refused_groups(context, AclOperation.DESCRIBE, wanted)
    try:
        described = context.engine.groups.consumer_group_describe(
            [g for g in wanted if g not in hidden]
        )
    except EngineError as error:
        code, message = error_code(error), error_message(error)
        return {
            "throttle_time": 0,
            "groups": [
                _group_error(group_id, code, message, operations(group_id)) for group_id in wanted
            ],
        }
    groups = [_describe(group, operations(group.group_id)) for group in described]
    unseen = authorize.refused_topics(
        context, AclOperation.DESCRIBE, (name for group in groups for name in _topics_named(group))
    )
    if unseen:
        # Kafka's KafkaApis.handleConsumerGroupDescribe: a group whose
        # members name a topic the principal may not describe is not shown.
        groups = [
            _group_error(
                g["group_id"],
                KafkaCode.TOPIC_AUTHORIZATION_FAILED,
                _UNSEEN_TOPICS,
                g["authorized_operations"],
            )
            if unseen.intersection(_topics_named(g))
            else g
            for g in groups
        ]
    if hidden:  # in the request's order
        denied = KafkaCode.GROUP_AUTHORIZATION_FAILED
        by_id = {group["group_id"]: group for group in groups}
        groups = [
            _group_error(g, denied, "", operations(g)) if g in hidden else by_id[g] for g in wanted
        ]
    return {"throttle_time": 0, "groups": groups}


_UNSEEN_TOPICS = "The group has described topic(s) that the client is not authorized to describe."
"""Kafka's message for a group hidden for its topics."""


def _topics_named(group: Body) -> set[str]:
    """The topics a described group's members subscribe to or are assigned."""
    names: set[str] = set()
    for member in group["members"]:
        names.update(member["subscribed_topic_names"] or ())
        for assignment in (member["assignment"], member["target_assignment"]):
            names.update(t["topic_name"] for t in assignment["topic_partitions"])
    return names


def _group_error(group_id: str, code: int, message: str, operations: int) -> dict[str, Any]:
    return {
        "error_code": code,
        "error_message": message,
        "group_id": group_id,
        "group_state": "",
        "group_epoch": -1,
        "assignment_epoch": -1,
        "assignor_name": "",
        "members": [],
        "authorized_operations": operations,
    }


def _describe(group: ConsumerGroupDescription, operations: int) -> dict[str, Any]:
    if group.error:
        return _group_error(group.group_id, group.error, group.error_message or "", operations)

    def assignment(partitions: Partitions) -> dict[str, Any]:
        return {
            "topic_partitions": [
                {
                    "topic_id": topic_id,
                    "topic_name": group.topic_names[topic_id],
                    "partitions": sorted(ps),
                }
                for topic_id, ps in sorted(partitions.items())
                if topic_id in group.topic_names
            ]
        }

    return {
        "error_code": group.error,
        "error_message": None,
        "group_id": group.group_id,
        "group_state": group.state,
        "group_epoch": group.group_epoch,
        "assignment_epoch": group.assignment_epoch,
        "assignor_name": group.assignor_name,
        "members": [
            {
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "rack_id": m.rack_id,
                "member_epoch": m.member_epoch,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "subscribed_topic_names": m.subscribed_topic_names,
                "subscribed_topic_regex": m.subscribed_topic_regex,
                "assignment": assignment(m.assignment),
                "target_assignment": assignment(m.target_assignment),
                "member_type": _CLASSIC_MEMBER if m.classic else _CONSUMER_MEMBER,
            }
            for m in group.members
        ],
        "authorized_operations": operations,
    }
