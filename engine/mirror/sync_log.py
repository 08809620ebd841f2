"""The offset syncs on the target (engine/mirror/offset_sync.py): which ones
a run of copied records needs, and reading back those already written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.mirror.kafka import REQUEST_TIMEOUT_S, reader_config
from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetSync, OffsetTranslation
from engine.mirror.records import PartitionReader
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
    kafka: Any, target: str, properties: dict[str, str]
) -> dict[TopicPartition, list[OffsetSync]]:
    """Every sync on the target, per partition in the order written."""
    reader = PartitionReader(
        kafka,
        reader_config(target, properties, "tidelog.mirror.syncs"),
        TopicPartition(OFFSET_SYNCS_TOPIC, 0),
        0,
        REQUEST_TIMEOUT_S,
    )
    found: dict[TopicPartition, list[OffsetSync]] = {}
    try:
        for record in reader.records():
            sync = OffsetSync.parse(record.key() or b"", record.value() or b"")
            found.setdefault(sync.tp, []).append(sync)
    finally:
        reader.close()
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
