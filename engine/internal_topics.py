"""Kafka's internal topic names, reserved: ``__consumer_offsets`` and
``__transaction_state``.

A Kafka broker keeps group offsets and transaction state in these topics
and lists them in Metadata with ``is_internal`` set; clients rely on that
to leave them out of pattern subscriptions (``exclude.internal.topics``)
and out of ``list_topics``. tidelog keeps that state elsewhere (its group
and transaction coordinators' state logs), so these topics hold no records
here. They are answered as Kafka's would be, never created as ordinary
topics (docs/server.md, "Internal topics"):

- Metadata lists them, internal, with INTERNAL_TOPIC_PARTITIONS partitions
  and a topic id derived from the name;
- CreateTopics answers TOPIC_ALREADY_EXISTS, Produce INVALID_TOPIC_EXCEPTION
  ("Cannot append to internal topic", Kafka's ReplicaManager), DeleteRecords
  of one of their partitions INVALID_TOPIC_EXCEPTION as well ("Cannot delete
  records of internal topic");
- Fetch and ListOffsets see an empty partition: offsets 0;
- OffsetCommit and TxnOffsetCommit take offsets of their partitions;
  AddPartitionsToTxn refuses them TOPIC_AUTHORIZATION_FAILED;
- DescribeConfigs describes them with the overrides Kafka's coordinators
  create them with (INTERNAL_TOPIC_CONFIGS).
"""

from __future__ import annotations

import uuid

from engine.leader_epochs import as_a_leader_holds_it, end_offset_for_epoch
from engine.offset_lookup import EARLIEST, EARLIEST_LOCAL, EARLIEST_PENDING_UPLOAD, LATEST
from engine.partition import PartitionFetch
from engine.protocol.kafka_code import KafkaCode

CONSUMER_OFFSETS = "__consumer_offsets"
TRANSACTION_STATE = "__transaction_state"
INTERNAL_TOPICS = (CONSUMER_OFFSETS, TRANSACTION_STATE)

INTERNAL_TOPIC_PARTITIONS = 1
"""The partitions Metadata reports for each (Kafka's offsets.topic.num.partitions
defaults to 50; with no records to spread, one is enough)."""

INTERNAL_TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    # Kafka's GroupCoordinatorService.groupMetadataTopicConfigs, with the
    # default offsets.topic.segment.bytes.
    CONSUMER_OFFSETS: {
        "cleanup.policy": "compact",
        "compression.type": "producer",
        "segment.bytes": "104857600",
    },
    # Kafka's TransactionStateManager.transactionTopicConfigs, with the
    # default transaction.state.log.segment.bytes and a one-broker min ISR.
    TRANSACTION_STATE: {
        "unclean.leader.election.enable": "false",
        "compression.type": "uncompressed",
        "cleanup.policy": "compact",
        "min.insync.replicas": "1",
        "segment.bytes": "104857600",
    },
}
"""The per-topic overrides DescribeConfigs reports for each."""

_ID_NAMESPACE = uuid.UUID("6f1c3a52-2d3b-4c55-9a57-0c1d8e6b7f20")

INTERNAL_TOPIC_IDS = {name: uuid.uuid5(_ID_NAMESPACE, name).bytes for name in INTERNAL_TOPICS}
"""Stable topic ids: clients that fetch by id (Fetch v13+) find the name."""


def is_internal_topic(name: str | None) -> bool:
    return name in INTERNAL_TOPIC_IDS


def internal_partition_count(name: str) -> int | None:
    """The partitions of an internal topic as Metadata lists them (None for
    any other name): a group may commit offsets of them, as in Kafka."""
    return INTERNAL_TOPIC_PARTITIONS if is_internal_topic(name) else None


def append_refusal(name: str) -> str:
    """Kafka's message for a produce to an internal topic."""
    return f"Cannot append to internal topic {name}"


def refuses_record_deletion(name: str, partition: int) -> bool:
    """Whether DeleteRecords of (``name``, ``partition``) is refused as Kafka's
    ReplicaManager refuses it: a partition of an internal topic (one that
    does not exist stays UNKNOWN_TOPIC_OR_PARTITION, as in Kafka)."""
    return is_internal_topic(name) and 0 <= partition < INTERNAL_TOPIC_PARTITIONS


def internal_partition_exists(partition: int) -> bool:
    """Whether an internal topic has partition ``partition`` (looked up
    before a request's leader epoch is compared, as for any topic)."""
    return 0 <= partition < INTERNAL_TOPIC_PARTITIONS


def internal_end_offset_for_epoch(epoch: int, current: int) -> tuple[int, int]:
    """OffsetForLeaderEpoch of an internal topic's partition: an empty log
    whose only epoch is the leader's own, begun at 0 (a client validating
    its position there after a restart must get an answer, as from Fetch)."""
    return end_offset_for_epoch(as_a_leader_holds_it((), current, 0, 0), epoch, 0)


def internal_fetch(
    partition: int, offset: int, committed: bool
) -> tuple[KafkaCode, PartitionFetch | None]:
    """A Fetch of an internal topic's partition: empty, offsets 0 (an offset
    past 0 is out of range, as in any empty partition)."""
    if not internal_partition_exists(partition):
        return KafkaCode.UNKNOWN_TOPIC_OR_PARTITION, None
    empty = PartitionFetch([], 0, 0, 0, 0, [] if committed else None)
    return (KafkaCode.NONE if offset == 0 else KafkaCode.OFFSET_OUT_OF_RANGE), empty


def internal_list_offset(partition: int, timestamp: int) -> tuple[KafkaCode, int]:
    """ListOffsets of an internal topic's partition: (error code, offset);
    the log start, the end, the local start and the first offset pending
    upload are all 0; nothing is found by time or tiered."""
    if not internal_partition_exists(partition):
        return KafkaCode.UNKNOWN_TOPIC_OR_PARTITION, -1
    known = (LATEST, EARLIEST, EARLIEST_LOCAL, EARLIEST_PENDING_UPLOAD)
    return KafkaCode.NONE, 0 if timestamp in known else -1
