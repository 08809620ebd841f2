"""The mirror's progress per partition, kept on the target cluster as the
committed offsets of the group :data:`PROGRESS_GROUP` (durable where the
records are, read back with one OffsetFetch).

The committed offset is the source position: every committed source record
below it is on the target. Its metadata, ``v0 last=L target=T``, holds the
source offset of the last record copied (-1 for none) and the target offset
the next copied record will take. The mirror saves progress only after the
records and the offset syncs it covers are acknowledged by the target, so
progress never runs ahead of what the target holds; records the target holds
past it are found again by reading the target's tail (engine/mirror/tail.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.mirror.errors import ClusterUnavailable, GroupRefused, ProgressRefused
from engine.mirror.group_offsets import Commit, GroupOffsets, answer_deadline_s
from engine.types import TopicPartition

PROGRESS_GROUP = "tidelog.mirror.progress"

_METADATA = re.compile(r"v0 last=(-1|\d+) target=(\d+)")


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    source_position: int
    """Every committed source record below this offset is on the target."""
    last_source: int
    """The source offset of the last record copied; -1 for none."""
    target_next: int
    """The target offset the next copied record takes."""

    def metadata(self) -> str:
        return f"v0 last={self.last_source} target={self.target_next}"

    @classmethod
    def parse(cls, offset: int, metadata: str | None) -> PartitionProgress | None:
        """Progress from a committed offset; None if the commit is not the
        mirror's (no metadata of its form)."""
        match = _METADATA.fullmatch(metadata or "")
        if match is None or offset < 0:
            return None
        return cls(offset, int(match.group(1)), int(match.group(2)))


class ProgressStore:
    """Reads and commits :class:`PartitionProgress` on the target."""

    def __init__(self, kafka: Any, target: str, properties: dict[str, str]) -> None:
        deadline_s = answer_deadline_s(properties)
        self._offsets = GroupOffsets(kafka, target, properties, PROGRESS_GROUP, deadline_s)

    def load(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, PartitionProgress]:
        try:
            committed = self._offsets.committed(tps)
        except ClusterUnavailable as error:
            raise ClusterUnavailable(f"reading the mirror's progress: {error}") from error
        except GroupRefused as error:
            raise ProgressRefused(f"reading the mirror's progress: {error}") from error
        found = {}
        for tp, entry in committed.items():
            progress = PartitionProgress.parse(entry.offset, entry.metadata)
            if progress is not None:
                found[tp] = progress
        return found

    def save(self, progress: dict[TopicPartition, PartitionProgress]) -> None:
        offsets = {tp: Commit(p.source_position, p.metadata()) for tp, p in progress.items()}
        try:
            self._offsets.commit(offsets)
        except ClusterUnavailable as error:
            raise ClusterUnavailable(f"saving the mirror's progress: {error}") from error
        except GroupRefused as error:
            raise ProgressRefused(f"saving the mirror's progress: {error}") from error

    def close(self) -> None:
        self._offsets.close()
