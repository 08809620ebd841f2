"""The "groups" state log's keys and values (docs/groups.md, "Stored
state"): the one module that builds and reads them.

Six kinds of key, each a msgpack array whose first item names the kind:

- ``["group", group_id]``: a classic group's metadata, as Kafka's
  GroupMetadata record holds it (protocol type, generation, chosen
  protocol, leader, members with their metadata and assignments);
- ``["offset", group_id, topic, partition]``: a committed offset;
- ``["txn", producer_id, group_id, topic, partition]``: an offset a
  transaction committed and has not completed yet; ``nil`` once completed
  (and deleted after that);
- ``["consumer_group", group_id]``: a consumer group's (KIP-848) epochs
  and the topics it has seen;
- ``["consumer_member", group_id, member_id]``: one of its members, with
  its current and target assignments;
- ``["group_config", group_id]``: a group's config overrides (a GROUP
  config resource, KIP-848), whether or not the group exists.

Values are msgpack maps; a reader ignores keys it does not know, so later
versions may add some.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from engine.groups.assignors import TopicId
from engine.types import OffsetAndMetadata, TopicPartition

log = logging.getLogger("tidelog.groups")

FORMAT_VERSION = 1
GROUP = "group"
OFFSET = "offset"
TXN = "txn"
CONSUMER_GROUP = "consumer_group"
CONSUMER_MEMBER = "consumer_member"
GROUP_CONFIG = "group_config"


def classic_group_key(group_id: str) -> Hashable:
    return (GROUP, group_id)


def consumer_group_key(group_id: str) -> Hashable:
    return (CONSUMER_GROUP, group_id)


def consumer_member_key(group_id: str, member_id: str) -> Hashable:
    return (CONSUMER_MEMBER, group_id, member_id)


def group_config_key(group_id: str) -> Hashable:
    return (GROUP_CONFIG, group_id)


def offset_key(group_id: str, tp: TopicPartition) -> Hashable:
    return (OFFSET, group_id, tp.topic, tp.partition)


def txn_key(producer_id: int, group_id: str, tp: TopicPartition) -> Hashable:
    return (TXN, producer_id, group_id, tp.topic, tp.partition)


def group_of_key(key: Hashable) -> str | None:
    """The group id a key of this log belongs to (None: not one of its kinds)."""
    if not isinstance(key, tuple) or len(key) < 2:
        return None
    kind = key[0]
    if kind in (GROUP, OFFSET, CONSUMER_GROUP, CONSUMER_MEMBER, GROUP_CONFIG):
        return str(key[1])
    if kind == TXN and len(key) > 2:
        return str(key[2])
    return None


class StoredMember(NamedTuple):
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    metadata: bytes
    """The member's protocol metadata for the group's chosen protocol."""
    assignment: bytes


class StoredGroup(NamedTuple):
    protocol_type: str | None
    generation_id: int
    protocol_name: str | None
    leader: str | None
    state_timestamp: int
    """When the group entered the state it was stored in (ms since the epoch)."""
    members: list[StoredMember]

    def to_value(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "protocol_type": self.protocol_type,
            "generation": self.generation_id,
            "protocol": self.protocol_name,
            "leader": self.leader,
            "state_timestamp": self.state_timestamp,
            "members": [list(member) for member in self.members],
        }

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> StoredGroup:
        return cls(
            value["protocol_type"],
            value["generation"],
            value["protocol"],
            value["leader"],
            value["state_timestamp"],
            [StoredMember(*member[:8]) for member in value["members"]],
        )


class CommittedOffset(NamedTuple):
    """A committed offset as the coordinator keeps it."""

    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int
    """-1: expires by the group's retention (KIP-211); else when it expires
    (ms since the epoch), from an OffsetCommit v2-4 retention time."""
    sequence: int
    """The commit's place in the order of all commits: a completed
    transaction's offset replaces a committed one only if it is newer."""

    def public(self) -> OffsetAndMetadata:
        return OffsetAndMetadata(
            self.offset, self.leader_epoch, self.metadata, self.commit_timestamp
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "leader_epoch": self.leader_epoch,
            "metadata": self.metadata,
            "commit_timestamp": self.commit_timestamp,
            "expire_timestamp": self.expire_timestamp,
            "sequence": self.sequence,
        }

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> CommittedOffset:
        return cls(
            value["offset"],
            value["leader_epoch"],
            value["metadata"],
            value["commit_timestamp"],
            value["expire_timestamp"],
            value["sequence"],
        )


class PendingOffset(NamedTuple):
    """An offset committed in a transaction that has not completed."""

    producer_epoch: int
    offset: CommittedOffset

    def to_value(self) -> dict[str, Any]:
        return {"producer_epoch": self.producer_epoch, **self.offset.to_value()}

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> PendingOffset:
        return cls(value["producer_epoch"], CommittedOffset.from_value(value))


