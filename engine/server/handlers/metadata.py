"""Metadata and DescribeCluster: where things are.

This server is the one broker of its cluster and the leader of every
partition; Metadata says so, with the leader epoch clients use to detect a
restart (KIP-320). A Metadata request naming unknown topics, with
auto-creation on, creates them all in one step on the admin thread
(context.off_loop), within Kafka's bound of records per request; a
response about many topics is built and encoded there too. Kafka's
internal topic names are listed as internal and never auto-created
(engine/internal_topics.py).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import EngineError, error_code
from engine.internal_topics import (
    INTERNAL_TOPIC_IDS,
    INTERNAL_TOPIC_PARTITIONS,
    INTERNAL_TOPICS,
    is_internal_topic,
)
from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import EncodedItems, Sink, item_encoder
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import (
    AUTHORIZED_OPERATIONS_OMITTED,
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
)
from engine.server.context import Body, RequestContext, Response, off_loop
from engine.server.handlers.common import (
    authorized_operations,
    auto_create_topics,
    topic_names_by_id,
    uuid_bytes,
)
from engine.server.handlers.registry import handles

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import DescribeClusterRequest, MetadataRequest

MANY_TOPICS = 1000
"""A response about more topics than this is built on the admin thread
(DescribeTopicPartitions' too)."""
_FIRST_TOPIC_ID_VERSION = 12
"""Metadata requests carry topic ids from v10, but may use them from v12."""


@handles(
    ApiKey.METADATA,
    0,
    13,
    notes={
        0: "an empty topic list means every topic",
        1: "null means every topic, empty means none",
        4: "allow_auto_topic_creation",
        8: "authorized operations of the cluster and of each topic (KIP-430)",
        9: "flexible encoding",
        10: "topic ids in answers; a request naming one is refused (INVALID_REQUEST), as in Kafka",
        12: "topics named by id",
        13: "a top-level error code (KIP-1102): NONE (Kafka 4.0 answers no other)",
    },
)
def handle_metadata(context: RequestContext, request: MetadataRequest) -> Response:
    engine = context.engine
    requested = request.topics
    if requested and context.version < _FIRST_TOPIC_ID_VERSION:
        refused = _refuse_topic_ids(requested)
        if refused is not None:
            return refused
    if requested is None or (context.version == 0 and not requested):
        every = [*engine.list_topics(), *INTERNAL_TOPICS]
        hidden = authorize.refused_topics(context, AclOperation.DESCRIBE, every)
        wanted: list[tuple[str | None, bytes]] = [(n, b"") for n in every if n not in hidden]
        undescribable: dict[str, KafkaCode] = {}
    else:
        # Each topic once, however often named, as Kafka's
        # handleTopicMetadataRequest takes the request's topics as a set:
        # else a request naming a large topic a thousand times is answered
        # a thousand times its size.
        wanted = list(
            dict.fromkeys((t.name, uuid_bytes(getattr(t, "topic_id", None))) for t in requested)
        )
        undescribable = dict.fromkeys(
            authorize.refused_topics(
                context, AclOperation.DESCRIBE, (n for n, _ in wanted if n is not None)
            ),
            KafkaCode.TOPIC_AUTHORIZATION_FAILED,
        )
    if (
        getattr(request, "allow_auto_topic_creation", True)
        and engine.broker_configs.auto_create_topics
    ):
        unknown = list(
            dict.fromkeys(
                n
                for n, _ in wanted
                if n is not None
                and not engine.has_topic(n)
                and not is_internal_topic(n)
                and n not in undescribable
            )
        )
        if unknown:
            return off_loop(
                context,
                lambda: _metadata(
                    context, wanted, undescribable | auto_create_topics(context, unknown), request
                ),
            )
    if len(wanted) > MANY_TOPICS:  # every topic of a large engine, say: a long encode
        return off_loop(context, lambda: _metadata(context, wanted, undescribable, request))
    return _metadata(context, wanted, undescribable, request)


def _metadata(
    context: RequestContext,
    wanted: list[tuple[str | None, bytes]],
    refused: dict[str, KafkaCode],
    request: MetadataRequest,
) -> Body:
    broker = context.broker
    topic_operations = getattr(request, "include_topic_authorized_operations", False)
    by_id: dict[bytes, str] | None = None
    topics = []
    for given, topic_id in wanted:
        name = given
        if name is None:
            by_id = by_id if by_id is not None else topic_names_by_id(context)
            name = by_id.get(topic_id)
            if name is None:
                topics.append(_topic_error(None, topic_id, KafkaCode.UNKNOWN_TOPIC_ID))
                continue
            if not authorize.allowed(context, AclOperation.DESCRIBE, authorize.TOPIC, name):
                denied = KafkaCode.TOPIC_AUTHORIZATION_FAILED
                topics.append(_topic_error(None, topic_id, denied))
                continue
        code = refused.get(name)
        if code is not None:
            described = _topic_error(name, bytes(16), code)
        else:
            described = _describe_topic(context, name)
        described["topic_authorized_operations"] = authorized_operations(
            context, ResourceType.TOPIC, name, topic_operations
        )
        topics.append(described)
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "brokers": [broker.describe()],
        "cluster_id": context.server.cluster_id,
        "controller_id": broker.node_id,
        "topics": topics,
        "cluster_authorized_operations": authorized_operations(
            context,
            ResourceType.CLUSTER,
            CLUSTER_NAME,
            getattr(request, "include_cluster_authorized_operations", False),
        ),
    }


class _RequestedTopic(Protocol):
    @property
    def name(self) -> str | None: ...


