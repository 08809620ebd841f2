"""Which source topics the mirror copies, and their twins on the target:
the same name, the same partition count, and the topic configs that mean
the same on a Kafka cluster.

A source topic that gains partitions grows its target twin to the same
count (CreatePartitions), as MirrorMaker 2 does; the new partitions are then
copied from their start like the others. A target topic with more
partitions than its source is left as it is: records go partition for
partition, so the extra ones stay empty.

Copied (when set on the source topic itself, not inherited from its broker,
so the target's own defaults stay in force otherwise): cleanup.policy,
retention.ms, retention.bytes, delete.retention.ms, min.compaction.lag.ms,
max.compaction.lag.ms, compression.type, max.message.bytes,
min.insync.replicas. Not copied: tidelog.* (this engine's own: durability
level, schema and masking rules), message.timestamp.type (the target topic
is always CreateTime, so a LogAppendTime source's append times survive as
the records' timestamps), message.timestamp.*.max.ms (history would be
refused as too old), segment.* and index settings (the target's storage
layout, not the data's meaning).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.mirror.errors import ClusterUnavailable, MirrorError, PartitionsRefused, TopicMismatch
from engine.mirror.kafka import REQUEST_TIMEOUT_S, broker_error
from engine.mirror.masked import describe_topics, masked_or_refused
from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC
from engine.mirror.settings import MirrorSettings

log = logging.getLogger("tidelog.mirror")

COPIED_CONFIGS = frozenset(
    {
        "cleanup.policy",
        "retention.ms",
        "retention.bytes",
        "delete.retention.ms",
        "min.compaction.lag.ms",
        "max.compaction.lag.ms",
        "compression.type",
        "max.message.bytes",
        "min.insync.replicas",
    }
)

_TOPIC_SET = 1  # confluent_kafka.admin.ConfigSource.DYNAMIC_TOPIC_CONFIG
_TOPIC_EXISTS = 36  # TOPIC_ALREADY_EXISTS
_INVALID_PARTITIONS = 37  # also what a topic already that wide answers


@dataclass(frozen=True, slots=True)
class SourceTopic:
    name: str
    partitions: int
    configs: dict[str, str]
    masked: bool = False
    """Whether the source masks the topic for the mirror's principal
    (engine/mirror/masked.py): then its copy would hold masks."""


def source_topics(kafka: Any, admin: Any, settings: MirrorSettings) -> dict[str, int]:
    """The source's topics the settings match, and their partition counts."""
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    except kafka.KafkaException as error:
        raise ClusterUnavailable(f"listing the source's topics: {broker_error(error)}") from error
    return {
        name: len(topic.partitions)
        for name, topic in sorted(metadata.topics.items())
        if topic.error is None and topic.partitions and settings.mirrors_topic(name)
    }


def with_configs(kafka: Any, admin: Any, found: dict[str, int]) -> list[SourceTopic]:
    """The topics with their own settings among COPIED_CONFIGS, and whether
    the source masks each for the mirror's principal; none for a cluster
    that does not describe configs (one without a controller, as
    librdkafka's mock cluster). A topic whose configs the source refuses
    to describe is taken as masked: it cannot be shown not to be."""
    names = sorted(found)
    metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    described: dict[str, Mapping[str, Any] | None] = {}
    if names and metadata.controller_id in metadata.brokers:
        described = describe_topics(kafka, admin, names, REQUEST_TIMEOUT_S)
    return [
        SourceTopic(
            name,
            found[name],
            _copied(described.get(name) or {}),
            name in described and masked_or_refused(described[name]),
        )
        for name in names
    ]


def _copied(described: Mapping[str, Any]) -> dict[str, str]:
    """The COPIED_CONFIGS set on the topic itself, from its described configs."""
    return {
        name: entry.value
        for name, entry in described.items()
        if name in COPIED_CONFIGS and entry.source == _TOPIC_SET and entry.value is not None
    }


