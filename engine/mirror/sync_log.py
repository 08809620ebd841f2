"""The offset syncs on the target (engine/mirror/offset_sync.py): which ones
a run of copied records needs, and reading back those already written.

:func:`load_syncs` is the one reader of the offset-syncs topic: the mirror
reads it when a session starts, and engine/mirror/translation.py when it
translates references and vectors to the target.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetSync, OffsetTranslation
from engine.mirror.reading import DEFAULT_TIMEOUT_S, Cluster, ClusterReader
from engine.types import TopicPartition


def syncs_for(
    tp: TopicPartition, delta: int | None, copied: Iterable[tuple[int, int]]
) -> tuple[list[OffsetSync], int | None]:
    """The syncs that ``copied`` (source offset, target offset) pairs of
    ``tp``, in order, need after a record whose target offset minus source
    offset was ``delta`` (None before the first): one at the first record of
    every run, where the difference changes. Returns them and the last
    record's difference."""
    syncs = []
    for source_offset, target_offset in copied:
        if target_offset - source_offset != delta:
            delta = target_offset - source_offset
            syncs.append(OffsetSync(tp, source_offset, target_offset))
    return syncs, delta


def load_syncs(
    target: Cluster | ClusterReader,
    topics: Collection[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[TopicPartition, list[OffsetSync]]:
    """Every sync on the target (only ``topics``' partitions when given),
    per source partition in the order written, read committed from the
    topic's log start to its end. An empty dict when the target has no
    syncs topic. InvalidOffsetSync for a sync that does not parse;
    ReadStalled if nothing comes for ``timeout`` seconds before the topic's
    end; ClusterReadError if the target answers with an error."""
    if isinstance(target, ClusterReader):
        return _load(target, topics)
    with ClusterReader(target, timeout=timeout) as reader:
        return _load(reader, topics)


def _load(
    reader: ClusterReader, topics: Collection[str] | None
) -> dict[TopicPartition, list[OffsetSync]]:
    wanted = None if topics is None else frozenset(topics)
    found: dict[TopicPartition, list[OffsetSync]] = {}
    for partition in range(reader.partition_count(OFFSET_SYNCS_TOPIC) or 0):
        log_start, _ = reader.watermarks(OFFSET_SYNCS_TOPIC, partition)
        for record in reader.records(OFFSET_SYNCS_TOPIC, partition, log_start):
            sync = OffsetSync.parse(record.key or b"", record.value or b"")
            if wanted is None or sync.tp.topic in wanted:
                found.setdefault(sync.tp, []).append(sync)
    return found


def translation_of(syncs: list[OffsetSync]) -> OffsetTranslation:
    """The translation of one partition's syncs, as written (a sync written
    again after a crash, the same or superseded, is passed over)."""
    translation = OffsetTranslation()
    last = -1
    for sync in syncs:
        if sync.source_offset > last:
            translation.add(sync)
            last = sync.source_offset
    return translation