def _refuse_topic_ids(requested: Sequence[_RequestedTopic]) -> dict[str, Any] | None:
    """Versions 10 and 11 carry a topic id and a nullable name but may use
    neither: as Kafka does, every topic is answered INVALID_REQUEST (a null
    name, which these responses cannot carry, as "")."""
    zero = bytes(16)
    ids = [uuid_bytes(getattr(t, "topic_id", None)) for t in requested]
    if all(t.name is not None for t in requested) and all(i == zero for i in ids):
        return None
    code = KafkaCode.INVALID_REQUEST
    topics = [_topic_error(t.name or "", i, code) for t, i in zip(requested, ids, strict=True)]
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "brokers": [],
        "cluster_id": None,
        "controller_id": -1,
        "topics": topics,
        "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def _describe_topic(context: RequestContext, name: str) -> dict[str, Any]:
    engine = context.engine
    internal = is_internal_topic(name)
    try:
        if internal:
            topic_id, count = INTERNAL_TOPIC_IDS[name], INTERNAL_TOPIC_PARTITIONS
        else:
            topic_id, count = engine.topic_shape(name)
    except EngineError as error:
        return _topic_error(name, bytes(16), error_code(error))
    node = context.server.broker.node_id
    return {
        "error_code": KafkaCode.NONE,
        "name": name,
        "topic_id": topic_id,
        "is_internal": internal,
        "partitions": partitions_of(context.version, node, engine.leader_epoch, count),
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


def partition_entry(index: int, node: int, epoch: int) -> dict[str, Any]:
    """One partition as Metadata (and DescribeTopicPartitions) describes
    it: this broker leads it, alone in its replicas and in-sync replicas;
    with one replica there is no other to be eligible for leadership
    (KIP-966's ELR lists are empty, not null, as Kafka's Replicas.toList
    of an empty ELR)."""
    return {
        "error_code": KafkaCode.NONE,
        "partition_index": index,
        "leader_id": node,
        "leader_epoch": epoch,
        "replica_nodes": [node],
        "isr_nodes": [node],
        "eligible_leader_replicas": [],
        "last_known_elr": [],
        "offline_replicas": [],
    }


def partitions_of(
    version: int,
    node: int,
    epoch: int,
    count: int,
    *,
    first: int = 0,
    api_key: ApiKey = ApiKey.METADATA,
) -> EncodedItems:
    """A topic's ``count`` partitions from index ``first``, encoded for
    ``api_key`` (Metadata or DescribeTopicPartitions) at ``version``.

    Every partition reads the same but for its index, so the entry is
    encoded once through the schema and the others are copies with their
    index written in: a topic of 10,000 partitions costs one join (about
    1 ms), not 10,000 walks of the schema on the event loop (about 30 ms,
    for each client that asks)."""
    prefix, suffix = _partition_template(api_key, version, node, epoch)
    entry = struct.Struct(f">{len(prefix)}si{len(suffix)}s").pack
    return EncodedItems(
        count, b"".join([entry(prefix, i, suffix) for i in range(first, first + count)])
    )


_PROBE_INDEX = 0x5A6B7C8D
"""An index whose four bytes appear nowhere else in an entry."""


@lru_cache(maxsize=64)
def _partition_template(
    api_key: ApiKey, version: int, node: int, epoch: int
) -> tuple[bytes, bytes]:
    """The bytes of a partition entry before and after its index, found by
    encoding one whose index is ``_PROBE_INDEX``; checked against an entry
    encoded through the schema, so that a schema where the index were not
    one plain int32 fails loudly here rather than answering wrong bytes."""
    write = item_encoder(response_schema(api_key, version), "topics", "partitions")

    def encoded(index: int) -> bytes:
        sink = Sink()
        write(sink, partition_entry(index, node, epoch))
        return b"".join(sink.finish())

    probe = encoded(_PROBE_INDEX)
    at = probe.index(_INDEX.pack(_PROBE_INDEX))
    prefix, suffix = probe[:at], probe[at + _INDEX.size :]
    if prefix + _INDEX.pack(7) + suffix != encoded(7):
        raise AssertionError(f"{api_key.name} v{version}: a partition's index is not a plain int32")
    return prefix, suffix


_INDEX = struct.Struct(">i")


def _topic_error(name: str | None, topic_id: bytes, code: int) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


_BROKERS_ENDPOINT = 1


@handles(
    ApiKey.DESCRIBE_CLUSTER,
    0,
    2,
    notes={
        0: "this broker, the cluster id and authorized operations (KIP-430)",
        1: "endpoint type: brokers only (controllers: UNSUPPORTED_ENDPOINT_TYPE)",
        2: "include_fenced_brokers (KIP-1073): this broker, never fenced, either way",
    },
)
def handle_describe_cluster(
    context: RequestContext, request: DescribeClusterRequest
) -> dict[str, Any]:
    broker = context.broker
    endpoint_type = getattr(request, "endpoint_type", _BROKERS_ENDPOINT)
    if endpoint_type != _BROKERS_ENDPOINT:
        return {
            "error_code": KafkaCode.UNSUPPORTED_ENDPOINT_TYPE,
            "error_message": "this node serves brokers only",
            "endpoint_type": endpoint_type,
            "cluster_id": context.server.cluster_id,
            "controller_id": -1,
            "brokers": [],
        }
    return {
        "throttle_time": 0,
        "error_code": KafkaCode.NONE,
        "error_message": None,
        "endpoint_type": _BROKERS_ENDPOINT,
        "cluster_id": context.server.cluster_id,
        "controller_id": broker.node_id,
        "brokers": [
            {
                "broker_id": broker.node_id,
                "host": broker.host,
                "port": broker.port,
                "rack": None,
                "is_fenced": False,
            }
        ],
        "cluster_authorized_operations": authorized_operations(
            context,
            ResourceType.CLUSTER,
            CLUSTER_NAME,
            request.include_cluster_authorized_operations,
        ),
    }
