"""One consumer group's committed offsets on one cluster, read with
OffsetFetch and committed with a standalone OffsetCommit (generation -1, no
member id) by a consumer whose group id is that group and which never joins
it; every answer is awaited up to a deadline.

Not through the admin client: librdkafka (2.16) can abort the process (an
assertion on the refcount of an admin request, in the error path of
``rd_kafka_admin_coord_request``) when a cluster restarts while an admin
group request waits for its coordinator. A consumer's own OffsetFetch and
OffsetCommit go through its group state machine (rdkafka_cgrp.c), which
waits for the coordinator on its own, never through that path
(docs/design/0021-mirror-groups-without-admin-requests.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from engine import clock
from engine.mirror.errors import ClusterUnavailable, CommitRefused, GroupRefused
from engine.mirror.kafka import (
    REQUEST_TIMEOUT_S,
    broker_error,
    client_config,
    delivery_timeout_ms,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition

log = logging.getLogger("tidelog.mirror")

_POLL_S = 0.1


def answer_deadline_s(target_properties: dict[str, str]) -> float:
    """How long the mirror waits for an answer about a group's offsets, from
    either cluster: REQUEST_TIMEOUT_S, or the target's delivery timeout
    (:func:`delivery_timeout_ms`) when that is shorter. A wait outlasting it
    would ride out a target outage that fails the records' deliveries, where
    the session should start over from what the target holds."""
    delivery_ms = delivery_timeout_ms(target_properties)
    if delivery_ms <= 0:  # no limit on deliveries: the request timeout bounds answers
        return REQUEST_TIMEOUT_S
    return min(REQUEST_TIMEOUT_S, delivery_ms / 1000)


class Committed(NamedTuple):
    """A partition's committed offset (-1 for none) and its metadata."""

    offset: int
    metadata: str | None


class Commit(NamedTuple):
    """An offset to commit, with the metadata to keep beside it."""

    offset: int
    metadata: str | None = None


class GroupOffsets:
    """Reads and commits ``group``'s offsets on the cluster at ``bootstrap``."""

    def __init__(
        self,
        kafka: Any,
        bootstrap: str,
        properties: dict[str, str],
        group: str,
        deadline_s: float,
    ) -> None:
        self._kafka = kafka
        self.group = group
        self._deadline_s = deadline_s
        self._answer: tuple[Any, list[Any]] | None = None
        self._unanswered = False
        self._consumer = kafka.Consumer(
            {
                **client_config(bootstrap, properties),
                "group.id": group,
                "enable.auto.commit": False,
                "on_commit": self._committed,
                # The consumer never joins, so its session timeout only
                # bounds how long a commit waits for an unknown coordinator
                # (librdkafka defers it that long): no longer than the
                # deadline, so a commit to a cluster that is down is
                # answered, and close() does not wait for it (45 s else).
                "session.timeout.ms": max(1, int(deadline_s * 1000)),
                "heartbeat.interval.ms": max(1, int(deadline_s * 1000) // 3),
            }
        )

    def _committed(self, error: Any, partitions: list[Any]) -> None:
        """The commit's answer (served by poll, on the committing thread)."""
        self._answer = (error, partitions)

    def _answered(self) -> tuple[Any, list[Any]] | None:
        return self._answer

    def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, Committed]:
        """The group's committed offset of each partition (-1 for none);
        raises :class:`GroupRefused` when the cluster refuses to show them
        and :class:`ClusterUnavailable` when it does not answer in time."""
        wanted = [self._kafka.TopicPartition(tp.topic, tp.partition) for tp in tps]
        if not wanted:
            return {}
        try:
            found = self._consumer.committed(wanted, timeout=self._deadline_s)
        except self._kafka.KafkaException as error:
            raise self._reading_failed(error.args[0]) from error
        for entry in found:
            if entry.error is not None:
                # One partition's own error (its answer's error code): its
                # offset is unknown, not "none committed", which a checkpoint
                # would read as leave to commit over it.
                raise self._reading_failed(entry.error)
        return {
            TopicPartition(e.topic, e.partition): Committed(max(e.offset, -1), e.metadata)
            for e in found
        }

    def _reading_failed(self, refusal: Any) -> GroupRefused | ClusterUnavailable:
        """What a KafkaError met reading the offsets means: a refusal for
        good (not authorized, for one: asking again gets the same answer,
        the cluster is not down), or a cluster that did not answer."""
        code = KafkaCode.for_value(refusal.code())
        if refusal.code() >= 0 and not code.retriable:
            return GroupRefused(self.group, code, refusal.str())
        text = broker_error(refusal)
        return ClusterUnavailable(f"group {self.group}: reading its offsets: {text}")

    def commit(self, offsets: Mapping[TopicPartition, Commit]) -> None:
        """Commits ``offsets`` from outside the group; raises
        :class:`CommitRefused` when the cluster refuses and
        :class:`ClusterUnavailable` when it does not answer in time."""
        if not offsets:
            return
        entries = [
            self._kafka.TopicPartition(tp.topic, tp.partition, c.offset, metadata=c.metadata)
            if c.metadata is not None
            else self._kafka.TopicPartition(tp.topic, tp.partition, c.offset)
            for tp, c in offsets.items()
        ]
        self._answer = None
        try:
            # Asynchronous, its answer awaited up to the deadline: a
            # synchronous commit waits out a cluster that went silent
            # however long it stays so.
            self._consumer.commit(offsets=entries, asynchronous=True)
        except self._kafka.KafkaException as error:
            raise ClusterUnavailable(
                f"group {self.group}: committing: {broker_error(error)}"
            ) from error
        self._unanswered = True
        deadline = clock.monotonic() + self._deadline_s
        while (answer := self._answered()) is None:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                raise ClusterUnavailable(
                    f"group {self.group}: committing: no answer in {self._deadline_s:g} s"
                )
            # Assigned nothing, the consumer fetches nothing: a poll only
            # serves the commit's answer.
            self._consumer.poll(min(remaining, _POLL_S))
        self._unanswered = False
        failure, partitions = answer
        errors = [e.error for e in partitions if e.error is not None]
        if failure is None and not errors:
            return
        refusal = failure if failure is not None else errors[0]
        if refusal.code() < 0:  # librdkafka's own: no answer from the cluster
            raise ClusterUnavailable(f"group {self.group}: committing: {refusal.str()}")
        raise CommitRefused(self.group, KafkaCode.for_value(refusal.code()), refusal.str())

    def close(self) -> None:
        """Closes the consumer; in the background when a commit is still
        unanswered, since librdkafka's close waits for every commit in flight
        (as long as a hung cluster holds it)."""
        if not self._unanswered:
            self._consumer.close()
            return
        closing = threading.Thread(
            target=self._consumer.close, name=f"close {self.group}", daemon=True
        )
        closing.start()
        log.info("group %s: closing in the background, its commit unanswered", self.group)
