"""Metadata and DescribeCluster: where things are.

This server is the one broker of its cluster and the leader of every
partition; Metadata says so, with the leader epoch clients use to detect a
restart (KIP-320).
"""

from __future__ import annotations

import contextlib
from typing import Any

from engine.errors import ERROR_CODES, EngineError, TopicExists, UnknownTopic
from engine.server.context import NONE, RequestContext, error_code
from engine.server.handlers.common import topic_names_by_id, uuid_bytes

_AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
_FIRST_TOPIC_ID_VERSION = 12
"""Metadata requests carry topic ids from v10, but may use them from v12."""


def handle_metadata(context: RequestContext, request: Any) -> dict[str, Any]:
    engine = context.engine
    broker = context.server.broker
    requested = request.topics
    if requested and context.version < _FIRST_TOPIC_ID_VERSION:
        refused = _refuse_topic_ids(requested)
        if refused is not None:
            return refused
    if requested is None or (context.version == 0 and not requested):
        wanted: list[tuple[str | None, bytes]] = [(n, b"") for n in engine.list_topics()]
    else:
        wanted = [(t.name, uuid_bytes(getattr(t, "topic_id", None))) for t in requested]
    auto_create = getattr(request, "allow_auto_topic_creation", True)
    by_id: dict[bytes, str] | None = None
    topics = []
    for given, topic_id in wanted:
        name = given
        if name is None:
            by_id = by_id if by_id is not None else topic_names_by_id(context)
            name = by_id.get(topic_id)
            if name is None:
                topics.append(_topic_error(None, topic_id, ERROR_CODES["UNKNOWN_TOPIC_ID"]))
                continue
        topics.append(_describe_topic(context, name, auto_create))
    return {
        "throttle_time": 0,
        "brokers": [broker.describe()],
        "cluster_id": context.server.cluster_id,
        "controller_id": broker.node_id,
        "topics": topics,
        "cluster_authorized_operations": _AUTHORIZED_OPERATIONS_OMITTED,
    }


def _refuse_topic_ids(requested: Any) -> dict[str, Any] | None:
    """Versions 10 and 11 carry a topic id and a nullable name but may use
    neither: as Kafka does, every topic is answered INVALID_REQUEST (a null
    name, which these responses cannot carry, as "")."""
    zero = bytes(16)
    ids = [uuid_bytes(getattr(t, "topic_id", None)) for t in requested]
    if all(t.name is not None for t in requested) and all(i == zero for i in ids):
        return None
    code = ERROR_CODES["INVALID_REQUEST"]
    topics = [_topic_error(t.name or "", i, code) for t, i in zip(requested, ids, strict=True)]
    return {
        "throttle_time": 0,
        "brokers": [],
        "cluster_id": None,
        "controller_id": -1,
        "topics": topics,
        "cluster_authorized_operations": _AUTHORIZED_OPERATIONS_OMITTED,
    }


def _describe_topic(context: RequestContext, name: str, auto_create: bool) -> dict[str, Any]:
    engine = context.engine
    try:
        count = _partition_count(context, name, auto_create)
        topic_id = engine.topic_id(name)
    except EngineError as error:
        return _topic_error(name, bytes(16), error_code(error))
    node = context.server.broker.node_id
    epoch = engine.leader_epoch
    partitions = [
        {
            "error_code": NONE,
            "partition_index": index,
            "leader_id": node,
            "leader_epoch": epoch,
            "replica_nodes": [node],
            "isr_nodes": [node],
            "offline_replicas": [],
        }
        for index in range(count)
    ]
    return {
        "error_code": NONE,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": partitions,
        "topic_authorized_operations": _AUTHORIZED_OPERATIONS_OMITTED,
    }


def _partition_count(context: RequestContext, name: str, auto_create: bool) -> int:
    engine = context.engine
    try:
        engine.topic_config(name)  # never creates the topic, unlike partition_count
    except UnknownTopic:
        if not (auto_create and engine.config.auto_create_topics):
            raise
        with contextlib.suppress(TopicExists):  # created meanwhile by another request
            engine.create_topic(name)
    return engine.partition_count(name)


def _topic_error(name: str | None, topic_id: bytes, code: int) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
        "topic_authorized_operations": _AUTHORIZED_OPERATIONS_OMITTED,
    }


_BROKERS_ENDPOINT = 1


def handle_describe_cluster(context: RequestContext, request: Any) -> dict[str, Any]:
    broker = context.server.broker
    endpoint_type = getattr(request, "endpoint_type", _BROKERS_ENDPOINT)
    if endpoint_type != _BROKERS_ENDPOINT:
        return {
            "error_code": ERROR_CODES["UNSUPPORTED_ENDPOINT_TYPE"],
            "error_message": "this node serves brokers only",
            "endpoint_type": endpoint_type,
            "cluster_id": context.server.cluster_id,
            "controller_id": -1,
            "brokers": [],
        }
    return {
        "throttle_time": 0,
        "error_code": NONE,
        "error_message": None,
        "endpoint_type": _BROKERS_ENDPOINT,
        "cluster_id": context.server.cluster_id,
        "controller_id": broker.node_id,
        "brokers": [
            {"broker_id": broker.node_id, "host": broker.host, "port": broker.port, "rack": None}
        ],
        "cluster_authorized_operations": _AUTHORIZED_OPERATIONS_OMITTED,
    }
