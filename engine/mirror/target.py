"""Writing to the target: an idempotent producer (acks=all), records sent
partition for partition with their key, value, headers and timestamp, and
the target offset of each read back from its delivery report. Records go
in batches (:class:`Delivery`), each with its own reports, so one batch
can be on its way while the mirror reads and sends the next."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from engine import clock
from engine.mirror.errors import ClusterUnavailable, DeliveryRefused, named
from engine.mirror.kafka import REQUEST_TIMEOUT_S, broker_error, client_config
from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetSync
from engine.types import TopicPartition

DELIVERY_TIMEOUT_MS = 15_000
"""How long a record may wait for the target before the mirror starts over
from what the target holds (librdkafka's message.timeout.ms; a target
property given for the mirror overrides it)."""

_NO_TIMESTAMP = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE
_POLL_S = 0.1


class Delivery:
    """One batch of records sent to the target, and the delivery reports
    that came back for it so far. Each batch collects its own reports, so
    the mirror can send the next batch before this one is acknowledged."""

    __slots__ = ("count", "reports", "sent")

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], list[int]] = {}
        """Per (topic, partition), the source offset of each record, in
        the order sent."""
        self.count = 0
        self.reports: list[tuple[Any, Any]] = []

    def delivered(self, error: Any, message: Any) -> None:
        self.reports.append((error, message))

    @property
    def complete(self) -> bool:
        return len(self.reports) >= self.count


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
        self._timeout_s = int(config["message.timeout.ms"]) / 1000 + 10
        self._producer = kafka.Producer(config)

    def start(self, records: Sequence[Any]) -> Delivery:
        """Sends source records without waiting for the target."""
        delivery = Delivery()
        sent = delivery.sent
        produce, delivered = self._producer.produce, delivery.delivered
        # The hot loop of the mirror: plain tuples as keys and one produce()
        # per record, the queue-full retry out of line.
        for record in records:
            kind, timestamp = record.timestamp()
            topic, partition = record.topic(), record.partition()
            key, value, headers = record.key(), record.value(), record.headers()
            if kind == _NO_TIMESTAMP:
                timestamp = 0
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
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: serve reports
                self._produce(produce, delivered, topic, partition, key, value, headers, timestamp)
            offsets = sent.get((topic, partition))
            if offsets is None:
                offsets = sent[topic, partition] = []
            offsets.append(record.offset())
        delivery.count = len(records)
        return delivery

    def copied(self, delivery: Delivery) -> dict[TopicPartition, list[tuple[int, int]]]:
        """Waits until the target has every record of ``delivery``; per
        partition, (source offset, target offset) of each, in order."""
        delivered = self._wait(delivery)
        copied = {}
        for (topic, partition), source_offsets in delivery.sent.items():
            tp = TopicPartition(topic, partition)
            target_offsets = delivered.get((topic, partition), [])
            if len(target_offsets) != len(source_offsets) or any(
                b <= a for a, b in itertools.pairwise(target_offsets)
            ):
                raise ClusterUnavailable(
                    f"{named(tp)}: {len(source_offsets)} sent,"
                    f" {len(target_offsets)} delivered in order"
                )
            copied[tp] = list(zip(source_offsets, target_offsets, strict=True))
        return copied

    def send_syncs(self, syncs: Sequence[OffsetSync]) -> None:
        """Writes offset syncs and waits until the target has them."""
        delivery = Delivery()
        for sync in syncs:
            self._produce(
                self._producer.produce,
                delivery.delivered,
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

    def _wait(self, delivery: Delivery) -> dict[tuple[str, int], list[int]]:
        """Per (topic, partition), the target offsets of ``delivery``'s
        records, in the order acknowledged."""
        deadline = clock.monotonic() + self._timeout_s
        while not delivery.complete:
            left = deadline - clock.monotonic()
            if left <= 0:
                missing = delivery.count - len(delivery.reports)
                raise ClusterUnavailable(
                    f"{missing} records not delivered in {self._timeout_s:g} s"
                )
            self._producer.poll(min(left, _POLL_S))
        delivered: dict[tuple[str, int], list[int]] = {}
        for error, message in delivery.reports:
            if error is not None:
                if error.retriable() or error.fatal() or error.code() < 0:
                    raise ClusterUnavailable(f"delivery to the target: {error.str()}")
                raise DeliveryRefused(
                    f"the target refused a record of {message.topic()}[{message.partition()}]:"
                    f" {error.str()}"
                )
            offsets = delivered.get((message.topic(), message.partition()))
            if offsets is None:
                offsets = delivered[message.topic(), message.partition()] = []
            offsets.append(message.offset())
        return delivered

    def close(self) -> None:
        """Drops what is not yet sent and waits a moment for what is."""
        try:
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.flush(5)
        except self._kafka.KafkaException as error:
            _ = broker_error(error)
