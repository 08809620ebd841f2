"""The mirror's progress per partition, kept on the target cluster as the
committed offsets of the group :data:`PROGRESS_GROUP` (durable where the
records are, read back with one OffsetFetch).

The committed offset is the source position: every committed source record
below it is on the target. Its metadata, ``v0 last=L target=T``, holds the
source offset of the last record copied (-1 for none) and the target offset
the next copied record will take. The mirror saves progress only after the
records and the offset syncs it covers are acknowledged by the target, so
progress never runs ahead of what the target holds; records the target holds
past it are found again by reading the target's tail (engine/mirror/tail.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.mirror.errors import ClusterUnavailable
from engine.mirror.kafka import REQUEST_TIMEOUT_S, broker_error, client_config
from engine.types import TopicPartition

PROGRESS_GROUP = "tidelog.mirror.progress"

_METADATA = re.compile(r"v0 last=(-1|\d+) target=(\d+)")


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    source_position: int
    """Every committed source record below this offset is on the target."""
    last_source: int
    """The source offset of the last record copied; -1 for none."""
    target_next: int
    """The target offset the next copied record takes."""

    def metadata(self) -> str:
        return f"v0 last={self.last_source} target={self.target_next}"

    @classmethod
    def parse(cls, offset: int, metadata: str | None) -> PartitionProgress | None:
        """Progress from a committed offset; None if the commit is not the
        mirror's (no metadata of its form)."""
        match = _METADATA.fullmatch(metadata or "")
        if match is None or offset < 0:
            return None
        return cls(offset, int(match.group(1)), int(match.group(2)))


class ProgressStore:
    """Reads and commits :class:`PartitionProgress` on the target."""

    def __init__(self, kafka: Any, target: str, properties: dict[str, str], admin: Any) -> None:
        self._kafka = kafka
        # Progress is saved through the admin client (OffsetCommit as
        # AlterConsumerGroupOffsets sends it, metadata included): its
        # answer has a deadline, where a consumer's synchronous commit
        # waits out a target that went silent however long it stays so.
        self._admin = admin
        # A save outlasting the target's delivery timeout would ride out an
        # outage that fails the records' deliveries: the session must start
        # over instead, from what the target holds.
        delivery_s = float(properties.get("message.timeout.ms", 300_000)) / 1000
        self._deadline_s = min(REQUEST_TIMEOUT_S, delivery_s)
        self._consumer = kafka.Consumer(
            {
                **client_config(target, properties),
                "group.id": PROGRESS_GROUP,
                "enable.auto.commit": False,
            }
        )

    def load(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, PartitionProgress]:
        wanted = [self._kafka.TopicPartition(tp.topic, tp.partition) for tp in tps]
        if not wanted:
            return {}
        try:
            committed = self._consumer.committed(wanted, timeout=REQUEST_TIMEOUT_S)
        except self._kafka.KafkaException as error:
            raise ClusterUnavailable(
                f"reading the mirror's progress: {broker_error(error)}"
            ) from error
        found = {}
        for entry in committed:
            progress = PartitionProgress.parse(entry.offset, entry.metadata)
            if progress is not None:
                found[TopicPartition(entry.topic, entry.partition)] = progress
        return found

    def save(self, progress: dict[TopicPartition, PartitionProgress]) -> None:
        if not progress:
            return
        offsets = [
            self._kafka.TopicPartition(
                tp.topic, tp.partition, p.source_position, metadata=p.metadata()
            )
            for tp, p in progress.items()
        ]
        request = self._kafka.ConsumerGroupTopicPartitions(PROGRESS_GROUP, offsets)
        try:
            futures = self._admin.alter_consumer_group_offsets(
                [request], request_timeout=self._deadline_s
            )
            results = [f.result(timeout=self._deadline_s) for f in futures.values()]
        except self._kafka.KafkaException as error:
            raise ClusterUnavailable(
                f"saving the mirror's progress: {broker_error(error)}"
            ) from error
        except TimeoutError as error:
            raise ClusterUnavailable(
                f"saving the mirror's progress: no answer in {self._deadline_s:g} s"
            ) from error
        for result in results:
            for entry in result.topic_partitions or ():
                if entry.error is not None:
                    raise ClusterUnavailable(f"saving the mirror's progress: {entry.error.str()}")

    def close(self) -> None:
        self._consumer.close()
