"""Offset vectors and record references carried over to the cluster a
topic was mirrored to (docs/memory.md, "Translating references after a
migration").

A decision's context vector and the records it cites name source offsets;
on the target cluster the same records sit at other offsets (transaction
markers, aborted records and compaction gaps take source offsets the target
never sees). The mirror's offset syncs give, per partition, an exact
:class:`~engine.mirror.offset_sync.OffsetTranslation`; this module maps a
:class:`RecordRef` and an :class:`OffsetVector` through a mapping of them,
so the translated vector's records on the target are exactly the records
below the original on the source. Reading the syncs from a cluster is
engine.mirror.translation's job; nothing here touches a network.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import EngineError
from engine.memory.vector import OffsetVector, Position, RecordRef
from engine.mirror.offset_sync import OffsetTranslation
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition


class NotTranslated(EngineError):
    """A source offset has no target offset; the subclass says why."""

    code = KafkaCode.OFFSET_OUT_OF_RANGE

    def __init__(self, tp: TopicPartition, offset: int, message: str) -> None:
        super().__init__(f"{tp.topic}:{tp.partition} offset {offset}: {message}")
        self.topic = tp.topic
        self.partition = tp.partition
        self.offset = offset


class NoOffsetSyncs(NotTranslated):
    """The target holds no offset sync for the partition: it was not
    mirrored there (or the syncs topic was not read)."""

    code = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION

    def __init__(self, tp: TopicPartition, offset: int) -> None:
        super().__init__(tp, offset, "the target holds no offset syncs for this partition")


class BelowFirstSync(NotTranslated):
    """The offset lies before the first record the mirror copied."""

    def __init__(self, tp: TopicPartition, offset: int) -> None:
        super().__init__(
            tp, offset, "below the first mirrored offset (the mirror started after it)"
        )


GAP = "gap"
"""Not a mirrored record: the syncs skip the offset (a transaction marker,
an aborted record, or a record compacted or deleted away on the source)."""
NOT_YET = "not-yet-mirrored"
"""At or past the target's end: not mirrored (yet)."""
NO_RECORD_ON_TARGET = "no-record-on-target"
"""The target offset the syncs give holds no record (a marker of the
target's own): the source offset was not mirrored."""
ABORTED = "aborted"
"""The source holds the record in an aborted transaction."""
ABSENT_ON_SOURCE = "absent-on-source"
"""The source holds no record at the offset: a transaction marker, or a
record compacted away."""
DELETED_ON_SOURCE = "deleted-on-source"
"""Below the source partition's log start (retention or DeleteRecords)."""
LEFT_OUT = "left-out"
"""The source holds the record, committed, and the mirror did not copy it."""

_REASONS = {
    GAP: "not mirrored: the offset syncs skip it (a transaction marker, an aborted "
    "record, or a record compacted away on the source)",
    NOT_YET: "not mirrored (yet): it maps past the target's end",
    NO_RECORD_ON_TARGET: "not mirrored: the target holds no record where it would be",
    ABORTED: "not mirrored: the record belongs to an aborted transaction on the source",
    ABSENT_ON_SOURCE: "not mirrored: the source holds no record there (a transaction "
    "marker, or a record compacted away)",
    DELETED_ON_SOURCE: "not mirrored: it is below the source's log start (deleted)",
    LEFT_OUT: "not mirrored: the source holds it, committed, but the mirror left it out",
}


class NotMirrored(NotTranslated):
    """The record at the offset was not copied to the target; ``reason``
    is one of this module's reason names (ABORTED, ABSENT_ON_SOURCE, ... when
    the source was asked; GAP, NOT_YET, NO_RECORD_ON_TARGET otherwise)."""

    def __init__(self, tp: TopicPartition, offset: int, reason: str) -> None:
        super().__init__(tp, offset, _REASONS.get(reason, reason))
        self.reason = reason


def _translation(
    tp: TopicPartition, offset: int, translations: Mapping[TopicPartition, OffsetTranslation]
) -> OffsetTranslation:
    translation = translations.get(tp)
    if translation is None or len(translation) == 0:
        raise NoOffsetSyncs(tp, offset)
    return translation


def translate_offset(
    tp: TopicPartition,
    offset: int,
    translations: Mapping[TopicPartition, OffsetTranslation],
    target_end: int | None = None,
) -> int:
    """The target offset of the mirrored record at source ``offset``.

    NotMirrored when the syncs show the offset is in a gap, or it maps at or
    past ``target_end`` (the target partition's end offset, when known).
    What the syncs cannot show — a source gap matched by markers of the
    target's own — only reading the target can (engine.mirror.translation
    does).
    """
    translation = _translation(tp, offset, translations)
    target = translation.translate(offset)
    if target is None:
        raise BelowFirstSync(tp, offset)
    # A mirrored record's successor maps at least one further on; where the
    # next offset maps to the same place, the syncs skip this one.
    after = translation.translate(offset + 1)
    if after is not None and after <= target:
        raise NotMirrored(tp, offset, GAP)
    if target_end is not None and target >= target_end:
        raise NotMirrored(tp, offset, NOT_YET)
    return target


def translate_position(
    tp: TopicPartition,
    position: Position,
    translations: Mapping[TopicPartition, OffsetTranslation],
    target_end: int | None = None,
) -> Position:
    """The target position whose records below it are the mirrored records
    below ``position`` on the source: nothing skipped, nothing repeated.

    ``target_end`` (the target partition's end offset, when known) bounds
    a position past the last mirrored record: past trailing gaps of the
    source, the syncs alone would overshoot, and a reader starting there
    would skip the next record the mirror copies. The leader epoch is -1:
    the target's epochs are its own.
    """
    translation = _translation(tp, position.offset, translations)
    target = translation.translate(position.offset)
    if target is None:
        raise BelowFirstSync(tp, position.offset)
    if target_end is not None:
        target = min(target, target_end)
    return Position(target, -1)


def translate_vector(
    vector: OffsetVector,
    translations: Mapping[TopicPartition, OffsetTranslation],
    target_ends: Mapping[TopicPartition, int] | None = None,
) -> OffsetVector:
    """Every position of ``vector`` translated (see translate_position)."""
    ends = target_ends or {}
    return OffsetVector(
        {
            tp: translate_position(tp, position, translations, ends.get(tp))
            for tp, position in vector.items()
        }
    )


def translate_ref(
    ref: RecordRef,
    translations: Mapping[TopicPartition, OffsetTranslation],
    target_end: int | None = None,
) -> RecordRef:
    """The same record on the target (leader epoch -1: unknown until the
    target's record is read). See translate_offset for the errors."""
    tp = TopicPartition(ref.topic, ref.partition)
    return RecordRef(
        ref.topic, ref.partition, translate_offset(tp, ref.offset, translations, target_end)
    )
