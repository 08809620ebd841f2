"""The "groups" state log's keys and values (docs/groups.md, "Stored state").

Three kinds of key, each a msgpack array whose first item names the kind:

- ``["group", group_id]``: a group's metadata, as Kafka's GroupMetadata
  record holds it (protocol type, generation, chosen protocol, leader,
  members with their metadata and assignments);
- ``["offset", group_id, topic, partition]``: a committed offset;
- ``["txn", producer_id, group_id, topic, partition]``: an offset a
  transaction committed and has not completed yet; ``nil`` once completed
  (and deleted after that).

Values are msgpack maps; a reader ignores keys it does not know, so later
versions may add some.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

from engine.types import OffsetAndMetadata, TopicPartition

FORMAT_VERSION = 1
GROUP = "group"
OFFSET = "offset"
TXN = "txn"


def group_key(group_id: str) -> Hashable:
    return (GROUP, group_id)


def offset_key(group_id: str, tp: TopicPartition) -> Hashable:
    return (OFFSET, group_id, tp.topic, tp.partition)


def txn_key(producer_id: int, group_id: str, tp: TopicPartition) -> Hashable:
    return (TXN, producer_id, group_id, tp.topic, tp.partition)


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
