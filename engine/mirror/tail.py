"""Recovering a partition's progress from the target itself: the records
the target holds past the mirror's saved progress (sent before a crash of
the mirror or of the target, acknowledged or not) are read back and matched,
one for one and in order, against the source's committed records from the
saved source position. Each matched record is one the mirror will not send
again; the offset syncs its runs need are returned to be written. A record
that does not match is a :class:`TargetDiverged`: something else wrote to
the target, and copying on would mix the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.mirror.errors import ClusterUnavailable, TargetBehind, TargetDiverged, named
from engine.mirror.kafka import REQUEST_TIMEOUT_S, broker_error, reader_config
from engine.mirror.offset_sync import OffsetSync
from engine.mirror.progress import PartitionProgress
from engine.mirror.records import PartitionReader, same_record
from engine.mirror.sync_log import syncs_for
from engine.types import TopicPartition


@dataclass(frozen=True, slots=True)
class Sides:
    """What reading both sides needs."""

    kafka: Any
    source: str
    source_config: dict[str, str]
    target: str
    target_config: dict[str, str]


@dataclass(frozen=True, slots=True)
class Recovered:
    progress: PartitionProgress
    syncs: list[OffsetSync]
    """Syncs the matched records need (some may be on the target already)."""
    delta: int | None
    matched: int


def watermarks(kafka: Any, consumer: Any, tp: TopicPartition) -> tuple[int, int]:
    try:
        low, high = consumer.get_watermark_offsets(
            kafka.TopicPartition(tp.topic, tp.partition), timeout=REQUEST_TIMEOUT_S
        )
    except kafka.KafkaException as error:
        raise ClusterUnavailable(
            f"{named(tp)}: reading its offsets: {broker_error(error)}"
        ) from error
    return int(low), int(high)


def recover_partition(
    sides: Sides,
    tp: TopicPartition,
    progress: PartitionProgress,
    target_high: int,
    delta: int | None,
) -> Recovered:
    """``progress`` moved past the target's records beyond it, which must
    be the source's next committed records; ``delta`` is the last copied
    record's target minus source offset (None before the first)."""
    if target_high < progress.target_next:
        raise TargetBehind(
            f"{named(tp)}: the target ends at {target_high}, but it acknowledged records up to"
            f" {progress.target_next - 1} to the mirror"
        )
    if target_high == progress.target_next:
        return Recovered(progress, [], delta, 0)
    kafka = sides.kafka
    target = PartitionReader(
        kafka,
        reader_config(sides.target, sides.target_config, "tidelog.mirror.tail"),
        tp,
        progress.target_next,
        REQUEST_TIMEOUT_S,
    )
    source = PartitionReader(
        kafka,
        reader_config(sides.source, sides.source_config, "tidelog.mirror.tail"),
        tp,
        progress.source_position,
        REQUEST_TIMEOUT_S,
    )
    pairs = []
    last_source = progress.last_source
    try:
        for mirrored in target.records(until_end_at=target_high):
            original = source.next()
            if original is None:
                raise TargetDiverged(
                    f"{named(tp)}: the target holds a record at {mirrored.offset()}"
                    f" past the source's end at {source.end}"
                )
            if not same_record(original, mirrored):
                raise TargetDiverged(
                    f"{named(tp)}: the record at target offset {mirrored.offset()} is not the"
                    f" source's at {original.offset()} (another writer, or a topic that was"
                    " not empty)"
                )
            pairs.append((int(original.offset()), int(mirrored.offset())))
            last_source = pairs[-1][0]
        target_end = target.end if target.end is not None else target_high
    finally:
        target.close()
        source.close()
    syncs, delta = syncs_for(tp, delta, pairs)
    recovered = PartitionProgress(
        max(progress.source_position, last_source + 1),
        last_source,
        max(target_end, progress.target_next),
    )
    return Recovered(recovered, syncs, delta, len(pairs))
