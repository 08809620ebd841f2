"""FindCoordinator and the consumer group APIs: JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete,
DescribeGroups, ListGroups and DeleteGroups, over the engine's group
coordinator (engine/groups).

This broker is the coordinator of every group and every transactional
id. Requests that wait (a JoinGroup for the rebalance, a SyncGroup for the
leader, a commit for durability) await the coordinator's future; the event
loop never blocks on one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from engine.errors import EngineError, error_code
from engine.groups import GroupDescription, JoinResult, LeaveResult, SyncResult
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation, ResourceType
from engine.server.context import Body, RequestContext, Response, answer, off_loop
from engine.server.handlers.common import authorized_operations, client_host, distinct, millis
from engine.server.handlers.registry import handles
from engine.types import OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import (
        DeleteGroupsRequest,
        DescribeGroupsRequest,
        FindCoordinatorRequest,
        HeartbeatRequest,
        JoinGroupRequest,
        LeaveGroupRequest,
        ListGroupsRequest,
        OffsetCommitRequest,
        OffsetDeleteRequest,
        OffsetFetchRequest,
        SyncGroupRequest,
    )

T = TypeVar("T")

_GROUP_KEY, _TRANSACTION_KEY = 0, 1
_SHARE_KEY = 2
"""FindCoordinator asks for share coordinators from v6 (KIP-932); before
it, key type 2 is an unknown one (INVALID_REQUEST), as in Kafka."""


def _client_id(context: RequestContext) -> str:
    return context.header.client_id or ""


# -- FindCoordinator ---------------------------------------------------------------------


@handles(
    ApiKey.FIND_COORDINATOR,
    0,
    6,
    notes={
        0: "this broker, for groups",
        1: "key types: groups (0) and transactional ids (1)",
        3: "flexible encoding",
        4: "a batch of keys",
        5: "the client knows TRANSACTION_ABORTABLE (KIP-890), which Kafka 4.0 never answers"
        " here: answered as v4",
        6: "key type share (2, KIP-932): CLUSTER_ACTION, then INVALID_REQUEST (share groups"
        " are not served, as a Kafka 4.0 broker without a share coordinator answers)",
    },
)
def handle_find_coordinator(context: RequestContext, request: FindCoordinatorRequest) -> Body:
    """This broker coordinates every group (key type 0) and transactional id (1)."""
    # The kio classes a handler tells versions apart by are imported on its
    # first request, not at start (some milliseconds each).
    from kio.schema.find_coordinator.v4.request import (  # noqa: PLC0415
        FindCoordinatorRequest as FindCoordinatorRequestV4,
    )
    from kio.schema.find_coordinator.v5.request import (  # noqa: PLC0415
        FindCoordinatorRequest as FindCoordinatorRequestV5,
    )
    from kio.schema.find_coordinator.v6.request import (  # noqa: PLC0415
        FindCoordinatorRequest as FindCoordinatorRequestV6,
    )

    key_type = getattr(request, "key_type", _GROUP_KEY)
    if isinstance(
        request, FindCoordinatorRequestV4 | FindCoordinatorRequestV5 | FindCoordinatorRequestV6
    ):  # a batch of keys
        if key_type == _SHARE_KEY and isinstance(request, FindCoordinatorRequestV6):
            coordinators = _share_coordinators(context, request.coordinator_keys)
            return {"throttle_time": 0, "coordinators": coordinators}
        coordinators = [
            {"key": key, **_coordinator(context, key_type, key)} for key in request.coordinator_keys
        ]
        return {"throttle_time": 0, "coordinators": coordinators}
    return {"throttle_time": 0, **_coordinator(context, key_type, request.key)}


def _share_coordinators(context: RequestContext, keys: Sequence[str]) -> list[dict[str, Any]]:
    """Kafka 4.0's getCoordinator for a share key: CLUSTER_ACTION first
    (denied, the whole request is CLUSTER_AUTHORIZATION_FAILED), then
    INVALID_REQUEST from a broker without a share coordinator."""
    if authorize.allowed_on_cluster(context, AclOperation.CLUSTER_ACTION):
        code, message = KafkaCode.INVALID_REQUEST, "share groups are not served"
    else:
        code, message = KafkaCode.CLUSTER_AUTHORIZATION_FAILED, None
    return [
        {
            "key": key,
            "error_code": code,
            "error_message": message,
            "node_id": -1,
            "host": "",
            "port": -1,
        }
        for key in keys
    ]


def _coordinator(context: RequestContext, key_type: int, key: str) -> dict[str, Any]:
    if key_type not in (_GROUP_KEY, _TRANSACTION_KEY):
        return {
            "error_code": KafkaCode.INVALID_REQUEST,
            "error_message": f"unknown coordinator key type {key_type}",
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    refused = authorize.coordinator_refused(context, key_type == _TRANSACTION_KEY, key)
    if refused is not None:
        return {"error_code": refused, "error_message": None, "node_id": -1, "host": "", "port": -1}
    broker = context.broker
    return {
        "error_code": KafkaCode.NONE,
        "error_message": None,
        "node_id": broker.node_id,
        "host": broker.host,
        "port": broker.port,
    }


# -- membership ---------------------------------------------------------------------------


@handles(
    ApiKey.JOIN_GROUP,
    0,
    9,
    notes={
        0: "the classic group protocol",
        1: "rebalance timeout",
        4: "a new member is first given its id (MEMBER_ID_REQUIRED)",
        5: "static members (group_instance_id)",
        6: "flexible encoding",
        8: "the reason a member joins",
        9: "skip_assignment (answered false)",
    },
)
def handle_join_group(context: RequestContext, request: JoinGroupRequest) -> Response:
    version = context.version
    if not authorize.may_read_group(context, request.group_id):
        return {
            "throttle_time": 0,
            "error_code": KafkaCode.GROUP_AUTHORIZATION_FAILED,
            "generation_id": -1,
            "protocol_type": None,
            "protocol_name": None if version >= 7 else "",
            "leader": "",
            "skip_assignment": False,
            "member_id": request.member_id,
            "members": [],
        }
    from kio.schema.join_group.v0.request import (  # noqa: PLC0415
        JoinGroupRequest as JoinGroupRequestV0,
    )

    session_timeout_ms = millis(request.session_timeout)
    # JoinGroup v0 has no rebalance timeout: the session timeout is both.
    rebalance_timeout_ms = (
        session_timeout_ms
        if isinstance(request, JoinGroupRequestV0)
        else millis(request.rebalance_timeout)
    )
    future = context.engine.groups.join_group(
        request.group_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        request.protocol_type,
        [(protocol.name, protocol.metadata) for protocol in request.protocols],
        session_timeout_ms,
        rebalance_timeout_ms,
        client_id=_client_id(context),
        client_host=client_host(context),
        require_known_member_id=version >= 4,
        reason=getattr(request, "reason", None),
    )

    def build(result: JoinResult) -> Body:
        return {
            "throttle_time": 0,
            "error_code": result.error,
            "generation_id": result.generation_id,
            "protocol_type": result.protocol_type,
            # Not nullable before v7.
            "protocol_name": result.protocol_name if version >= 7 else result.protocol_name or "",
            "leader": result.leader,
            "skip_assignment": False,
            "member_id": result.member_id,
            "members": [
                {
                    "member_id": member.member_id,
                    "group_instance_id": member.group_instance_id,
                    "metadata": member.metadata,
                }
                for member in result.members
            ],
        }

    return answer(context, future, build)


@handles(
    ApiKey.SYNC_GROUP,
    0,
    5,
    notes={
        3: "static members",
        4: "flexible encoding",
        5: "protocol type and name checked",
    },
)
def handle_sync_group(context: RequestContext, request: SyncGroupRequest) -> Response:
    if not authorize.may_read_group(context, request.group_id):
        return {
            "throttle_time": 0,
            "error_code": KafkaCode.GROUP_AUTHORIZATION_FAILED,
            "protocol_type": None,
            "protocol_name": None,
            "assignment": b"",
        }
    future = context.engine.groups.sync_group(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        getattr(request, "protocol_type", None),
        getattr(request, "protocol_name", None),
        {a.member_id: a.assignment for a in request.assignments},
    )

    def build(result: SyncResult) -> Body:
        return {
            "throttle_time": 0,
            "error_code": result.error,
            "protocol_type": result.protocol_type,
            "protocol_name": result.protocol_name,
            "assignment": result.assignment,
        }

    return answer(context, future, build)


@handles(
    ApiKey.HEARTBEAT,
    0,
    4,
    notes={
        3: "static members",
        4: "flexible encoding",
    },
)
def handle_heartbeat(context: RequestContext, request: HeartbeatRequest) -> Body:
    if not authorize.may_read_group(context, request.group_id):
        return {"throttle_time": 0, "error_code": KafkaCode.GROUP_AUTHORIZATION_FAILED}
    code = context.engine.groups.heartbeat(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
    )
    return {"throttle_time": 0, "error_code": code}


@handles(
    ApiKey.LEAVE_GROUP,
    0,
    5,
    notes={
        3: "a batch of members",
        4: "flexible encoding",
        5: "the reason a member leaves",
    },
)
def handle_leave_group(context: RequestContext, request: LeaveGroupRequest) -> Response:
    if not authorize.may_read_group(context, request.group_id):
        code = KafkaCode.GROUP_AUTHORIZATION_FAILED
        return {"throttle_time": 0, "error_code": code, "members": []}
    from kio.schema.leave_group.v0.request import LeaveGroupRequest as LeaveGroupV0  # noqa: PLC0415
    from kio.schema.leave_group.v1.request import LeaveGroupRequest as LeaveGroupV1  # noqa: PLC0415
    from kio.schema.leave_group.v2.request import LeaveGroupRequest as LeaveGroupV2  # noqa: PLC0415

    if isinstance(request, LeaveGroupV0 | LeaveGroupV1 | LeaveGroupV2):
        leaving: list[tuple[str, str | None]] = [(request.member_id, None)]
        reason = None
    else:  # v3+: a batch of members
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
        reasons = {getattr(m, "reason", None) for m in request.members} - {None}
        reason = ", ".join(sorted(r for r in reasons if r)) or None
    try:
        future = context.engine.groups.leave_group(request.group_id, leaving, reason)
    except EngineError as error:
        return {"throttle_time": 0, "error_code": error_code(error), "members": []}

    def build(result: LeaveResult) -> Body:
        if result.error != KafkaCode.NONE:
            return {"throttle_time": 0, "error_code": result.error, "members": []}
        if context.version < 3:
            return {"throttle_time": 0, "error_code": result.members[0], "members": []}
        members = [
            {"member_id": member_id, "group_instance_id": instance_id, "error_code": code}
            for (member_id, instance_id), code in zip(leaving, result.members, strict=True)
        ]
        return {"throttle_time": 0, "error_code": KafkaCode.NONE, "members": members}

    return answer(context, future, build)


# -- offsets ------------------------------------------------------------------------------


@handles(
    ApiKey.OFFSET_COMMIT,
    2,
    9,
    notes={
        2: "a retention time for the committed offsets",
        5: "no retention time",
        6: "committed leader epoch",
        7: "static members",
        8: "flexible encoding",
        9: "KIP-848 member epochs (v10, topics by id, is not served)",
    },
)
def handle_offset_commit(context: RequestContext, request: OffsetCommitRequest) -> Response:
    offsets = {
        TopicPartition(topic.name, p.partition_index): OffsetAndMetadata(
            p.committed_offset,
            getattr(p, "committed_leader_epoch", -1),
            p.committed_metadata or "",
        )
        for topic in request.topics
        for p in topic.partitions
    }
    # As Kafka: no READ on the group refuses every partition; no READ on a
    # topic refuses its partitions, and the others are committed.
    refused = authorize.offset_commit_refused(
        context, request.group_id, {t.name for t in request.topics}
    )
    committed = {tp: o for tp, o in offsets.items() if tp.topic not in refused}

    def build(codes: dict[TopicPartition, KafkaCode]) -> Body:
        if refused:  # in the request's order
            codes = {tp: refused.get(tp.topic) or codes[tp] for tp in offsets}
        topics = _by_topic(
            codes, lambda tp, code: {"partition_index": tp.partition, "error_code": code}
        )
        return {"throttle_time": 0, "topics": topics}

    if refused and not committed:
        return build({})
    # v2-4 may set a retention time for these offsets; v5 dropped it.
    retention = getattr(request, "retention_time", None)
    future = context.engine.groups.commit_offsets(
        request.group_id,
        request.generation_id_or_member_epoch,
        request.member_id,
        getattr(request, "group_instance_id", None),
        committed,
        millis(retention) if retention is not None else -1,
        # v9 (KIP-848) names a group that does not exist; older clients
        # expect ILLEGAL_GENERATION, as Kafka answers them.
        KafkaCode.GROUP_ID_NOT_FOUND if request.__version__ >= 9 else KafkaCode.ILLEGAL_GENERATION,
        member_epochs=request.__version__ >= 9,
    )
    return answer(context, future, build)


def _by_topic(
    items: dict[TopicPartition, T], render: Callable[[TopicPartition, T], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per-partition answers grouped by topic, in request order."""
    topics: dict[str, list[dict[str, Any]]] = {}
    for tp, item in items.items():
        topics.setdefault(tp.topic, []).append(render(tp, item))
    return [{"name": name, "partitions": partitions} for name, partitions in topics.items()]


