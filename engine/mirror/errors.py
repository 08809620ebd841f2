"""The mirror's errors: each says which side and what was found."""

from __future__ import annotations

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition


class MirrorError(EngineError):
    """The mirror cannot go on without an operator."""


class TargetDiverged(MirrorError):
    """The target partition holds records the source does not have where the
    mirror's progress says they should be: another writer, or a target
    topic that was not empty. Copying on would mix the two."""

    code = KafkaCode.INVALID_RECORD


class TargetBehind(MirrorError):
    """The target partition ends before records it acknowledged to the
    mirror: it lost acknowledged data."""

    code = KafkaCode.OFFSET_OUT_OF_RANGE


class TopicMismatch(MirrorError):
    """A target topic cannot take its source's partitions one for one."""

    code = KafkaCode.INVALID_PARTITIONS


class PartitionsRefused(TopicMismatch):
    """The target refused to grow a topic to its source's partition count
    (not authorized to alter it, a policy): its new partitions have nowhere
    to go until an operator grows it or allows the mirror to."""


class MaskedSource(MirrorError):
    """The source masks topics for the mirror's principal: copying them
    would copy masks, not data, unless masked copies are meant."""

    code = KafkaCode.TOPIC_AUTHORIZATION_FAILED

    def __init__(self, topics: list[str]) -> None:
        super().__init__(
            f"the source masks topic(s) {', '.join(topics)} for the mirror's principal: a copy "
            "would hold masked values, not the data. Mirror with a principal that may unmask "
            "them (tidelog unmask grant TOPIC PRINCIPAL), or pass --masked-copies "
            "(masked_copies = true) if masked copies are meant"
        )
        self.topics = topics


class DeliveryRefused(MirrorError):
    """The target refused a record for good (too large, not authorized,
    policy): resending would be refused again."""


class ProgressRefused(MirrorError):
    """The target refused to show or commit the mirror's progress for good
    (the mirror is not authorized for its progress group, for one): a new
    session would meet the same refusal, forever."""


class ClusterUnavailable(EngineError):
    """A cluster did not answer in time, or the target did not take the
    records in time (down, restarting, no leader). Retried: the mirror
    recovers its progress from the target and goes on."""

    code = KafkaCode.REQUEST_TIMED_OUT


class GroupRefused(EngineError):
    """The cluster refused to show a group's committed offsets (the mirror
    may not describe that group, for one): asking again gets the same
    answer until an operator acts. ``refusal`` is the broker's code."""

    refused = "reading its offsets"

    def __init__(self, group: str, refusal: KafkaCode, text: str) -> None:
        super().__init__(f"group {group}: {self.refused} refused: {text}")
        self.group = group
        self.refusal = refusal

    @property
    def error_code(self) -> KafkaCode:
        return self.refusal


class CommitRefused(GroupRefused):
    """The cluster answered the commit with an error: the commit did not
    happen. ``refusal`` is the broker's code (UNKNOWN_MEMBER_ID, for one,
    when the group has members: only they commit for it)."""

    refused = "commit"


def named(tp: TopicPartition) -> str:
    """A partition as errors and logs name it: ``topic[partition]``."""
    return f"{tp.topic}[{tp.partition}]"