class StoredConsumerGroup(NamedTuple):
    """A consumer group (KIP-848) as stored; its members are stored apart."""

    epoch: int
    assignment_epoch: int
    topics: list[tuple[str, bytes, int]]
    """The subscribed topics' metadata the group epoch is for: name, topic id, partitions."""
    state_timestamp: int

    def to_value(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "epoch": self.epoch,
            "assignment_epoch": self.assignment_epoch,
            "topics": [list(topic) for topic in self.topics],
            "state_timestamp": self.state_timestamp,
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> StoredConsumerGroup:
        return cls(
            value["epoch"],
            value["assignment_epoch"],
            [(name, bytes(topic_id), count) for name, topic_id, count in value["topics"]],
            value["state_timestamp"],
        )


class StoredConsumerMember(NamedTuple):
    """A member of a consumer group (KIP-848) as stored."""

    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    topics: tuple[str, ...]
    regex: str | None
    assignor: str | None
    rebalance_timeout_ms: int
    epoch: int
    previous_epoch: int
    state: str
    assigned: dict[TopicId, frozenset[int]]
    revoking: dict[TopicId, frozenset[int]]
    target: dict[TopicId, frozenset[int]]
    classic: tuple[int, list[tuple[str, bytes]]] | None = None
    """A member of the classic protocol: its session timeout and its
    JoinGroup protocols (name, metadata), in its order of preference."""

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "instance_id": self.instance_id,
            "rack_id": self.rack_id,
            "client_id": self.client_id,
            "client_host": self.client_host,
            "topics": list(self.topics),
            "regex": self.regex,
            "assignor": self.assignor,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "epoch": self.epoch,
            "previous_epoch": self.previous_epoch,
            "state": self.state,
            "assigned": _partitions_value(self.assigned),
            "revoking": _partitions_value(self.revoking),
            "target": _partitions_value(self.target),
        }
        if self.classic is not None:
            timeout, protocols = self.classic
            value["classic"] = [timeout, [[name, metadata] for name, metadata in protocols]]
        return value

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> StoredConsumerMember:
        return cls(
            value["instance_id"],
            value["rack_id"],
            value["client_id"],
            value["client_host"],
            tuple(value["topics"]),
            value["regex"],
            value["assignor"],
            value["rebalance_timeout_ms"],
            value["epoch"],
            value["previous_epoch"],
            value["state"],
            _partitions_from_value(value["assigned"]),
            _partitions_from_value(value["revoking"]),
            _partitions_from_value(value["target"]),
            _classic_from_value(value.get("classic")),
        )


def _classic_from_value(value: Sequence[Any] | None) -> tuple[int, list[tuple[str, bytes]]] | None:
    if value is None:
        return None
    timeout, protocols = value
    return timeout, [(name, bytes(metadata)) for name, metadata in protocols]


def _partitions_value(partitions: dict[TopicId, frozenset[int]]) -> list[list[Any]]:
    return [[topic_id, sorted(ps)] for topic_id, ps in sorted(partitions.items())]


def _partitions_from_value(value: Sequence[Sequence[Any]]) -> dict[TopicId, frozenset[int]]:
    return {bytes(topic_id): frozenset(ps) for topic_id, ps in value}


class StoredGroupConfig(NamedTuple):
    """A group's config overrides: config name -> value, as set."""

    configs: dict[str, str]

    def to_value(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "configs": dict(sorted(self.configs.items()))}

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> StoredGroupConfig:
        return cls({str(name): str(v) for name, v in value["configs"].items()})


# -- reading a whole state log ------------------------------------------------------------


class StoredState(NamedTuple):
    """Everything a "groups" state log holds, read into its records."""

    classic_groups: dict[str, StoredGroup]
    offsets: list[tuple[str, TopicPartition, CommittedOffset]]
    """Committed offsets: group id, partition, offset."""
    pending: list[tuple[int, str, TopicPartition, PendingOffset]]
    """Offsets of open transactions: producer id, group id, partition, offset."""
    consumer_groups: dict[str, StoredConsumerGroup]
    consumer_members: dict[str, dict[str, StoredConsumerMember]]
    """By group id, then member id."""
    completed: list[Hashable]
    """Keys of completed transactions' offsets (nil) whose deletion did not make it."""
    group_configs: dict[str, StoredGroupConfig]


def read_state(items: Iterable[tuple[Hashable, Any]]) -> StoredState:
    """Reads every record of the state log; a key of a kind this version
    does not know is logged and left alone."""
    state = StoredState({}, [], [], {}, {}, [], {})
    for key, value in items:
        assert isinstance(key, tuple)
        kind = key[0]
        if kind == GROUP:
            state.classic_groups[key[1]] = StoredGroup.from_value(value)
        elif kind == OFFSET:
            _, group_id, topic, partition = key
            state.offsets.append(
                (group_id, TopicPartition(topic, partition), CommittedOffset.from_value(value))
            )
        elif kind == TXN:
            _, producer_id, group_id, topic, partition = key
            if value is None:
                state.completed.append(key)
                continue
            tp = TopicPartition(topic, partition)
            state.pending.append((producer_id, group_id, tp, PendingOffset.from_value(value)))
        elif kind == CONSUMER_GROUP:
            state.consumer_groups[key[1]] = StoredConsumerGroup.from_value(value)
        elif kind == CONSUMER_MEMBER:
            member = StoredConsumerMember.from_value(value)
            state.consumer_members.setdefault(key[1], {})[key[2]] = member
        elif kind == GROUP_CONFIG:
            state.group_configs[key[1]] = StoredGroupConfig.from_value(value)
        else:
            log.warning("groups state log: ignoring a key of unknown kind %r", kind)
    return state
