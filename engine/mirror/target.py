"""Writing to the target: an idempotent producer (acks=all), records sent
partition for partition with their key, value, headers and timestamp, and
the target offset of each read back from its delivery report."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from engine.mirror.errors import ClusterUnavailable, DeliveryRefused, named
from engine.mirror.kafka import REQUEST_TIMEOUT_S, broker_error, client_config
from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetSync
from engine.types import TopicPartition

DELIVERY_TIMEOUT_MS = 15_000
"""How long a record may wait for the target before the mirror starts over
from what the target holds (librdkafka's message.timeout.ms; a target
property given for the mirror overrides it)."""

_NO_TIMESTAMP = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE


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
        self._reports: list[tuple[Any, Any]] = []

    def _delivered(self, error: Any, message: Any) -> None:
        self._reports.append((error, message))

    def send(self, records: Sequence[Any]) -> dict[TopicPartition, list[tuple[int, int]]]:
        """Sends source records and waits until the target has them all;
        per partition, (source offset, target offset) of each, in order."""
        sent: dict[TopicPartition, list[int]] = {}
        produce = self._producer.produce
        for record in records:
            kind, timestamp = record.timestamp()
            topic, partition = record.topic(), record.partition()
            self._produce(
                produce,
                topic,
                partition,
                record.key(),
                record.value(),
                record.headers(),
                timestamp if kind != _NO_TIMESTAMP else 0,
            )
            sent.setdefault(TopicPartition(topic, partition), []).append(record.offset())
        delivered = self._wait(sum(len(v) for v in sent.values()))
        copied = {}
        for tp, source_offsets in sent.items():
            target_offsets = delivered.get(tp, [])
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
        for sync in syncs:
            self._produce(
                self._producer.produce, OFFSET_SYNCS_TOPIC, 0, sync.key(), sync.value(), None, 0
            )
        self._wait(len(syncs))

    def learn(self, topic: str) -> None:
        """Asks for ``topic``'s metadata again (after it grew), so records
        for its new partitions are not refused as for unknown ones."""
        self._producer.list_topics(topic, timeout=REQUEST_TIMEOUT_S)

    def _produce(
        self,
        produce: Any,
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
                    on_delivery=self._delivered,
                )
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: serve reports

    def _wait(self, count: int) -> dict[TopicPartition, list[int]]:
        remaining = self._producer.flush(self._timeout_s)
        reports, self._reports = self._reports, []
        if remaining or len(reports) != count:
            raise ClusterUnavailable(f"{remaining} records not delivered in {self._timeout_s:g} s")
        delivered: dict[TopicPartition, list[int]] = {}
        for error, message in reports:
            if error is not None:
                if error.retriable() or error.fatal() or error.code() < 0:
                    raise ClusterUnavailable(f"delivery to the target: {error.str()}")
                raise DeliveryRefused(
                    f"the target refused a record of {message.topic()}[{message.partition()}]:"
                    f" {error.str()}"
                )
            delivered.setdefault(TopicPartition(message.topic(), message.partition()), []).append(
                message.offset()
            )
        return delivered

    def close(self) -> None:
        """Drops what is not yet sent and waits a moment for what is."""
        try:
            self._producer.purge(in_queue=True, in_flight=False)
            self._producer.flush(5)
        except self._kafka.KafkaException as error:
            _ = broker_error(error)
        self._reports = []
