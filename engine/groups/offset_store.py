"""Committed offsets in memory: per group and partition, the offsets
transactions have pending, the commits still being written, and which of
them retention expires (KIP-211).

The offset manager (offset_manager.py) owns the persistence, the
coordinator the locking; this module only keeps the state and answers
questions about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from engine.groups.records import CommittedOffset, PendingOffset
from engine.types import TopicPartition


class OffsetKey(NamedTuple):
    group_id: str
    tp: TopicPartition


class OffsetStore:
    def __init__(self) -> None:
        self._committed: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self._pending: dict[int, dict[OffsetKey, PendingOffset]] = {}
        """By producer id: what its open transaction committed."""
        self._writing: dict[OffsetKey, int] = {}
        """Commits appended to the state log and not yet durable, per partition."""
        self._latest: dict[OffsetKey, int] = {}
        """The sequence number of the last committed offset written (durable
        or not) per partition: the one that becomes visible."""
        self._sequence = 0

    # -- sequence ----------------------------------------------------------------

    def next_sequence(self) -> int:
        """Numbers commits in the order they are written to the state log."""
        self._sequence += 1
        return self._sequence

    def saw_sequence(self, sequence: int) -> None:
        """A loaded commit: later ones get higher sequence numbers."""
        self._sequence = max(self._sequence, sequence)

    def issued(self, key: OffsetKey, sequence: int) -> None:
        """A committed offset with this sequence number is being written."""
        self._latest[key] = sequence

    def latest(self, key: OffsetKey) -> int:
        """The sequence number of the partition's last committed offset
        written and not removed since (-1: none)."""
        return self._latest.get(key, -1)

    # -- committed ---------------------------------------------------------------

    def get(self, group_id: str, tp: TopicPartition) -> CommittedOffset | None:
        return self._committed.get(group_id, {}).get(tp)

    def of_group(self, group_id: str) -> dict[TopicPartition, CommittedOffset]:
        return dict(self._committed.get(group_id, {}))

    def put(self, group_id: str, tp: TopicPartition, committed: CommittedOffset) -> None:
        self._committed.setdefault(group_id, {})[tp] = committed

    def load(self, group_id: str, tp: TopicPartition, committed: CommittedOffset) -> None:
        self.put(group_id, tp, committed)
        self.issued(OffsetKey(group_id, tp), committed.sequence)
        self.saw_sequence(committed.sequence)

    def remove(self, group_id: str, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Drops committed offsets, and those still being written (they will
        not become visible); returns those that were there."""
        offsets = self._committed.get(group_id, {})
        removed = []
        for tp in partitions:
            self._latest.pop(OffsetKey(group_id, tp), None)
            if offsets.pop(tp, None) is not None:
                removed.append(tp)
        if not offsets:
            self._committed.pop(group_id, None)
        return removed

    def group_ids(self) -> set[str]:
        """Every group with committed or pending offsets."""
        ids = set(self._committed)
        ids.update(key.group_id for pending in self._pending.values() for key in pending)
        return ids

    def has_offsets(self, group_id: str) -> bool:
        """Committed, pending in a transaction, or being written."""
        if self._committed.get(group_id):
            return True
        if any(key.group_id == group_id for key in self._writing):
            return True
        return any(key.group_id == group_id for p in self._pending.values() for key in p)

    # -- being written -----------------------------------------------------------

    def writing(self, keys: Iterable[OffsetKey]) -> None:
        for key in keys:
            self._writing[key] = self._writing.get(key, 0) + 1

    def written(self, keys: Iterable[OffsetKey]) -> None:
        for key in keys:
            left = self._writing.get(key, 0) - 1
            if left > 0:
                self._writing[key] = left
            else:
                self._writing.pop(key, None)

    def being_written(self) -> list[OffsetKey]:
        """Every key with a commit appended and not yet durable."""
        return list(self._writing)

    def is_unstable(self, group_id: str, tp: TopicPartition) -> bool:
        """Whether a commit of this partition is being written or pending in
        a transaction (OffsetFetch with require_stable says so)."""
        key = OffsetKey(group_id, tp)
        return key in self._writing or any(key in p for p in self._pending.values())

    # -- transactions ------------------------------------------------------------

    def add_pending(self, producer_id: int, key: OffsetKey, pending: PendingOffset) -> None:
        self._pending.setdefault(producer_id, {})[key] = pending

    def pending_producers(self) -> set[int]:
        return set(self._pending)

    def pending_of(self, producer_id: int) -> dict[OffsetKey, PendingOffset]:
        return dict(self._pending.get(producer_id, {}))

    def remove_pending(self, producer_id: int, keys: Iterable[OffsetKey]) -> None:
        pending = self._pending.get(producer_id)
        if pending is None:
            return
        for key in keys:
            pending.pop(key, None)
        if not pending:
            del self._pending[producer_id]

    def pending_where(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> list[tuple[int, OffsetKey]]:
        """(producer id, key) of every pending offset of the group (in ``partitions``)."""
        wanted = None if partitions is None else set(partitions)
        return [
            (producer_id, key)
            for producer_id, pending in self._pending.items()
            for key in pending
            if key.group_id == group_id and (wanted is None or key.tp in wanted)
        ]

    # -- retention ---------------------------------------------------------------

    def expired(
        self,
        group_id: str,
        now_ms: int,
        retention_ms: int,
        since_ms: int | None,
        subscribed: set[str] | None = None,
    ) -> list[TopicPartition]:
        """The group's offsets that retention removes now: those with an
        explicit expiry time past it, and the others ``retention_ms`` after
        ``since_ms`` (or, if None, after their commit). Offsets of
        ``subscribed`` topics, and partitions with a commit being written or
        pending, are kept."""
        expired = []
        for tp, committed in self._committed.get(group_id, {}).items():
            if subscribed is not None and tp.topic in subscribed:
                continue
            if self.is_unstable(group_id, tp):
                continue
            if committed.expire_timestamp >= 0:
                if now_ms >= committed.expire_timestamp:
                    expired.append(tp)
            elif now_ms - (committed.commit_timestamp if since_ms is None else since_ms) >= (
                retention_ms
            ):
                expired.append(tp)
        return expired

    # -- topics ------------------------------------------------------------------

    def of_topic(self, topic: str) -> tuple[list[OffsetKey], list[tuple[int, OffsetKey]]]:
        """Every committed offset and every pending one of ``topic``."""
        committed = [
            OffsetKey(group_id, tp)
            for group_id, offsets in self._committed.items()
            for tp in offsets
            if tp.topic == topic
        ]
        pending = [
            (producer_id, key)
            for producer_id, offsets in self._pending.items()
            for key in offsets
            if key.tp.topic == topic
        ]
        return committed, pending
