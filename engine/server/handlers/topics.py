"""CreateTopics, DeleteTopics and CreatePartitions."""

from __future__ import annotations

from typing import Any

from engine.config import ConfigEntry
from engine.errors import ERROR_CODES, EngineError
from engine.server.context import NONE, RequestContext, error_code, error_message
from engine.server.handlers.common import topic_names_by_id, uuid_bytes
from engine.server.handlers.configs import config_type_code

_MAX_RECORDS_PER_REQUEST = 10_000
"""Kafka's controller refuses an operation that would write more metadata
records than this (one per topic, one per partition) with POLICY_VIOLATION;
the bound also keeps one request from holding this server for hours."""
_TOO_LARGE = "Unable to perform excessively large batch operation."


def _partitions_wanted(context: RequestContext, topic: Any) -> int:
    count = len(topic.assignments) or topic.num_partitions
    return context.engine.config.default_partitions if count == -1 else max(count, 0)


def handle_create_topics(context: RequestContext, request: Any) -> dict[str, Any]:
    engine = context.engine
    node = context.server.broker.node_id
    records = sum(1 + _partitions_wanted(context, topic) for topic in request.topics)
    if records > _MAX_RECORDS_PER_REQUEST:
        refused = {
            "topic_id": bytes(16),
            "error_code": ERROR_CODES["POLICY_VIOLATION"],
            "error_message": _TOO_LARGE,
            "num_partitions": -1,
            "replication_factor": -1,
            "configs": None,
        }
        return {"throttle_time": 0, "topics": [{"name": t.name, **refused} for t in request.topics]}
    topics = []
    for topic in request.topics:
        result: dict[str, Any] = {"name": topic.name, "topic_id": bytes(16)}
        try:
            if any(node not in a.broker_ids for a in topic.assignments):
                raise _InvalidAssignment(f"this cluster has one broker, node {node}")
            partitions = len(topic.assignments) or topic.num_partitions
            described = engine.create_topic(
                topic.name,
                partitions,
                {c.name: c.value for c in topic.configs},
                replication_factor=topic.replication_factor,
                validate_only=request.validate_only,
            )
        except EngineError as error:
            result.update(
                error_code=error_code(error),
                error_message=error_message(error),
                num_partitions=-1,
                replication_factor=-1,
                configs=None,
            )
        else:
            result.update(
                topic_id=described.topic_id,
                error_code=NONE,
                error_message=None,
                num_partitions=len(described.partitions),
                replication_factor=1,
                configs=[_created_config(entry) for entry in described.configs],
            )
        topics.append(result)
    return {"throttle_time": 0, "topics": topics}


class _InvalidAssignment(EngineError):
    kafka_error = "INVALID_REPLICA_ASSIGNMENT"


def _created_config(entry: ConfigEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": int(entry.source),
        "is_sensitive": entry.sensitive,
        "config_type": config_type_code(entry),
    }


def handle_delete_topics(context: RequestContext, request: Any) -> dict[str, Any]:
    engine = context.engine
    if context.version >= 6:
        wanted = [(t.name, uuid_bytes(t.topic_id)) for t in request.topics]
    else:
        wanted = [(name, bytes(16)) for name in request.topic_names]
    by_id: dict[bytes, str] | None = None
    responses = []
    for given, given_id in wanted:
        name, topic_id = given, given_id
        if name is None:
            by_id = by_id if by_id is not None else topic_names_by_id(context)
            name = by_id.get(topic_id)
            if name is None:
                responses.append(
                    {
                        "name": None,
                        "topic_id": topic_id,
                        "error_code": ERROR_CODES["UNKNOWN_TOPIC_ID"],
                        "error_message": "no topic has this id",
                    }
                )
                continue
        try:
            topic_id = engine.topic_id(name)
            engine.delete_topic(name)
            code, message = NONE, None
        except EngineError as error:
            code, message = error_code(error), error_message(error)
        responses.append(
            {"name": name, "topic_id": topic_id, "error_code": code, "error_message": message}
        )
    return {"throttle_time": 0, "responses": responses}


def handle_create_partitions(context: RequestContext, request: Any) -> dict[str, Any]:
    engine = context.engine
    existing = set(engine.list_topics())  # an unknown topic fails on its own below
    added = 0
    for topic in request.topics:
        if topic.name in existing:
            added += max(topic.count - engine.partition_count(topic.name), 0)
    if added > _MAX_RECORDS_PER_REQUEST:
        code = ERROR_CODES["POLICY_VIOLATION"]
        return {
            "throttle_time": 0,
            "results": [
                {"name": t.name, "error_code": code, "error_message": _TOO_LARGE}
                for t in request.topics
            ],
        }
    results = []
    for topic in request.topics:
        try:
            engine.create_partitions(topic.name, topic.count, validate_only=request.validate_only)
            code, message = NONE, None
        except EngineError as error:
            code, message = error_code(error), error_message(error)
        results.append({"name": topic.name, "error_code": code, "error_message": message})
    return {"throttle_time": 0, "results": results}
