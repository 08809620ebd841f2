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

from engine import clock
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

    def __init__(self, kafka: Any, target: str, properties: dict[str, str]) -> None:
        self._kafka = kafka
        # A save outlasting the target's delivery timeout would ride out an
        # outage that fails the records' deliveries: the session must start
        # over instead, from what the target holds.
        delivery_s = float(properties.get("message.timeout.ms", 300_000)) / 1000
        self._deadline_s = min(REQUEST_TIMEOUT_S, delivery_s)
        # Progress is committed by this consumer, outside any group
        # membership (generation -1, as a standalone consumer commits), and
        # asynchronously: the answer is waited for up to the deadline, where
        # a synchronous commit waits out a target that went silent however
        # long it stays so. Not through the admin client: librdkafka (2.16)
        # can abort the process (an assertion on an admin request's
        # coordinator lookup) when the target restarts while an admin
        # request waits for its coordinator; a consumer's commit goes
        # through the group coordinator's own path.
        self._answer: tuple[Any, list[Any]] | None = None
        self._consumer = kafka.Consumer(
            {
                **client_config(target, properties),
                "group.id": PROGRESS_GROUP,
                "enable.auto.commit": False,
                "on_commit": self._committed,
            }
        )

    def _committed(self, error: Any, partitions: list[Any]) -> None:
        """The commit's answer (served by poll, on the saving thread)."""
        self._answer = (error, partitions)

    def _answered(self) -> tuple[Any, list[Any]] | None:
        return self._answer

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
        self._answer = None
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except self._kafka.KafkaException as error:
            raise ClusterUnavailable(
                f"saving the mirror's progress: {broker_error(error)}"
            ) from error
        deadline = clock.monotonic() + self._deadline_s
        while (answer := self._answered()) is None:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                raise ClusterUnavailable(
                    f"saving the mirror's progress: no answer in {self._deadline_s:g} s"
                )
            # Assigned nothing, the consumer fetches nothing: a poll only
            # serves the commit's answer.
            self._consumer.poll(min(remaining, 0.1))
        failure, partitions = answer
        if failure is not None:
            raise ClusterUnavailable(f"saving the mirror's progress: {failure.str()}")
        for entry in partitions:
            if entry.error is not None:
                raise ClusterUnavailable(f"saving the mirror's progress: {entry.error.str()}")

    def close(self) -> None:
        self._consumer.close()