def ensure_target_topics(
    kafka: Any, admin: Any, topics: list[SourceTopic], known: dict[str, int]
) -> list[str]:
    """Creates each topic on the target that ``known`` (name -> partitions,
    updated here) lacks, and the offset-syncs topic, and grows each target
    topic with fewer partitions than its source to the source's count.
    Returns the names of the topics grown (whose new partitions clients
    learn of by asking for the topic's metadata again)."""
    wanted = [t for t in topics if t.name not in known]
    if OFFSET_SYNCS_TOPIC not in known:
        wanted.append(
            SourceTopic(OFFSET_SYNCS_TOPIC, 1, {"cleanup.policy": "delete", "retention.ms": "-1"})
        )
    if wanted:
        _create(kafka, admin, wanted)
        known.update(target_partitions(kafka, admin))
    narrow = [t for t in topics if known.get(t.name, 0) < t.partitions]
    if narrow:
        _grow(kafka, admin, narrow, known)
    return [t.name for t in narrow]


def _grow(kafka: Any, admin: Any, topics: list[SourceTopic], known: dict[str, int]) -> None:
    """CreatePartitions on the target, each topic to its source's count."""
    metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    if metadata.controller_id not in metadata.brokers:
        # No controller to grow topics (librdkafka's mock cluster).
        topic = topics[0]
        raise TopicMismatch(
            f"target topic {topic.name!r} has {known.get(topic.name, 0)} partitions, the source"
            f" {topic.partitions}, and the target cannot add partitions: add them on the target"
            " (kafka-topics --alter --partitions)"
        )
    new = [kafka.admin.NewPartitions(t.name, t.partitions) for t in topics]
    futures = admin.create_partitions(new, request_timeout=REQUEST_TIMEOUT_S)
    refused = {}
    for name, future in futures.items():
        try:
            future.result(REQUEST_TIMEOUT_S)
            log.info("grew %s on the target", name)
        except kafka.KafkaException as error:
            reason = error.args[0]
            if reason.code() != _INVALID_PARTITIONS and (reason.retriable() or reason.code() < 0):
                raise ClusterUnavailable(
                    f"adding partitions to topic {name!r} on the target: {broker_error(error)}"
                ) from error
            refused[name] = error
    if refused:
        # INVALID_PARTITIONS from a topic another session grew meanwhile is
        # no refusal: the count read again says.
        known.update(target_partitions(kafka, admin))
    for topic in topics:
        if topic.name not in refused:
            known[topic.name] = max(known.get(topic.name, 0), topic.partitions)
        elif known.get(topic.name, 0) < topic.partitions:
            reason = refused[topic.name]
            raise PartitionsRefused(
                f"the target refused to grow topic {topic.name!r} from"
                f" {known.get(topic.name, 0)} to the source's {topic.partitions} partitions"
                f" ({broker_error(reason)}): grow it on the target (kafka-topics --alter"
                f" --partitions {topic.partitions}) or allow the mirror's principal to alter it"
            ) from reason


def target_partitions(kafka: Any, admin: Any) -> dict[str, int]:
    """The target's topics and their partition counts."""
    try:
        metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    except kafka.KafkaException as error:
        raise ClusterUnavailable(f"listing the target's topics: {broker_error(error)}") from error
    return {n: len(t.partitions) for n, t in metadata.topics.items() if t.error is None}


def _create(kafka: Any, admin: Any, topics: list[SourceTopic]) -> None:
    metadata = admin.list_topics(timeout=REQUEST_TIMEOUT_S)
    if metadata.controller_id not in metadata.brokers:
        # No controller to create topics (librdkafka's mock cluster): the
        # target creates them on first use, with its default partitions.
        for topic in topics:
            admin.list_topics(topic.name, timeout=REQUEST_TIMEOUT_S)
        return
    new = [
        kafka.admin.NewTopic(
            t.name,
            t.partitions,
            replication_factor=-1,  # the target broker's default
            config={**t.configs, "message.timestamp.type": "CreateTime"},
        )
        for t in topics
    ]
    for name, future in admin.create_topics(new, request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            future.result(REQUEST_TIMEOUT_S)
            log.info("created %s on the target", name)
        except kafka.KafkaException as error:
            reason = error.args[0]
            if reason.code() == _TOPIC_EXISTS:
                continue
            if reason.retriable() or reason.code() < 0:
                raise ClusterUnavailable(
                    f"creating topic {name!r} on the target: {broker_error(error)}"
                ) from error
            raise MirrorError(
                f"the target refused to create topic {name!r}: {broker_error(error)}"
            ) from error
