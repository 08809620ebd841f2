"""Consumer-group checkpoints (MirrorMaker 2's model): the committed offsets
of the source's matching groups, translated through the offset syncs and
the mirror's progress, committed for the same groups on the target, so a
consumer moved to the target resumes at exactly the next record.

A group is checkpointed only while it has no members on the target (its
consumers there own its offsets once they run), and a target offset only
ever moves forwards. A source offset past what the mirror has copied waits
for a later checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from engine.mirror.kafka import REQUEST_TIMEOUT_S, broker_error
from engine.mirror.offset_sync import OffsetTranslation
from engine.mirror.progress import PartitionProgress
from engine.mirror.settings import MirrorSettings
from engine.types import TopicPartition

log = logging.getLogger("tidelog.mirror")

_EMPTY_STATES = {"EMPTY", "DEAD", "UNKNOWN"}


@dataclass(slots=True)
class Mirrored:
    """What the mirror knows of one partition: its progress and its syncs."""

    progress: PartitionProgress
    translation: OffsetTranslation
    first_target: int | None
    """The target offset of the first record mirrored; None before any."""

    def target_position(self, source_position: int) -> int | None:
        """The target position (next offset to read) of a consumer at
        ``source_position`` on the source, or None if the mirror has not
        copied that far."""
        progress = self.progress
        if source_position > progress.source_position:
            return None
        if source_position > progress.last_source:
            return progress.target_next  # nothing mirrored lies between
        translated = self.translation.translate(source_position)
        if translated is None:  # before the first record mirrored
            return self.first_target if self.first_target is not None else progress.target_next
        return min(translated, progress.target_next)


def checkpoint(
    kafka: Any,
    source_admin: Any,
    target_admin: Any,
    settings: MirrorSettings,
    mirrored: dict[TopicPartition, Mirrored],
) -> dict[str, dict[TopicPartition, int]]:
    """Commits the translated offsets of every matching source group on the
    target; returns what it committed, per group."""
    try:
        listed = source_admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result(
            REQUEST_TIMEOUT_S
        )
    except (kafka.KafkaException, TimeoutError) as error:
        log.warning("checkpoints: cannot list the source's groups: %s", broker_error(error))
        return {}
    committed = {}
    for group in sorted(g.group_id for g in listed.valid if settings.mirrors_group(g.group_id)):
        try:
            offsets = _translated(kafka, source_admin, group, mirrored)
            if offsets:
                done = _commit(kafka, target_admin, group, offsets)
                if done:
                    committed[group] = done
        except (kafka.KafkaException, TimeoutError) as error:
            log.warning("checkpoints: group %s: %s", group, broker_error(error))
    return committed


def _translated(
    kafka: Any, admin: Any, group: str, mirrored: dict[TopicPartition, Mirrored]
) -> dict[TopicPartition, int]:
    request = [kafka.ConsumerGroupTopicPartitions(group)]
    found = admin.list_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT_S)
    entries = found[group].result(REQUEST_TIMEOUT_S).topic_partitions
    translated = {}
    for entry in entries:
        tp = TopicPartition(entry.topic, entry.partition)
        known = mirrored.get(tp)
        if known is None or entry.offset < 0:
            continue
        position = known.target_position(entry.offset)
        if position is not None:
            translated[tp] = position
    return translated


def _commit(
    kafka: Any, admin: Any, group: str, offsets: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    described = admin.describe_consumer_groups([group], request_timeout=REQUEST_TIMEOUT_S)
    description = described[group].result(REQUEST_TIMEOUT_S)
    if description.members or description.state.name not in _EMPTY_STATES:
        log.info("checkpoints: group %s is active on the target: its offsets are its own", group)
        return {}
    request = [kafka.ConsumerGroupTopicPartitions(group)]
    found = admin.list_consumer_group_offsets(request, request_timeout=REQUEST_TIMEOUT_S)
    existing = {
        TopicPartition(e.topic, e.partition): e.offset
        for e in found[group].result(REQUEST_TIMEOUT_S).topic_partitions
    }
    forwards = {tp: o for tp, o in offsets.items() if o > existing.get(tp, -1)}
    if not forwards:
        return {}
    entries = [kafka.TopicPartition(tp.topic, tp.partition, o) for tp, o in forwards.items()]
    altered = admin.alter_consumer_group_offsets(
        [kafka.ConsumerGroupTopicPartitions(group, entries)], request_timeout=REQUEST_TIMEOUT_S
    )
    altered[group].result(REQUEST_TIMEOUT_S)
    log.info("checkpoints: group %s: %d partitions committed on the target", group, len(forwards))
    return forwards
