"""ListOffsets, OffsetForLeaderEpoch and DeleteRecords: a partition's
offsets by position, time and leader epoch, and moving its log start.
What each special ListOffsets timestamp names: engine/offset_lookup.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from engine.errors import EngineError, error_code
from engine.internal_topics import (
    internal_end_offset_for_epoch,
    internal_list_offset,
)
from engine.offset_lookup import LATEST, reads_the_log, unsupported_timestamp
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import RequestContext, Response, off_loop
from engine.server.handlers.common import (
    UNKNOWN_ISOLATION_LEVEL,
    isolation_level,
    leader_or_error,
)
from engine.server.handlers.registry import handles, handles_off_loop
from engine.store_errors import ReadOfDeleted, store_errors

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import (
        DeleteRecordsRequest,
        ListOffsetsRequest,
        OffsetForLeaderEpochRequest,
    )


@handles(
    ApiKey.LIST_OFFSETS,
    1,
    11,
    notes={
        1: "one offset per partition: earliest (-2), latest (-1), by timestamp",
        2: "isolation level: latest is the last stable offset",
        4: "current leader epoch",
        6: "flexible encoding",
        7: "MAX_TIMESTAMP (-3): the first record with the largest timestamp (KIP-734)",
        8: "EARLIEST_LOCAL (-4): the first offset readable without object storage",
        9: "LATEST_TIERED (-5): the last offset in object storage, -1 if none (KIP-1005)",
        10: "timeout_ms (KIP-1075): accepted; lookups answer without waiting on it",
        11: "EARLIEST_PENDING_UPLOAD (-6): the first offset not yet in object storage (KIP-1023)",
    },
)
def handle_list_offsets(context: RequestContext, request: ListOffsetsRequest) -> Response:
    """Lookups by time and MAX_TIMESTAMP read the log, perhaps from object
    storage (and scan it if retention removed the largest timestamp): such
    a request runs on the admin thread, so the event loop keeps serving the
    other connections. The others are answered from memory, on the loop."""
    if any(reads_the_log(p.timestamp) for topic in request.topics for p in topic.partitions):
        return off_loop(context, lambda: _list_offsets(context, request))
    return _list_offsets(context, request)


def _list_offsets(context: RequestContext, request: ListOffsetsRequest) -> dict[str, Any]:
    isolation = isolation_level(request)
    if isolation is None:
        return _refused(request, UNKNOWN_ISOLATION_LEVEL)
    refused = authorize.refused_topics(
        context, AclOperation.DESCRIBE, (t.name for t in request.topics)
    )
    duplicated = _duplicated_partitions(request)
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            # Kafka's handleListOffsetRequest and ReplicaManager.fetchOffset,
            # last word first: authorization, then a partition named twice
            # (every entry of it, and no lookup: one by time reads the log),
            # then a timestamp the version does not know, then the lookup.
            code = KafkaCode.NONE
            if unsupported_timestamp(partition.timestamp, context.version):
                code = KafkaCode.UNSUPPORTED_VERSION
            if (topic.name, partition.partition_index) in duplicated:
                code = KafkaCode.INVALID_REQUEST
            if refused and topic.name in refused:
                code = KafkaCode.TOPIC_AUTHORIZATION_FAILED
            found = _NOT_FOUND
            if code == KafkaCode.NONE:
                code, found = _lookup(context, topic.name, partition, isolation)
            partitions.append(
                {
                    "partition_index": partition.partition_index,
                    "error_code": code,
                    "timestamp": found.timestamp,
                    "offset": found.offset,
                    "leader_epoch": found.leader_epoch,
                }
            )
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time": 0, "topics": topics}


def _refused(request: ListOffsetsRequest, code: KafkaCode) -> dict[str, Any]:
    """The whole request refused, as Kafka's ListOffsetsRequest.getErrorResponse
    answers it: every partition named gets ``code`` and no offset."""
    topics = [
        {
            "name": topic.name,
            "partitions": [
                {
                    "partition_index": p.partition_index,
                    "error_code": code,
                    "timestamp": -1,
                    "offset": -1,
                    "leader_epoch": -1,
                }
                for p in topic.partitions
            ],
        }
        for topic in request.topics
    ]
    return {"throttle_time": 0, "topics": topics}


class _Found(NamedTuple):
    offset: int
    timestamp: int
    leader_epoch: int


_NOT_FOUND = _Found(-1, -1, -1)


def _lookup(
    context: RequestContext, topic: str, partition: Any, isolation: str
) -> tuple[KafkaCode, _Found]:
    """A partition's offset for a timestamp, with the leader epoch that
    wrote it (the current one for LATEST), as Kafka's
    Partition.fetchOffsetForTimestamp finds them: the partition must exist
    before its leader epoch is checked."""
    index = partition.partition_index
    current_leader_epoch = getattr(partition, "current_leader_epoch", -1)
    code, leader = leader_or_error(context, topic, index, current_leader_epoch)
    if code != KafkaCode.NONE:
        return code, _NOT_FOUND
    engine = context.engine
    if leader is None:  # an internal topic's
        code, offset = internal_list_offset(index, partition.timestamp)
        return code, _Found(offset, -1, engine.leader_epoch if offset >= 0 else -1)
    try:
        found = engine.list_offset(topic, index, partition.timestamp, isolation)
    except EngineError as error:
        return error_code(error), _NOT_FOUND
    if found.offset < 0:
        return KafkaCode.NONE, _Found(found.offset, found.timestamp, -1)
    if partition.timestamp == LATEST:
        epoch = engine.leader_epoch
    else:
        try:
            with store_errors(), ReadOfDeleted(leader):
                epoch = leader.epoch_for_offset(found.offset)
        except EngineError as error:  # the topic deleted since the lookup above
            return error_code(error), _NOT_FOUND
    return KafkaCode.NONE, _Found(found.offset, found.timestamp, epoch)


def _end_offset(context: RequestContext, topic: str, partition: Any) -> tuple[KafkaCode, int, int]:
    """(error code, epoch, end offset) of a partition's ``leader_epoch``, as
    ReplicaManager.lastOffsetForLeaderEpoch answers it: the partition must
    exist (an internal topic's too) before its leader epoch is checked."""
    code, leader = leader_or_error(
        context, topic, partition.partition, partition.current_leader_epoch
    )
    if code != KafkaCode.NONE:
        return code, -1, -1
    if leader is None:  # an internal topic's
        epoch, end = internal_end_offset_for_epoch(
            partition.leader_epoch, context.engine.leader_epoch
        )
    else:
        try:
            # Its stream read after the lookup: a deletion since is Kafka's
            # UNKNOWN_TOPIC_OR_PARTITION, not a failed connection.
            with store_errors(), ReadOfDeleted(leader):
                epoch, end = leader.end_offset_for_epoch(partition.leader_epoch)
        except EngineError as error:
            return error_code(error), -1, -1
    return KafkaCode.NONE, epoch, end


def _duplicated_partitions(request: ListOffsetsRequest) -> set[tuple[str, int]]:
    """The partitions a ListOffsets names more than once (Kafka's
    ListOffsetsRequest.duplicatePartitions)."""
    seen: set[tuple[str, int]] = set()
    duplicated: set[tuple[str, int]] = set()
    for topic in request.topics:
        for partition in topic.partitions:
            key = (topic.name, partition.partition_index)
            (duplicated if key in seen else seen).add(key)
    return duplicated


@handles(
    ApiKey.OFFSET_FOR_LEADER_EPOCH,
    2,
    4,
    notes={
        2: "the end offset of a leader epoch, checked against the current one",
        3: "replica id",
        4: "flexible encoding",
    },
)
def handle_offset_for_leader_epoch(
    context: RequestContext, request: OffsetForLeaderEpochRequest
) -> dict[str, Any]:
    """The end offset of a leader epoch, which a client compares with its
    position after a leader change to detect a truncated log (KIP-320)."""
    refused = authorize.refused_topics(
        context, AclOperation.DESCRIBE, (t.topic for t in request.topics)
    )
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            code = KafkaCode.NONE
            if refused and topic.topic in refused:
                code = KafkaCode.TOPIC_AUTHORIZATION_FAILED
            epoch = end_offset = -1
            if code == KafkaCode.NONE:
                code, epoch, end_offset = _end_offset(context, topic.topic, partition)
            partitions.append(
                {
                    "error_code": code,
                    "partition": partition.partition,
                    "leader_epoch": epoch,
                    "end_offset": end_offset,
                }
            )
        topics.append({"topic": topic.topic, "partitions": partitions})
    return {"throttle_time": 0, "topics": topics}


# On the admin thread: each partition's new log start is made durable by a
# checkpoint (its whole producer table, in parts when large: docs/design/0112)
# and a trim, each waited for; the event loop serves the other connections.
@handles_off_loop(
    ApiKey.DELETE_RECORDS,
    0,
    2,
    notes={
        0: "moves the log start offset, answered on the admin thread (each partition "
        "waits for a durable checkpoint and trim)",
        2: "flexible encoding",
    },
)
def handle_delete_records(context: RequestContext, request: DeleteRecordsRequest) -> dict[str, Any]:
    engine = context.engine
    refused = authorize.refused_topics(
        context, AclOperation.DELETE, (t.name for t in request.topics)
    )
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            if refused and topic.name in refused:
                low, code = -1, KafkaCode.TOPIC_AUTHORIZATION_FAILED
            else:
                try:
                    low = engine.delete_records(
                        topic.name, partition.partition_index, partition.offset
                    )
                    code = KafkaCode.NONE
                except EngineError as error:
                    low, code = -1, error_code(error)
            partitions.append(
                {
                    "partition_index": partition.partition_index,
                    "low_watermark": low,
                    "error_code": code,
                }
            )
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time": 0, "topics": topics}
