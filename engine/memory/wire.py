"""The wire :class:`~engine.memory.transport.Transport`: an agent memory on
any Kafka-protocol broker (``tidelog serve``, or a Kafka cluster) through
confluent-kafka, the optional extra ``tidelog[kafka]``.

Writes use an idempotent producer with acks=all and wait for the delivery
report; transactions use a second producer with the transactional id; reads
assign one partition at the reference's offset, read_committed.

A produce response carries no leader epoch, so librdkafka's delivery report
has none: the epoch a ref names is read from the written batch itself (a
read_uncommitted fetch of the one record, from the broker's log cache).
Nor does it carry the topic's id: the id is described (an admin client's
DescribeTopics) before and after each write, and each read, so a topic
deleted and created again in between raises UnknownTopicId
(transport.same_topic).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
from engine.errors import EngineError
from engine.memory.snapshot import VectorDiverged
from engine.memory.transport import (
    RecordNotFound,
    StoredRecord,
    passed_over,
    same_topic,
    scanned_topics,
)
from engine.memory.vector import Position, RecordRef
from engine.protocol.kafka_code import KafkaCode
from engine.topic_id import NO_TOPIC_ID, from_java_bits
from engine.types import Header

try:
    import confluent_kafka
    import confluent_kafka.admin
except ImportError:  # pragma: no cover - depends on the installed extras
    confluent_kafka = None  # type: ignore[assignment]


EPOCH_READER = {"fetch.wait.max.ms": 1}
"""The epoch reader's fetches wait at most a millisecond for data. librdkafka
keeps one fetch in flight per broker and sends the next the moment a
response arrives, so the fetch past the record just read is already waiting
when the next write assigns its own offset, and that assignment is served
only once the waiting fetch returns: at the default 500 ms, every other
write waited it out. It is unassigned between writes, so the short wait
never turns into polling while nothing is written."""


REF_READER = {"auto.offset.reset": "error"}
"""A ref's reader is told at once when its offset is outside the log (the
fetch answers OFFSET_OUT_OF_RANGE), rather than moved to the log's end to
wait there for a record that can never be the one named."""


class WireError(EngineError):
    """The Kafka client reported an error; ``kafka_code`` is its code."""

    code = KafkaCode.UNKNOWN_SERVER_ERROR

    def __init__(self, message: str, kafka_code: int = -1) -> None:
        super().__init__(message)
        self.kafka_code = kafka_code


@dataclass(frozen=True)
class _LogBounds:
    """A partition's log as ListOffsets gives it (a snapshot.LogBounds)."""

    topic: str
    index: int
    log_start_offset: int
    high_watermark: int


def _known_bounds(ref: RecordRef, fetched: tuple[int, int] | None) -> _LogBounds | None:
    """The log's bounds a fetch answered (librdkafka's cached log start and
    high watermark), None if it gave none (-1: Kafka's out-of-range answer
    has no log start, and nothing was fetched yet)."""
    if fetched is None or min(fetched) < 0:
        return None
    return _LogBounds(ref.topic, ref.partition, *fetched)


def _client() -> Any:
    if confluent_kafka is None:
        raise ImportError(
            "an agent memory over the wire needs confluent-kafka: pip install 'tidelog[kafka]'"
        )
    return confluent_kafka


class _Delivery:
    """One produced record's delivery report, waited for by polling the producer."""

    def __init__(self) -> None:
        self.message: Any = None
        self.error: Any = None
        self.done = threading.Event()

    def __call__(self, error: Any, message: Any) -> None:
        self.error, self.message = error, message
        self.done.set()


