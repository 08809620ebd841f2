"""Writing to the target: an idempotent producer (acks=all), records sent
partition for partition with their key, value, headers and timestamp, and
the target offset of each read back from its delivery report. Records go
in batches (:class:`Delivery`), each with its own reports, so one batch
can be on its way while the mirror reads and sends the next."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from engine import clock
from engine.mirror.errors import ClusterUnavailable, DeliveryRefused, named
from engine.mirror.kafka import (
    DELIVERY_TIMEOUT_MS,
    REQUEST_TIMEOUT_S,
    broker_error,
    client_config,
    delivery_timeout_ms,
)
from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetSync
from engine.types import TopicPartition

_NO_TIMESTAMP = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE
_POLL_S = 0.1


class PartitionReports:
    """One partition's records in a :class:`Delivery`: the source offset of
    each, in the order sent, and what the target answered for each, in the
    order answered (librdkafka reports a partition's records in order)."""

    __slots__ = ("errors", "sources", "targets")

    def __init__(self) -> None:
        self.sources: list[int] = []
        self.targets: list[int] = []
        """The target offset of each record acknowledged."""
        self.errors: list[tuple[Any, Any]] = []
        """(error, message) of each record not delivered."""

    def delivered(self, error: Any, message: Any) -> None:
        if error is None:
            self.targets.append(message.offset())
        else:
            self.errors.append((error, message))


class Delivery:
    """One batch of records sent to the target, and the delivery reports
    that came back for it so far. Each batch collects its own reports, so
    the mirror can send the next batch before this one is acknowledged."""

    __slots__ = ("count", "partitions")

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionReports] = {}
        """Per (topic, partition), in the order first sent."""
        self.count = 0

    def part(self, topic: str, partition: int) -> PartitionReports:
        found = self.partitions.get((topic, partition))
        if found is None:
            found = self.partitions[topic, partition] = PartitionReports()
        return found

    @property
    def complete(self) -> bool:
        answered = sum(len(p.targets) + len(p.errors) for p in self.partitions.values())
        return answered >= self.count


class Target:
    """One producer session on the target. After an error it is closed and
    a new one made: the mirror re-reads the target's tail before sending
    again, so nothing a lost session delivered is sent twice."""

    def __init__(self, kafka: Any, target: str, properties: dict[str, str]) -> None:
        self._kafka = kafka
        config = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            **client_config(target, properties),
        }
        delivery_ms = delivery_timeout_ms(properties)
        # Deliveries are awaited until librdkafka itself gives them up (and a
        # margin): a session closed while records can still be delivered
        # would let them land after the next one re-read the target's tail,
        # twice. With no limit set (0), neither has the wait.
        self._timeout_s = delivery_ms / 1000 + 10 if delivery_ms > 0 else math.inf
        self._producer = kafka.Producer(config)

    def start(self, records: Sequence[Any]) -> Delivery:
        """Sends source records without waiting for the target."""
        delivery = Delivery()
        parts = delivery.partitions
        produce = self._producer.produce
        # The hot loop of the mirror: one produce() per record, each
        # partition's reports straight into its own lists, the queue-full
        # retry out of line.
        for record in records:
            kind, timestamp = record.timestamp()
            topic, partition = record.topic(), record.partition()
            key, value, headers = record.key(), record.value(), record.headers()
            if kind == _NO_TIMESTAMP:
                timestamp = 0
            part = parts.get((topic, partition))
            if part is None:
                part = parts[topic, partition] = PartitionReports()
            try:
                produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    timestamp=timestamp,
                    headers=headers,
                    on_delivery=part.delivered,
                )
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: serve reports
                self._produce(
                    produce, part.delivered, topic, partition, key, value, headers, timestamp
                )
            part.sources.append(record.offset())
        delivery.count = len(records)
        return delivery

    def copied(self, delivery: Delivery) -> dict[TopicPartition, list[tuple[int, int]]]:
        """Waits until the target has every record of ``delivery``; per
        partition, (source offset, target offset) of each, in order."""
        self._wait(delivery)
        copied = {}
        for (topic, partition), part in delivery.partitions.items():
            tp = TopicPartition(topic, partition)
            sources, targets = part.sources, part.targets
            if len(targets) != len(sources) or any(b <= a for a, b in itertools.pairwise(targets)):
                raise ClusterUnavailable(
                    f"{named(tp)}: {len(sources)} sent, {len(targets)} delivered in order"
                )
            copied[tp] = list(zip(sources, targets, strict=True))
        return copied

    def send_syncs(self, syncs: Sequence[OffsetSync]) -> None:
        """Writes offset syncs and waits until the target has them."""
        delivery = Delivery()
        part = delivery.part(OFFSET_SYNCS_TOPIC, 0)
        for sync in syncs:
            self._produce(
                self._producer.produce,
                part.delivered,
                OFFSET_SYNCS_TOPIC,
                0,
                sync.key(),
                sync.value(),
                None,
                0,
            )
        delivery.count = len(syncs)
        self._wait(delivery)

    def serve(self) -> None:
        """Serves the delivery reports that have come in, without waiting."""
        self._producer.poll(0)

    def learn(self, topic: str) -> None:
        """Asks for ``topic``'s metadata again (after it grew), so records
        for its new partitions are not refused as for unknown ones."""
        self._producer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)

    def _produce(
        self,
        produce: Any,
        delivered: Any,
        topic: str,
        partition: int,
        key: Any,
        value: Any,
        headers: Any,
        timestamp: int,
    ) -> None:
        while True:
            try:
                produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    timestamp=timestamp,
                    headers=headers,
                    on_delivery=delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: serve reports

    def _wait(self, delivery: Delivery) -> None:
        """Until the target answered for every record of ``delivery``;
        raises for the first record it did not take."""
        deadline = clock.monotonic() + self._timeout_s
        while not delivery.complete:
            left = deadline - clock.monotonic()
            if left <= 0:
                missing = delivery.count - sum(
                    len(p.targets) + len(p.errors) for p in delivery.partitions.values()
                )
                raise ClusterUnavailable(
                    f"{missing} records not delivered in {self._timeout_s:g} s"
                )
            self._producer.poll(min(left, _POLL_S))
        for part in delivery.partitions.values():
            for error, message in part.errors[:1]:
                if error.retriable() or error.fatal() or error.code() < 0:
                    raise ClusterUnavailable(f"delivery to the target: {error.str()}")
                raise DeliveryRefused(
                    f"the target refused a record of {message.topic()}[{message.partition()}]:"
                    f" {error.str()}"
                )

    def close(self) -> None:
        """Drops what is not yet sent and waits a moment for what is."""
        try:
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.flush(5)
        except self._kafka.KafkaException as error:
            _ = broker_error(error)