@handles(
    ApiKey.OFFSET_FETCH,
    1,
    9,
    notes={
        2: "null topics: every committed offset",
        5: "committed leader epoch",
        6: "flexible encoding",
        7: "require_stable: pending transactional offsets are answered UNSTABLE_OFFSET_COMMIT",
        8: "many groups at once",
        9: "KIP-848 member ids and epochs",
    },
)
def handle_offset_fetch(context: RequestContext, request: OffsetFetchRequest) -> Body:
    from kio.schema.offset_fetch.v8.request import OffsetFetchRequest as OffsetFetchV8  # noqa: PLC0415
    from kio.schema.offset_fetch.v9.request import OffsetFetchRequest as OffsetFetchV9  # noqa: PLC0415

    require_stable = bool(getattr(request, "require_stable", False))
    if isinstance(request, OffsetFetchV8 | OffsetFetchV9):  # many groups
        # A group asked for all its offsets twice is answered once (see
        # distinct): that answer is the size of every offset it committed.
        every = {g.group_id for g in request.groups if g.topics is None}
        asked = []
        for group in request.groups:
            if group.topics is None:
                if group.group_id not in every:
                    continue
                every.discard(group.group_id)
            asked.append(group)
        groups = [
            {
                "group_id": group.group_id,
                **_fetch(
                    context,
                    group.group_id,
                    group.topics,
                    require_stable,
                    # v9: a KIP-848 member fetches in its member epoch.
                    getattr(group, "member_id", None),
                    getattr(group, "member_epoch", -1),
                ),
            }
            for group in asked
        ]
        return {"throttle_time": 0, "groups": groups}
    return {"throttle_time": 0, **_fetch(context, request.group_id, request.topics, require_stable)}


