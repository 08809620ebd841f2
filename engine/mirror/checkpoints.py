"""Consumer-group checkpoints (MirrorMaker 2's model): the committed offsets
of the source's matching groups, translated through the offset syncs and
the mirror's progress, committed for the same groups on the target, so a
consumer moved to the target resumes at exactly the next record.

A group is checkpointed only while it has no members on the target (its
consumers there own its offsets once they run), and a target offset only
ever moves forwards. A source offset past what the mirror has copied waits
for a later checkpoint.

Each group's offsets are read and committed by a consumer of that group
(engine/mirror/group_offsets.py), never through the admin client's group
requests. The target itself refuses the commit, from outside the group,
while the group has members: that refusal is the check, made atomically
with the commit.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from engine.mirror.errors import ClusterUnavailable, CommitRefused, GroupRefused
from engine.mirror.group_offsets import (
    Commit,
    Committed,
    GroupOffsets,
    answer_deadline_s,
)
from engine.mirror.kafka import broker_error
from engine.mirror.offset_sync import OffsetTranslation
from engine.mirror.progress import PartitionProgress
from engine.mirror.settings import MirrorSettings
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition

log = logging.getLogger("tidelog.mirror")


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


_NONE = Committed(-1, None)

ACTIVE_ON_THE_TARGET = frozenset(
    {
        KafkaCode.UNKNOWN_MEMBER_ID,
        KafkaCode.ILLEGAL_GENERATION,
        KafkaCode.REBALANCE_IN_PROGRESS,
        KafkaCode.STALE_MEMBER_EPOCH,
        KafkaCode.FENCED_MEMBER_EPOCH,
    }
)
"""What a broker answers a commit from outside a group that has members
(Kafka's ClassicGroup and ConsumerGroup validateOffsetCommit: generation -1
is taken only while the group is empty): the group's offsets are its
members' own."""


def checkpoint(
    kafka: Any,
    source_admin: Any,
    settings: MirrorSettings,
    mirrored: dict[TopicPartition, Mirrored],
) -> dict[str, dict[TopicPartition, int]]:
    """Commits the translated offsets of every matching source group on the
    target; returns what it committed, per group. Raises
    :class:`ClusterUnavailable` when either cluster does not answer within
    the deadline (:func:`answer_deadline_s`): the checkpoint stops there
    (the groups before it are committed). A group a cluster refuses to
    show or commit is logged and skipped."""
    deadline_s = answer_deadline_s(settings.target_config)
    try:
        # ListGroups goes to every broker, not through a coordinator lookup
        # (librdkafka's admin target "all brokers"): not the path that aborts.
        listed = source_admin.list_consumer_groups(request_timeout=deadline_s).result(deadline_s)
    except (kafka.KafkaException, TimeoutError) as error:
        raise ClusterUnavailable(
            f"checkpoints: listing the source's groups: {broker_error(error)}"
        ) from error
    committed = {}
    for group in sorted(g.group_id for g in listed.valid if settings.mirrors_group(g.group_id)):
        try:
            done = _checkpoint_group(kafka, settings, group, mirrored, deadline_s)
        except GroupRefused as refused:
            # This group's alone (not authorized, for one): the others go on.
            log.warning("checkpoints: %s", refused)
            continue
        if done:
            committed[group] = done
    return committed


def _checkpoint_group(
    kafka: Any,
    settings: MirrorSettings,
    group: str,
    mirrored: dict[TopicPartition, Mirrored],
    deadline_s: float,
) -> dict[TopicPartition, int]:
    source = GroupOffsets(kafka, settings.source, settings.source_config, group, deadline_s)
    with closing(source):
        offsets = _translated(source, mirrored)
    if not offsets:
        return {}
    target = GroupOffsets(kafka, settings.target, settings.target_config, group, deadline_s)
    with closing(target):
        return _commit(target, offsets)


def _translated(
    source: GroupOffsets, mirrored: dict[TopicPartition, Mirrored]
) -> dict[TopicPartition, int]:
    """The target positions of the group's source offsets, where copied."""
    found = source.committed(mirrored)
    translated = {}
    for tp, entry in found.items():
        if entry.offset < 0:
            continue
        position = mirrored[tp].target_position(entry.offset)
        if position is not None:
            translated[tp] = position
    return translated


def _commit(target: GroupOffsets, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Commits the offsets that move the group forwards on the target."""
    group = target.group
    existing = target.committed(offsets)
    forwards = {tp: o for tp, o in offsets.items() if o > existing.get(tp, _NONE).offset}
    if not forwards:
        return {}
    try:
        target.commit({tp: Commit(o) for tp, o in forwards.items()})
    except CommitRefused as refused:
        if refused.refusal in ACTIVE_ON_THE_TARGET:
            log.info(
                "checkpoints: group %s is active on the target: its offsets are its own", group
            )
        else:
            log.warning("checkpoints: %s", refused)
        return {}
    log.info("checkpoints: group %s: %d partitions committed on the target", group, len(forwards))
    return forwards
