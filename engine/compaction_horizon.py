"""A partition's compaction horizon: what the log cleaner removed, in offsets
and in time, so a reader of history knows which questions the kept records
still answer exactly (engine/memory/state_at.py).

Every cleaning pass rewrites a range that starts at the log start. A record
it removes is either superseded by a later record of its key inside the same
range, a tombstone past ``delete.retention.ms`` (whose key is then absent,
as the tombstone said), or aborted data (which never counts). So the state
as of a time T, or below an offset, is still exact when nothing removed is
at or before it, or when every superseding record is too: when T is at or
after the largest timestamp of every range cleaned, or the offset at or past
the end of every range cleaned. Between the two bounds history is gone.

The partition keeps the horizon in its checkpoints (docs/engine-format.md),
and the cleaner makes it durable before the rewrite it describes is
committed: a crash in between leaves a horizon wider than the removal, so an
answer may be called inexact when it could have been exact, never the other
way round.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CompactionHorizon(NamedTuple):
    """Hull of what every cleaning pass of a partition removed and of the
    ranges those passes rewrote."""

    first_removed_offset: int
    """The smallest offset of a record a pass removed."""
    first_removed_ms: int
    """The smallest timestamp of a record a pass removed."""
    end_offset: int
    """The largest end of a range a pass rewrote (every superseding record is below it)."""
    max_ms: int
    """The largest timestamp in a range a pass rewrote."""

    def widened(self, other: CompactionHorizon) -> CompactionHorizon:
        return CompactionHorizon(
            min(self.first_removed_offset, other.first_removed_offset),
            min(self.first_removed_ms, other.first_removed_ms),
            max(self.end_offset, other.end_offset),
            max(self.max_ms, other.max_ms),
        )

    def exact_at(self, at_ms: int) -> bool:
        """The state as of ``at_ms`` is exact from the kept records."""
        return at_ms < self.first_removed_ms or at_ms >= self.max_ms

    def exact_below(self, offset: int) -> bool:
        """The state of the records below ``offset`` is exact from the kept records."""
        return offset <= self.first_removed_offset or offset >= self.end_offset

    def to_wire(self) -> list[int]:
        return list(self)

    @classmethod
    def from_wire(cls, raw: Any) -> CompactionHorizon | None:
        if raw is None:
            return None
        first_offset, first_ms, end_offset, max_ms = (int(v) for v in raw)
        return cls(first_offset, first_ms, end_offset, max_ms)


def from_checkpoint(record: dict[str, Any]) -> CompactionHorizon | None:
    """The horizon a partition checkpoint (docs/engine-format.md) records."""
    horizon = CompactionHorizon.from_wire(record.get("horizon"))
    cleaned = int(record.get("cleaned", 0))
    if record["v"] < 4 and cleaned > 0:
        # Formats before 4 kept no horizon: all that is known is that
        # records below the cleaned offset may be gone, whenever written.
        return CompactionHorizon(0, -(2**63), cleaned, 2**63 - 1)
    return horizon


def widen(current: CompactionHorizon | None, more: CompactionHorizon) -> CompactionHorizon:
    return more if current is None else current.widened(more)
