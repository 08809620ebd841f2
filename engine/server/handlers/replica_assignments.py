"""Manual replica assignments of CreateTopics and CreatePartitions, checked
as Kafka's ReplicationControlManager checks them (createTopic,
createPartitions, validateManualPartitionAssignment) on a cluster of one
broker, where every partition has one replica: that broker's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode


class InvalidReplicaAssignment(EngineError):
    code = KafkaCode.INVALID_REPLICA_ASSIGNMENT


class AssignmentWithCounts(EngineError):
    """An assignment given with a partition count or replication factor:
    Kafka's CreateTopics takes one or the other."""

    code = KafkaCode.INVALID_REQUEST


class TopicAssignment(Protocol):
    """A partition's replicas as every version of CreateTopics assigns them."""

    @property
    def partition_index(self) -> int: ...
    @property
    def broker_ids(self) -> Sequence[int]: ...


class _PartitionAssignment(Protocol):
    @property
    def broker_ids(self) -> Sequence[int]: ...


def check_new_topic(
    assignments: Sequence[TopicAssignment],
    num_partitions: int,
    replication_factor: int,
    node: int,
) -> None:
    """A CreateTopics entry's assignments, if it has any: with -1 for the
    partition count and replication factor, each partition once and the
    indexes 0 to n-1, every replica list valid and as long as the first."""
    if not assignments:
        return
    if replication_factor != -1:
        raise AssignmentWithCounts(
            "A manual partition assignment was specified, but replication factor was not set to -1."
        )
    if num_partitions != -1:
        raise AssignmentWithCounts(
            "A manual partition assignment was specified, but numPartitions was not set to -1."
        )
    indexes: set[int] = set()
    replicas: int | None = None
    for assignment in assignments:
        if assignment.partition_index in indexes:
            raise InvalidReplicaAssignment(
                "Found multiple manual partition assignments for partition "
                f"{assignment.partition_index}"
            )
        _check_replicas(assignment.broker_ids, node, replicas)
        replicas = len(assignment.broker_ids)
        indexes.add(assignment.partition_index)
    if indexes != set(range(len(indexes))):
        raise InvalidReplicaAssignment(
            "partitions should be a consecutive 0-based integer sequence"
        )


def check_added_partitions(
    assignments: Sequence[_PartitionAssignment] | None, added: int, node: int
) -> None:
    """A CreatePartitions entry's assignments, if not null: one for each
    partition added, each this broker alone (a topic's partitions have one
    replica)."""
    if assignments is None:
        return
    if len(assignments) != added:
        raise InvalidReplicaAssignment(
            f"Attempted to add {added} additional partition(s), but only "
            f"{len(assignments)} assignment(s) were specified."
        )
    for assignment in assignments:
        _check_replicas(assignment.broker_ids, node, 1)


def _check_replicas(broker_ids: Sequence[int], node: int, replicas: int | None) -> None:
    if not broker_ids:
        raise InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list."
        )
    previous: int | None = None
    for broker in sorted(broker_ids):
        if broker != node:
            raise InvalidReplicaAssignment(
                f"The manual partition assignment includes broker {broker}, but no such "
                "broker is registered."
            )
        if broker == previous:
            raise InvalidReplicaAssignment(
                f"The manual partition assignment includes the broker {broker} more than once."
            )
        previous = broker
    if replicas is not None and len(broker_ids) != replicas:
        raise InvalidReplicaAssignment(
            f"The manual partition assignment includes a partition with {len(broker_ids)} "
            "replica(s), but this is not consistent with previous partitions, which have "
            f"{replicas} replica(s)."
        )