def _fetch(
    context: RequestContext,
    group_id: str,
    topics: Iterable[Any] | None,
    require_stable: bool,
    member_id: str | None = None,
    member_epoch: int = -1,
) -> dict[str, Any]:
    wanted = (
        None
        if topics is None
        else [TopicPartition(t.name, index) for t in topics for index in t.partition_indexes]
    )
    if not authorize.allowed(context, AclOperation.DESCRIBE, authorize.GROUP, group_id):
        denied = KafkaCode.GROUP_AUTHORIZATION_FAILED
        if context.version >= 2:
            return {"error_code": denied, "topics": []}
        return {
            "error_code": denied,
            "topics": _by_topic({tp: (None, denied) for tp in wanted or ()}, _fetched),
        }
    try:
        found = context.engine.groups.fetch_offsets(
            group_id, wanted, require_stable, member_id, member_epoch
        )
    except EngineError as error:
        code = error_code(error)
        if context.version >= 2:
            return {"error_code": code, "topics": []}
        # v1 has no group-level error: every partition carries it.
        found = {tp: (None, code) for tp in wanted or ()}

    hidden = authorize.refused_topics(context, AclOperation.DESCRIBE, (tp.topic for tp in found))
    if hidden:  # every offset: the others' left out; named ones: refused
        denied = KafkaCode.TOPIC_AUTHORIZATION_FAILED
        found = {
            tp: (None, denied) if tp.topic in hidden else value
            for tp, value in found.items()
            if wanted is not None or tp.topic not in hidden
        }
    return {"error_code": KafkaCode.NONE, "topics": _by_topic(found, _fetched)}


