"""Translating record references and offset vectors to the cluster a
mirror copied to, from the offset syncs the mirror wrote there.

:func:`load_translations` reads the target's offset-syncs topic from its
start to its end with engine.mirror.sync_log's load_syncs (read committed,
bounded by a timeout, keeping only the partitions asked for) into one
exact OffsetTranslation per source partition. A :class:`Translator` adds
what only the clusters can tell: the target's end offsets (a position past
trailing gaps of the source stops where the target ends), the record a
reference lands on (its leader epoch; none there means the source record
was not mirrored) and, given the source too, why a record was not
mirrored (aborted, absent, deleted).
The arithmetic is engine.memory.translate's.
"""

from __future__ import annotations

from collections.abc import Collection

from engine.memory.translate import (
    ABORTED,
    ABSENT_ON_SOURCE,
    DELETED_ON_SOURCE,
    LEFT_OUT,
    NO_RECORD_ON_TARGET,
    NOT_YET,
    NotMirrored,
    translate_offset,
    translate_position,
)
from engine.memory.vector import OffsetVector, Position, RecordRef
from engine.mirror.offset_sync import OffsetTranslation
from engine.mirror.reading import (
    DEFAULT_TIMEOUT_S,
    READ_UNCOMMITTED,
    Cluster,
    ClusterReader,
)
from engine.mirror.sync_log import load_syncs
from engine.types import TopicPartition


def load_translations(
    target: Cluster | ClusterReader,
    topics: Collection[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[TopicPartition, OffsetTranslation]:
    """One OffsetTranslation per source partition the target's syncs name
    (only ``topics``' partitions when given), from engine.mirror.sync_log's
    load_syncs. An empty dict when the target has no syncs topic.
    InvalidOffsetSync for a sync that does not parse or contradicts an
    earlier one; ReadStalled if nothing comes for ``timeout`` seconds before
    the topic's end."""
    syncs = load_syncs(target, topics, timeout=timeout)
    # A mirror that restarts writes some syncs again: OffsetTranslation sorts
    # them, keeps one of each, and refuses two targets for one source offset.
    return {tp: OffsetTranslation(found) for tp, found in sorted(syncs.items())}


class Translator:
    """Translates references and vectors to ``target``; with ``source``,
    names why a record was not mirrored. Close it (or use ``with``)."""

    def __init__(
        self,
        target: Cluster,
        *,
        source: Cluster | None = None,
        topics: Collection[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._target = ClusterReader(target, timeout=timeout)
        self._source: ClusterReader | None = None
        self._source_committed: ClusterReader | None = None
        try:
            self.translations = load_translations(self._target, topics, timeout=timeout)
            if source is not None:
                self._source = ClusterReader(
                    source, isolation_level=READ_UNCOMMITTED, timeout=timeout
                )
                self._source_committed = ClusterReader(source, timeout=timeout)
        except BaseException:
            self.close()
            raise

    def target_end(self, tp: TopicPartition) -> int:
        """The target partition's high watermark now."""
        return self._target.watermarks(tp.topic, tp.partition)[1]

    def ref(self, ref: RecordRef) -> RecordRef:
        """The same record on the target, with the leader epoch it has
        there. NotMirrored (its reason from the source when given) if the
        record was not copied; NoOffsetSyncs, BelowFirstSync as for
        engine.memory.translate_offset."""
        tp = TopicPartition(ref.topic, ref.partition)
        try:
            offset = translate_offset(tp, ref.offset, self.translations, self.target_end(tp))
        except NotMirrored as error:
            raise self._why(tp, ref.offset, error.reason) from error
        found = self._target.record_at(tp.topic, tp.partition, offset)
        if found is None:
            raise self._why(tp, ref.offset, NO_RECORD_ON_TARGET)
        return RecordRef(ref.topic, ref.partition, offset, found.leader_epoch)

    def position(self, tp: TopicPartition, position: Position) -> Position:
        return translate_position(tp, position, self.translations, self.target_end(tp))

    def vector(self, vector: OffsetVector) -> OffsetVector:
        """Every position translated; each stops at most at the target's end."""
        return OffsetVector({tp: self.position(tp, p) for tp, p in vector.items()})

    def _why(self, tp: TopicPartition, offset: int, reason: str) -> NotMirrored:
        if self._source is None or self._source_committed is None:
            return NotMirrored(tp, offset, reason)
        log_start, _ = self._source.watermarks(tp.topic, tp.partition)
        if offset < log_start:
            return NotMirrored(tp, offset, DELETED_ON_SOURCE)
        if self._source.record_at(tp.topic, tp.partition, offset) is None:
            return NotMirrored(tp, offset, ABSENT_ON_SOURCE)
        if self._source_committed.record_at(tp.topic, tp.partition, offset) is None:
            return NotMirrored(tp, offset, ABORTED)
        # The source holds it, committed: not copied yet, or left out.
        return NotMirrored(tp, offset, NOT_YET if reason == NOT_YET else LEFT_OUT)

    def close(self) -> None:
        for reader in (self._target, self._source, self._source_committed):
            if reader is not None:
                reader.close()

    def __enter__(self) -> Translator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
