"""The history of every topic's governance configs: each creation, change
and deletion of a topic's masking, schema or provenance configs, who made
it, when, and at which offset of each partition it took effect.

Each entry travels in the same catalog record as the change it describes
(docs/engine-format.md), so the history holds a change exactly when the
change happened, and snapshots keep it. It is bounded (``bounded``): any
principal that may create topics makes entries when the broker's defaults
govern, so a loop of creations and deletions must not grow it for ever.
An auditor reads it with ``Engine.governance_history``, and ``tidelog
verify`` from it the offsets where the broker stamped every record, the
only ones where a ``tidelog.principal`` header is the broker's
(docs/design/0047).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from engine.config import PROVENANCE

CREATED, ALTERED, DELETED = "create", "alter", "delete"

KEPT_PER_TOPIC = 64
"""The newest entries kept of one topic (by id): a topic's governance
changed in a loop keeps its recent past, not every step of the loop."""
KEPT_OF_DELETED = 1024
"""The newest entries kept, in all, of topics that no longer exist: their
stamps are gone with them, and only the audit of recent deletions is kept."""


_WIRE_FIELDS = 9
"""The fields of a change this version writes and reads, in order."""


class GovernanceChange(NamedTuple):
    at_ms: int
    action: str
    """create, alter or delete."""
    topic: str
    topic_id: bytes
    principal: str
    listener: str
    """The listener the request came in on; ``embedded`` for the embedded API."""
    before: dict[str, str]
    """The governance configs as they held before (empty for a creation)."""
    after: dict[str, str]
    """As they hold after (empty for a deletion)."""
    offsets: list[int]
    """Per partition, the first offset stored under ``after``."""

    def to_wire(self) -> list[Any]:
        return [
            self.at_ms,
            self.action,
            self.topic,
            self.topic_id,
            self.principal,
            self.listener,
            self.before,
            self.after,
            self.offsets,
        ]

    @classmethod
    def from_wire(cls, raw: Sequence[Any]) -> GovernanceChange:
        """A change as the catalog holds it. Fields past ``offsets`` are a
        later version's additions (docs/engine-format.md reserves them): read
        past, so that a catalog a newer tidelog wrote still opens here."""
        if len(raw) < _WIRE_FIELDS:
            raise ValueError(f"a governance change has {_WIRE_FIELDS} fields, found {len(raw)}")
        at_ms, action, topic, topic_id, principal, listener, before, after, offsets = raw[
            :_WIRE_FIELDS
        ]
        return cls(
            at_ms,
            action,
            topic,
            bytes(topic_id),
            principal,
            listener,
            dict(before),
            dict(after),
            list(offsets),
        )

    def describe(self) -> str:
        """One line for people: what changed, by whom, from which offsets."""
        changed = sorted(set(self.before) | set(self.after))
        values = ", ".join(
            f"{name}: {self.before.get(name, '-')!r} -> {self.after.get(name, '-')!r}"
            for name in changed
            if self.before.get(name) != self.after.get(name)
        )
        return (
            f"{self.at_ms} {self.action} {self.topic} by {self.principal} on {self.listener} "
            f"at offsets {self.offsets}: {values or 'no governance config changed'}"
        )


def stamped_ranges(
    history: Iterable[GovernanceChange], topic_id: bytes, partition: int
) -> list[tuple[int, int | None]]:
    """The offset ranges ``[start, end)`` (end None: still stamping) of a
    partition where the broker stamped every record, from the history of
    the topic with ``topic_id``. Outside them a stamp-named header is
    whatever a client sent. A partition added after a change starts at 0."""
    ranges: list[tuple[int, int | None]] = []
    start: int | None = None
    for change in history:
        if change.topic_id != topic_id:
            continue
        offset = change.offsets[partition] if partition < len(change.offsets) else 0
        stamping = change.after.get(PROVENANCE) == "stamp"
        if stamping and start is None:
            start = offset
        elif not stamping and start is not None:
            if offset > start:
                ranges.append((start, offset))
            start = None
    if start is not None:
        ranges.append((start, None))
    return ranges


def bounded(history: Sequence[GovernanceChange], live: set[bytes]) -> list[GovernanceChange]:
    """The history without what is beyond its bounds: the oldest entries of
    a topic past its newest KEPT_PER_TOPIC, and the oldest entries of
    deleted topics (ids not in ``live``) past the newest KEPT_OF_DELETED.
    Dropping a topic's oldest entries can only shorten its stamped ranges
    (a range begins at a kept entry), never claim a stamp that was not."""
    kept: list[GovernanceChange] = []
    per_topic: Counter[bytes] = Counter()
    of_deleted = 0
    for change in reversed(history):
        if per_topic[change.topic_id] >= KEPT_PER_TOPIC:
            continue
        if change.topic_id not in live:
            if of_deleted >= KEPT_OF_DELETED:
                continue
            of_deleted += 1
        per_topic[change.topic_id] += 1
        kept.append(change)
    kept.reverse()
    return kept


class HistoryCounts:
    """How many entries the history holds of each topic id, and of topics
    that no longer exist, kept as records are applied: the bounds are
    checked per record without walking the history, which a catalog of
    thousands of governed topics would otherwise do at every creation."""

    def __init__(self) -> None:
        self.of_topic: Counter[bytes] = Counter()
        self.of_deleted = 0

    def recount(self, history: Sequence[GovernanceChange], live: set[bytes]) -> None:
        self.of_topic = Counter(change.topic_id for change in history)
        self.of_deleted = sum(n for topic_id, n in self.of_topic.items() if topic_id not in live)

    def deleted(self, topic_ids: Iterable[bytes]) -> None:
        """Topics were deleted: their entries are now of deleted topics."""
        self.of_deleted += sum(self.of_topic[topic_id] for topic_id in topic_ids)

    def add(self, entries: Sequence[GovernanceChange], live: set[bytes]) -> bool:
        """Counts new entries (``live``: the ids among theirs that exist);
        True when the history is now past a bound (``bounded`` is due)."""
        for change in entries:
            self.of_topic[change.topic_id] += 1
            if change.topic_id not in live:
                self.of_deleted += 1
        return self.of_deleted > KEPT_OF_DELETED or any(
            self.of_topic[change.topic_id] > KEPT_PER_TOPIC for change in entries
        )