def _fetched(tp: TopicPartition, found: tuple[OffsetAndMetadata | None, int]) -> dict[str, Any]:
    committed, code = found
    return {
        "partition_index": tp.partition,
        "committed_offset": committed.offset if committed is not None else -1,
        "committed_leader_epoch": committed.leader_epoch if committed is not None else -1,
        "metadata": committed.metadata if committed is not None else "",
        "error_code": code,
    }


@handles(
    ApiKey.OFFSET_DELETE,
    0,
    0,
    notes={
        0: "a group's committed offsets of topics it no longer reads",
    },
)
def handle_offset_delete(context: RequestContext, request: OffsetDeleteRequest) -> Response:
    partitions = [
        TopicPartition(topic.name, p.partition_index)
        for topic in request.topics
        for p in topic.partitions
    ]
    if not authorize.allowed(context, AclOperation.DELETE, authorize.GROUP, request.group_id):
        code = KafkaCode.GROUP_AUTHORIZATION_FAILED
        return {"error_code": code, "throttle_time": 0, "topics": []}
    unreadable = authorize.refused_topics(
        context, AclOperation.READ, (t.name for t in request.topics)
    )
    try:
        future = context.engine.groups.delete_offsets(
            request.group_id, [tp for tp in partitions if tp.topic not in unreadable]
        )
    except EngineError as error:
        return {"error_code": error_code(error), "throttle_time": 0, "topics": []}

    def build(codes: dict[TopicPartition, KafkaCode]) -> Body:
        if unreadable:  # in the request's order
            denied = KafkaCode.TOPIC_AUTHORIZATION_FAILED
            codes = {tp: denied if tp.topic in unreadable else codes[tp] for tp in partitions}
        topics = _by_topic(
            codes, lambda tp, code: {"partition_index": tp.partition, "error_code": code}
        )
        return {"error_code": KafkaCode.NONE, "throttle_time": 0, "topics": topics}

    return answer(context, future, build)