class WireTransport:
    def __init__(
        self,
        bootstrap: str,
        *,
        clock: Clock,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = 60_000,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        """``config``: further librdkafka settings for every client (security)."""
        self._kafka = _client()
        self._clock = clock
        self._common = {"bootstrap.servers": bootstrap, **(config or {})}
        self._producer = self._kafka.Producer(
            {**self._common, "enable.idempotence": True, "acks": "all", "linger.ms": 0}
        )
        self._transactional_id = transactional_id
        self._transaction_timeout_ms = transaction_timeout_ms
        self._transactional: Any = None
        self._epochs: Any = None
        """The read_uncommitted consumer that reads written records' epochs."""
        self._epochs_lock = threading.Lock()
        self._admin = self._kafka.admin.AdminClient(self._common)
        """Describes topics' ids (a delivery report names none)."""
        self._out_of_range = self._kafka.KafkaError._AUTO_OFFSET_RESET
        """The error a REF_READER's poll gives for an offset outside the log."""

    def _topic_id(self, topic: str, timeout: float) -> bytes | None:
        """The id of the topic named ``topic`` now; None if there is none."""
        collection = self._kafka.TopicCollection([topic])
        described = self._admin.describe_topics(collection, request_timeout=max(timeout, 0.001))
        try:
            found = described[topic].result(timeout)
        except self._kafka.KafkaException as error:
            failure = error.args[0]
            if failure.code() == self._kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise WireError(f"describing {topic}: {failure}", failure.code()) from error
        uuid_ = found.topic_id
        return from_java_bits(uuid_.get_most_significant_bits(), uuid_.get_least_significant_bits())

    def _produce(
        self,
        producer: Any,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef:
        deadline = self._clock.monotonic() + timeout
        sent_to = self._topic_id(topic, timeout)
        delivery = _Delivery()
        producer.produce(topic, value, key, headers=list(headers), on_delivery=delivery)
        while not delivery.done.is_set():
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no delivery report for a record to {topic} in {timeout} s")
            producer.poll(min(remaining, 0.1))
        if delivery.error is not None:
            raise WireError(f"{topic}: {delivery.error}", delivery.error.code())
        message = delivery.message
        epoch = message.leader_epoch()
        if epoch is None:
            epoch = self._written_epoch(topic, message.partition(), message.offset(), deadline)
        written_to = self._topic_id(topic, deadline - self._clock.monotonic())
        topic_id = same_topic(topic, sent_to or NO_TOPIC_ID, written_to)
        return RecordRef(topic, message.partition(), message.offset(), epoch, topic_id)

    def _written_epoch(self, topic: str, partition: int, offset: int, deadline: float) -> int:
        with self._epochs_lock:
            reader = self._uncommitted_reader()
            reader.assign([self._kafka.TopicPartition(topic, partition, offset)])
            try:
                message = self._poll_at(reader, topic, partition, offset, deadline)
            finally:
                reader.unassign()  # no fetching between writes
        epoch = message.leader_epoch()
        return -1 if epoch is None else int(epoch)

    def _uncommitted_reader(self) -> Any:
        """The read_uncommitted consumer written records' epochs and the
        partitions' high watermarks are read with. Under ``_epochs_lock``."""
        if self._epochs is None:
            self._epochs = self._consumer("read_uncommitted", EPOCH_READER)
        return self._epochs

    def _consumer(self, isolation_level: str, extra: Mapping[str, Any] | None = None) -> Any:
        return self._kafka.Consumer(
            {
                **self._common,
                "group.id": f"tidelog-agent-read-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": isolation_level,
                **(extra or {}),
            }
        )

    def _poll_at(
        self,
        consumer: Any,
        topic: str,
        partition: int,
        offset: int,
        deadline: float,
        on_miss: Callable[[tuple[int, int] | None], None] | None = None,
    ) -> Any:
        """The message at ``offset`` of an assigned partition; RecordNotFound
        if the next one there is another, if the consumer moved past it
        giving none (an aborted record, or a marker: librdkafka's position
        passes them), or if none comes by ``deadline``. ``on_miss`` is
        called when a poll first comes back empty (with None), and whenever
        one comes back out of range, with the log's bounds that fetch
        answered; it raises if waiting on is pointless."""
        where = f"{topic}:{partition}:{offset}"
        assigned = [self._kafka.TopicPartition(topic, partition)]
        missed = sought_again = False
        while (remaining := deadline - self._clock.monotonic()) > 0:
            message = consumer.poll(min(remaining, 0.5))
            if message is None and consumer.position(assigned)[0].offset > offset:
                raise RecordNotFound(passed_over(where))
            error = None if message is None else message.error()
            if error is not None and error.code() == self._out_of_range:
                if on_miss is None:
                    raise RecordNotFound(f"no record at {where}: {error}")
                # librdkafka keeps the log start and high watermark of the
                # fetch answer, the error's included.
                fetched = consumer.get_watermark_offsets(assigned[0], cached=True)
                on_miss(fetched)
                if sought_again:
                    # Inside, by the answer or ListOffsets, and still out of
                    # range: the fetch and the bounds disagree, and seeking
                    # again would only repeat it until the deadline.
                    raise RecordNotFound(
                        f"no record at {where}: its fetch is out of range again, though "
                        f"the log holds it ({error})"
                    )
                # Inside the log: librdkafka stopped fetching at the error,
                # so the fetch starts over, once.
                consumer.assign([self._kafka.TopicPartition(topic, partition, offset)])
                missed = sought_again = True
                continue
            if message is None:
                if on_miss is not None and not missed:
                    on_miss(None)
                missed = True
                continue
            if error is not None:
                raise WireError(f"{where}: {error}", error.code())
            if message.offset() != offset:
                raise RecordNotFound(f"no record at {where} (the next is at {message.offset()})")
            return message
        raise RecordNotFound(f"no record at {where} by the deadline")

    def write(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef:
        return self._produce(self._producer, topic, value, key, headers, timeout)

    def begin(self, timeout: float) -> None:
        if self._transactional is None:
            transactional = self._kafka.Producer(
                {
                    **self._common,
                    "transactional.id": self._transactional_id or f"tidelog-agent-{uuid.uuid4()}",
                    "transaction.timeout.ms": self._transaction_timeout_ms,
                    "linger.ms": 0,
                }
            )
            self._call(lambda: transactional.init_transactions(timeout))
            self._transactional = transactional
        self._call(self._transactional.begin_transaction)

    def _call(self, call: Any) -> None:
        try:
            call()
        except self._kafka.KafkaException as error:
            failure = error.args[0]
            raise WireError(str(failure), failure.code()) from error

    def write_in_transaction(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef:
        if self._transactional is None:
            raise RuntimeError("begin() comes first")
        return self._produce(self._transactional, topic, value, key, headers, timeout)

    def commit(self, timeout: float) -> None:
        self._call(lambda: self._transactional.commit_transaction(timeout))

    def abort(self, timeout: float) -> None:
        self._call(lambda: self._transactional.abort_transaction(timeout))

    def read(self, ref: RecordRef, timeout: float) -> StoredRecord:
        deadline = self._clock.monotonic() + timeout
        topic_id = same_topic(ref.topic, ref.topic_id, self._topic_id(ref.topic, timeout))
        consumer = self._consumer("read_committed", REF_READER)
        try:
            where = self._kafka.TopicPartition(ref.topic, ref.partition, ref.offset)
            consumer.assign([where])
            message = self._poll_at(
                consumer,
                ref.topic,
                ref.partition,
                ref.offset,
                deadline,
                on_miss=lambda fetched: self._check_inside(ref, where, deadline, fetched),
            )
            fetched_bounds = consumer.get_watermark_offsets(where, cached=True)
        finally:
            consumer.close()
        self._check_epoch(ref, message.leader_epoch(), fetched_bounds, where, deadline)
        remaining = deadline - self._clock.monotonic()
        same_topic(ref.topic, topic_id, self._topic_id(ref.topic, remaining))
        headers = tuple((name, value or b"") for name, value in message.headers() or ())
        return StoredRecord(ref.with_topic_id(topic_id), message.key(), message.value(), headers)

    def _check_inside(
        self, ref: RecordRef, where: Any, deadline: float, fetched: tuple[int, int] | None
    ) -> None:
        """RecordNotFound at once if ``ref`` is outside its partition's log:
        a wait for a record there could only run out the timeout. Decided
        from the ``fetched`` bounds, an out-of-range fetch's answer, when it
        carries them (tidelog's does: docs/server.md, "The read side against
        Kafka 4.0"; Kafka's gives no log start); else asked (ListOffsets),
        only once a read misses (docs/design/0046): a read of a record that
        is there costs no more round trips. A record at or past the last
        stable offset is there, and a read_committed reader is given it
        once the transactions before it end."""
        log = _known_bounds(ref, fetched) or self._log_bounds(ref, where, deadline)
        if not log.log_start_offset <= ref.offset < log.high_watermark:
            raise RecordNotFound(
                f"no record at {ref}: the partition holds "
                f"[{log.log_start_offset}, {log.high_watermark})",
                log_start_offset=log.log_start_offset,
                high_watermark=log.high_watermark,
            )

    def _check_epoch(
        self,
        ref: RecordRef,
        found: int | None,
        fetched_bounds: tuple[int, int],
        where: Any,
        deadline: float,
    ) -> None:
        """VectorDiverged if the record read was written in a later leader
        epoch than ``ref`` names: the epoch named ended at or before it, so
        a takeover lost the record named and this one took its offset (the
        check a vector's position gets; docs/design/0036, 0046). The
        client has no OffsetForLeaderEpoch call: the end reported is the
        record's offset, at or after the epoch's true end. The log's bounds
        are the fetch's (``fetched_bounds``: librdkafka's cached log start
        and high watermark), so a record read as the deadline ran out is
        still refused as diverged; ListOffsets only if the fetch gave none."""
        if ref.leader_epoch < 0 or found is None or found <= ref.leader_epoch:
            return
        log = _known_bounds(ref, fetched_bounds) or self._log_bounds(ref, where, deadline)
        raise VectorDiverged(log, Position(ref.offset + 1, ref.leader_epoch), ref.offset)

    def _log_bounds(self, ref: RecordRef, where: Any, deadline: float) -> _LogBounds:
        """Where ``ref``'s partition's log is now (ListOffsets read
        uncommitted: the log start and the high watermark)."""
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:  # librdkafka reads a negative timeout as no limit at all
            raise RecordNotFound(f"no record at {ref} by the deadline")
        try:
            with self._epochs_lock:
                low, high = self._uncommitted_reader().get_watermark_offsets(
                    where, timeout=remaining, cached=False
                )
        except self._kafka.KafkaException as error:
            failure = error.args[0]
            raise WireError(f"{ref}: {failure}", failure.code()) from error
        return _LogBounds(ref.topic, ref.partition, low, high)

    def scan(self, topics: Sequence[str], header: Header, timeout: float) -> list[StoredRecord]:
        deadline = self._clock.monotonic() + timeout
        # Each description gets what is left of the timeout: given the whole
        # of it, n topics could wait n timeouts before the scan began.
        ids = {topic: self._topic_id(topic, deadline - self._clock.monotonic()) for topic in topics}
        with scanned_topics(
            ids, lambda topic: self._topic_id(topic, deadline - self._clock.monotonic())
        ):
            return self._scan(topics, header, ids, deadline - self._clock.monotonic())

    def _scan(
        self,
        topics: Sequence[str],
        header: Header,
        ids: Mapping[str, bytes | None],
        timeout: float,
    ) -> list[StoredRecord]:
        if timeout <= 0:  # librdkafka reads a negative timeout as no limit at all
            raise TimeoutError(f"scanning {', '.join(topics)}: no time left after describing them")
        consumer = self._consumer("read_committed", {"enable.partition.eof": True})
        found: list[StoredRecord] = []
        try:
            listed = consumer.list_topics(timeout=timeout)
            waiting = {
                (topic, partition)
                for topic in topics
                if topic in listed.topics
                for partition in listed.topics[topic].partitions
            }
            consumer.assign(
                [
                    self._kafka.TopicPartition(topic, partition, self._kafka.OFFSET_BEGINNING)
                    for topic, partition in waiting
                ]
            )
            deadline = self._clock.monotonic() + timeout
            while waiting:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"scanning {', '.join(topics)} took over {timeout} s")
                message = consumer.poll(min(remaining, 0.5))
                if message is None:
                    continue
                error = message.error()
                if error is not None and error.code() == self._kafka.KafkaError._PARTITION_EOF:
                    waiting.discard((message.topic(), message.partition()))
                elif error is not None:
                    raise WireError(f"scanning {message.topic()}: {error}", error.code())
                else:
                    headers = tuple((name, value or b"") for name, value in message.headers() or ())
                    if header in headers:
                        epoch = message.leader_epoch()
                        ref = RecordRef(
                            message.topic(),
                            message.partition(),
                            message.offset(),
                            -1 if epoch is None else epoch,
                            ids.get(message.topic()) or NO_TOPIC_ID,
                        )
                        found.append(StoredRecord(ref, message.key(), message.value(), headers))
        finally:
            consumer.close()
        return found

    def close(self, timeout: float) -> None:
        self._producer.flush(timeout)
        if self._transactional is not None:
            self._transactional.flush(timeout)
        with self._epochs_lock:
            if self._epochs is not None:
                self._epochs.close()
                self._epochs = None
