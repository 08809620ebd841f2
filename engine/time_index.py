"""A partition's sparse time index: where to start looking for a timestamp.

An entry ``(max_timestamp, offset)`` says that every record before
``offset`` has a timestamp of at most ``max_timestamp``. Entries are added
at append boundaries once ``index.interval.bytes`` were appended since the
last one and the running maximum grew (Kafka's rule), so both columns only
grow. To find the first offset whose timestamp is >= T, start at the last
entry whose maximum is below T: nothing before it can qualify, and at most
one interval of batches lies between it and the answer.
"""

from __future__ import annotations

import bisect
from array import array
from typing import Any

NO_TIMESTAMP = -1


class TimeIndex:
    def __init__(self, interval_bytes: int = 4096) -> None:
        self.interval_bytes = interval_bytes
        self.timestamps = array("q")
        self.offsets = array("q")
        self.max_timestamp = NO_TIMESTAMP
        """The largest timestamp appended so far."""
        self.bytes_since_entry = 0
        self.unsaved = 0
        """Entries at the end not yet written to a checkpoint."""

    def __len__(self) -> int:
        return len(self.offsets)

    def note_append(self, base_offset: int, max_timestamp: int, size: int) -> None:
        """Accounts one append at ``base_offset`` whose largest timestamp is given."""
        if (
            self.bytes_since_entry >= self.interval_bytes
            and self.max_timestamp > NO_TIMESTAMP
            and (not self.timestamps or self.max_timestamp > self.timestamps[-1])
        ):
            self.timestamps.append(self.max_timestamp)
            self.offsets.append(base_offset)
            self.bytes_since_entry = 0
            self.unsaved += 1
        if max_timestamp > self.max_timestamp:  # noqa: PLR1730 (a compare: every append's)
            self.max_timestamp = max_timestamp
        self.bytes_since_entry += size

    def start_for(self, timestamp: int) -> int | None:
        """The offset to scan from for the first record at or after
        ``timestamp`` (None: from the log start)."""
        i = bisect.bisect_left(self.timestamps, timestamp)
        return self.offsets[i - 1] if i > 0 else None

    def drop_before(self, log_start_offset: int) -> None:
        """Forgets entries below the log start, keeping the last one at or
        below it (it still says where scanning may start)."""
        i = bisect.bisect_right(self.offsets, log_start_offset) - 1
        if i > 0:
            del self.timestamps[:i]
            del self.offsets[:i]
            self.unsaved = min(self.unsaved, len(self.offsets))

    # -- checkpoints ------------------------------------------------------------

    def unsaved_entries(self) -> list[int]:
        """The entries added since the last checkpoint, flattened (ts, offset, ...)."""
        count = self.unsaved
        out: list[int] = []
        for i in range(len(self.offsets) - count, len(self.offsets)):
            out += (self.timestamps[i], self.offsets[i])
        return out

    def all_entries(self) -> list[int]:
        out: list[int] = []
        for ts, offset in zip(self.timestamps, self.offsets, strict=True):
            out += (ts, offset)
        return out

    def mark_saved(self) -> None:
        self.unsaved = 0

    def load(self, flat: list[int], full: bool) -> None:
        """Adds checkpointed entries (all of them if ``full``) in order."""
        if full:
            del self.timestamps[:]
            del self.offsets[:]
        for i in range(0, len(flat), 2):
            if not self.offsets or flat[i + 1] > self.offsets[-1]:
                self.timestamps.append(flat[i])
                self.offsets.append(flat[i + 1])

    def state(self) -> dict[str, Any]:
        return {"max_ts": self.max_timestamp, "since": self.bytes_since_entry}

    def restore(self, raw: dict[str, Any]) -> None:
        self.max_timestamp = raw["max_ts"]
        self.bytes_since_entry = raw["since"]