# -- groups -------------------------------------------------------------------------------


@handles(
    ApiKey.DESCRIBE_GROUPS,
    0,
    6,
    notes={
        3: "authorized operations (KIP-430), for a group answered with no error",
        4: "static members",
        5: "flexible encoding",
        6: "a group that does not exist or is a consumer group: GROUP_ID_NOT_FOUND with an"
        " error message, state Dead (KIP-1043; before v6: Dead, no error)",
    },
)
def handle_describe_groups(context: RequestContext, request: DescribeGroupsRequest) -> Body:
    requested = getattr(request, "include_authorized_operations", False)
    wanted = distinct(request.groups)
    hidden = authorize.refused_groups(context, AclOperation.DESCRIBE, wanted)
    try:
        found = context.engine.groups.describe_groups([g for g in wanted if g not in hidden])
    except EngineError as error:
        code = error_code(error)
        found = [GroupDescription(g, code, "", "", "", []) for g in wanted if g not in hidden]
    by_id = {group.group_id: group for group in found}
    denied = KafkaCode.GROUP_AUTHORIZATION_FAILED
    described = [
        GroupDescription(g, denied, "", "", "", []) if g in hidden else by_id[g] for g in wanted
    ]
    groups = []
    for group in described:
        answered = _described_error(context.version, group)
        # KafkaApis fills in the operations only for a group answered with
        # no error (a missing group from v6, a refused one keep the sentinel).
        asked = requested and answered["error_code"] == KafkaCode.NONE
        groups.append(_described_group(context, group, answered, asked))
    return {"throttle_time": 0, "groups": groups}


