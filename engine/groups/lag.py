"""Consumer lag: how far a group's committed offsets are behind the end
of the partitions it consumes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from engine.groups.results import ConsumerLag
from engine.types import TopicPartition

if TYPE_CHECKING:
    from engine.groups.coordinator import GroupCoordinator


class LagHost(Protocol):
    """What lag needs from the broker core: the group coordinator, and the
    partitions of topics with their offsets."""

    @property
    def groups(self) -> GroupCoordinator: ...
    def topic_partitions(self, topics: Iterable[str]) -> list[TopicPartition]: ...
    def offsets(self, topic: str, partition: int) -> tuple[int, int]: ...


def consumer_lag(engine: LagHost, group_id: str) -> dict[TopicPartition, ConsumerLag]:
    """Per partition of every topic the group has committed offsets for or
    its members subscribe to: the committed offset, the high watermark and
    their difference. Raises GroupIdNotFound for a group that does not exist."""
    topics = engine.groups.subscribed_topics(group_id)
    committed = engine.groups.fetch_offsets(group_id, None)
    topics |= {tp.topic for tp in committed}
    lags = {}
    for tp in engine.topic_partitions(sorted(topics)):
        high_watermark = engine.offsets(tp.topic, tp.partition)[1]
        found = committed.get(tp, (None, 0))[0]
        if found is None:
            lags[tp] = ConsumerLag(None, high_watermark, None)
        else:
            lags[tp] = ConsumerLag(
                found.offset, high_watermark, max(high_watermark - found.offset, 0)
            )
    return lags