def _described_group(
    context: RequestContext, group: GroupDescription, error: dict[str, Any], requested: bool
) -> dict[str, Any]:
    return {
        **error,
        "group_id": group.group_id,
        "group_state": group.state,
        "protocol_type": group.protocol_type,
        "protocol_data": group.protocol_name,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "member_metadata": m.metadata,
                "member_assignment": m.assignment,
            }
            for m in group.members
        ],
        "authorized_operations": authorized_operations(
            context, ResourceType.GROUP, group.group_id, requested
        ),
    }


_FIRST_GROUP_ID_NOT_FOUND_VERSION = 6


def _described_error(version: int, group: GroupDescription) -> dict[str, Any]:
    """A described group's error and message: a group that does not exist
    (or is a consumer group) is GROUP_ID_NOT_FOUND from v6, with Kafka's
    message; before v6 Kafka describes it as Dead with no error
    (GroupMetadataManager.describeGroups)."""
    if group.error != KafkaCode.GROUP_ID_NOT_FOUND:
        return {"error_code": group.error, "error_message": None}
    if version < _FIRST_GROUP_ID_NOT_FOUND_VERSION:
        return {"error_code": KafkaCode.NONE, "error_message": None}
    message = group.error_message or f"Group {group.group_id} not found."
    return {"error_code": group.error, "error_message": message}


@handles(
    ApiKey.LIST_GROUPS,
    0,
    5,
    notes={
        3: "flexible encoding",
        4: "filter by state",
        5: "filter by type",
    },
)
def handle_list_groups(context: RequestContext, request: ListGroupsRequest) -> Response:
    if context.engine.groups.count() > MANY_GROUPS:
        return off_loop(context, lambda: _list_groups(context, request))
    return _list_groups(context, request)


MANY_GROUPS = 1_000
"""Past this many groups, a ListGroups is answered on the admin thread
(docs/design/0028: the connection's later requests wait for it): 100,000
groups took the event loop a quarter of a second."""


def _list_groups(context: RequestContext, request: ListGroupsRequest) -> Body:
    try:
        listed = context.engine.groups.list_groups(
            list(getattr(request, "states_filter", ())), list(getattr(request, "types_filter", ()))
        )
    except EngineError as error:
        return {"throttle_time": 0, "error_code": error_code(error), "groups": []}
    if not authorize.allowed_on_cluster(context, AclOperation.DESCRIBE):
        # Kafka: DESCRIBE on the cluster lists every group, else the describable ones
        hidden = authorize.refused_groups(
            context, AclOperation.DESCRIBE, [g.group_id for g in listed]
        )
        listed = [g for g in listed if g.group_id not in hidden]
    groups = [
        {
            "group_id": group.group_id,
            "protocol_type": group.protocol_type,
            "group_state": group.state,
            "group_type": group.group_type,
        }
        for group in listed
    ]
    return {"throttle_time": 0, "error_code": KafkaCode.NONE, "groups": groups}


@handles(
    ApiKey.DELETE_GROUPS,
    0,
    2,
    notes={
        2: "flexible encoding",
    },
)
def handle_delete_groups(context: RequestContext, request: DeleteGroupsRequest) -> Response:
    names = list(request.groups_names)
    refused = authorize.refused_groups(context, AclOperation.DELETE, names)
    allowed = [name for name in names if name not in refused]
    try:
        future = context.engine.groups.delete_groups(allowed)
    except EngineError as error:
        failed: Future[dict[str, int]] = Future()
        failed.set_result(dict.fromkeys(allowed, error_code(error)))
        future = failed

    def build(codes: dict[str, int]) -> Body:
        if refused:
            codes = dict.fromkeys(refused, KafkaCode.GROUP_AUTHORIZATION_FAILED) | codes
        results = [{"group_id": name, "error_code": code} for name, code in codes.items()]
        return {"throttle_time": 0, "results": results}

    return answer(context, future, build)
