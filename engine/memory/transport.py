"""How an :class:`~engine.memory.agent.AgentMemory` writes and reads records:
the :class:`Transport` it needs, and the embedded one (the engine's own
producers and consumer, as a principal). The wire one, over a Kafka client,
is engine/memory/wire.py.

Every write returns once the record is durable (idempotent producer, the
topic's durability level), with the leader epoch it was written in and the
id of the topic it is in; every wait is bounded by the timeout given.

A topic deleted and created again under the same name is another topic:
a ref names one by its id, and a read or a write that the topic's deletion
overlapped raises UnknownTopicId rather than name a record of the other
(:func:`same_topic`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple, Protocol

from engine.authorization import ANONYMOUS, AclOperation
from engine.client.access import Access
from engine.errors import EngineError, OffsetOutOfRange, UnknownTopic, UnknownTopicId
from engine.memory.snapshot import check_record
from engine.memory.vector import RecordRef
from engine.protocol.kafka_code import KafkaCode
from engine.topic_id import NO_TOPIC_ID
from engine.types import ConsumerRecord, Header, RecordMetadata, TopicPartition

if TYPE_CHECKING:
    from engine.client.producer import Producer
    from engine.client.transactional_producer import TransactionalProducer
    from engine.engine import Engine
    from engine.partition import Partition

LATEST = -1
"""ListOffsets' timestamp for the end of a partition."""
READ_COMMITTED = "read_committed"


class RecordNotFound(EngineError):
    """No record is stored at a reference (deleted, beyond the end, or not
    visible to read_committed readers). ``log_start_offset`` and
    ``high_watermark``: the partition's log, when the reference is outside
    it (None when it is inside)."""

    code = KafkaCode.OFFSET_OUT_OF_RANGE

    def __init__(
        self,
        message: str,
        *,
        log_start_offset: int | None = None,
        high_watermark: int | None = None,
    ) -> None:
        super().__init__(message)
        self.log_start_offset = log_start_offset
        self.high_watermark = high_watermark


class StoredRecord(NamedTuple):
    """A record read back by its reference."""

    ref: RecordRef
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


class Transport(Protocol):
    def write(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef: ...

    def begin(self, timeout: float) -> None: ...

    def write_in_transaction(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef: ...

    def commit(self, timeout: float) -> None: ...

    def abort(self, timeout: float) -> None: ...

    def read(self, ref: RecordRef, timeout: float) -> StoredRecord: ...

    def scan(self, topics: Sequence[str], header: Header, timeout: float) -> list[StoredRecord]:
        """The committed records of ``topics`` that carry ``header``, from
        each partition's start to its last stable offset when the scan began."""
        ...

    def close(self, timeout: float) -> None: ...


def same_topic(topic: str, wanted: bytes, found: bytes | None) -> bytes:
    """``found``, the id of the topic named ``topic`` now (None: there is
    none), if it is the topic ``wanted`` names (NO_TOPIC_ID: any topic of
    the name); UnknownTopicId if ``wanted`` names a topic that is gone.
    Asked before and after a read or write, with the id found first as
    ``wanted`` the second time: ids are never reused, so the same id at
    both ends means the same topic throughout."""
    if found is None:
        if wanted == NO_TOPIC_ID:
            raise UnknownTopic(topic)
        raise UnknownTopicId(topic, wanted)
    if wanted not in (NO_TOPIC_ID, found):
        raise UnknownTopicId(topic, wanted)
    return found


@contextmanager
def scanned_topics(
    ids: Mapping[str, bytes | None], topic_id: Callable[[str], bytes | None]
) -> Iterator[None]:
    """UnknownTopicId for a scan of a topic that ``ids`` (the id of each
    topic named, as the scan began; None: no such topic) names and that is
    gone, or another, by its end (``topic_id`` finds the one of the name
    now): at the end of a scan, and in place of any error it raised (an
    Exception, never a cancellation), which a deletion under a scan brings
    about as often as not (a partition the scan listed is in no topic of
    the name any more, or is empty while the scan waits for records). A
    scan's records are of one incarnation of each topic, or there is no
    answer."""
    try:
        yield
    except Exception as error:
        try:
            same_topics(ids, topic_id)
        except UnknownTopicId as gone:
            raise gone from error
        except Exception:
            pass  # the check could not tell (its own wait ran out): the scan's error stands
        raise
    same_topics(ids, topic_id)


def same_topics(ids: Mapping[str, bytes | None], topic_id: Callable[[str], bytes | None]) -> None:
    """``same_topic`` for each topic ``ids`` names an id of."""
    for topic, named in ids.items():
        if named is not None:
            same_topic(topic, named, topic_id(topic))


class EmbeddedTransport:
    """The engine's embedded producer (idempotent), transactional producer
    (made on the first transaction) and consumer, all as ``principal``."""

    def __init__(
        self,
        engine: Engine,
        *,
        principal: str = ANONYMOUS,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = 60_000,
    ) -> None:
        self._engine = engine
        self._principal = principal
        self._producer: Producer = engine.producer(principal=principal)
        self._transactional_id = transactional_id
        self._transaction_timeout_ms = transaction_timeout_ms
        self._transactional: TransactionalProducer | None = None

    def _topic_id(self, topic: str) -> bytes | None:
        try:
            return self._engine.topic_id(topic)
        except UnknownTopic:
            return None

    def _ref(self, topic: str, written: RecordMetadata, sent_to: bytes | None) -> RecordRef:
        """The ref of a record written to ``topic``, whose id was ``sent_to``
        when the record was sent (None: no such topic yet; a send may create it)."""
        leader = self._engine.partition(topic, written.partition)
        # The leader's epoch is what it stamped into the batch; the leader
        # found after the write is the one written to if it is of the topic
        # sent to (a leader serves one topic, and ids are never reused).
        same_topic(topic, sent_to or NO_TOPIC_ID, leader.topic_id)
        return RecordRef(
            topic, written.partition, written.offset, leader.leader_epoch, leader.topic_id
        )

    def write(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef:
        sent_to = self._topic_id(topic)
        written = self._producer.send(topic, value, key, headers).result(timeout)
        return self._ref(topic, written, sent_to)

    def begin(self, timeout: float) -> None:
        if self._transactional is None:
            transactional = self._engine.producer(
                transactional_id=self._transactional_id or f"tidelog-agent-{uuid.uuid4()}",
                transaction_timeout_ms=self._transaction_timeout_ms,
                principal=self._principal,
            )
            try:
                transactional.init_transactions(timeout)
            except BaseException:
                transactional.close(timeout)
                raise
            self._transactional = transactional
        self._transactional.begin_transaction()

    def _in_transaction(self) -> TransactionalProducer:
        if self._transactional is None:
            raise RuntimeError("begin() comes first")
        return self._transactional

    def write_in_transaction(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[Header],
        timeout: float,
    ) -> RecordRef:
        sent_to = self._topic_id(topic)
        written = self._in_transaction().send(topic, value, key, headers).result(timeout)
        return self._ref(topic, written, sent_to)

    def commit(self, timeout: float) -> None:
        self._in_transaction().commit_transaction(timeout)

    def abort(self, timeout: float) -> None:
        self._in_transaction().abort_transaction(timeout)

    def read(self, ref: RecordRef, timeout: float) -> StoredRecord:
        topic_id = same_topic(ref.topic, ref.topic_id, self._topic_id(ref.topic))
        stored = self._read(ref.with_topic_id(topic_id), timeout)
        same_topic(ref.topic, topic_id, self._topic_id(ref.topic))
        return stored

    def _read(self, ref: RecordRef, timeout: float) -> StoredRecord:
        with self._engine.consumer(
            principal=self._principal,
            isolation_level=READ_COMMITTED,
            enable_auto_commit=False,
            # An offset that leaves the log mid-read (DeleteRecords,
            # retention) raises rather than move the reader to the log's end.
            auto_offset_reset="none",
        ) as consumer:
            consumer.assign([(ref.topic, ref.partition)])  # first: it checks the principal
            leader = self._engine.partition(ref.topic, ref.partition)
            log_start, end = leader.log_start_offset, leader.high_watermark
            if not log_start <= ref.offset < end:
                # Outside the log: waiting could only run out the timeout (as
                # over the wire). Not so at or past the last stable offset: a
                # record there is given once the transactions before it end.
                raise RecordNotFound(
                    f"no record at {ref}: the partition holds [{log_start}, {end})",
                    log_start_offset=log_start,
                    high_watermark=end,
                )
            # A ref whose epoch the log says ended before it names a record a
            # takeover lost: the one there now is another's (docs/design/0046).
            check_record(leader, ref.offset, ref.leader_epoch)
            where = TopicPartition(ref.topic, ref.partition)
            consumer.seek(where, ref.offset)
            deadline = self._engine.clock.monotonic() + timeout
            # The first poll only fetches: a ref the reader passes over
            # without a record is refused before any wait.
            remaining = 0.0
            while True:
                try:
                    polled = consumer.poll(remaining, max_records=1)
                except OffsetOutOfRange as error:
                    raise RecordNotFound(
                        f"no record at {ref}: the partition holds "
                        f"[{error.log_start_offset}, {error.high_watermark}) now",
                        log_start_offset=error.log_start_offset,
                        high_watermark=error.high_watermark,
                    ) from error
                for record in polled:
                    if record.offset == ref.offset:
                        return StoredRecord(ref, record.key, record.value, record.headers)
                    raise RecordNotFound(f"no record at {ref} (the next is at {record.offset})")
                if consumer.position(where) > ref.offset:
                    raise RecordNotFound(passed_over(ref))
                remaining = deadline - self._engine.clock.monotonic()
                if remaining <= 0:
                    break
        raise RecordNotFound(f"no record at {ref} within {timeout} s")

    def scan(self, topics: Sequence[str], header: Header, timeout: float) -> list[StoredRecord]:
        # First, as Kafka answers TOPIC_AUTHORIZATION_FAILED whether a topic
        # exists or not: a principal that may not read learns nothing else,
        # so the refusal is outside the scan whose errors a deletion turns
        # into UnknownTopicId (which would tell the topic's id).
        access = Access(self._engine.authorizer, self._principal)
        for topic in topics:
            access.topic(AclOperation.READ, topic)
        ids = {topic: self._topic_id(topic) for topic in topics}
        with scanned_topics(ids, self._topic_id):
            return self._scan(topics, header, timeout)

    def _scan(self, topics: Sequence[str], header: Header, timeout: float) -> list[StoredRecord]:
        partitions = self._engine.topic_partitions(topics)
        stable = {
            tp: self._engine.list_offset(tp.topic, tp.partition, LATEST, READ_COMMITTED).offset
            for tp in partitions
        }
        found: list[StoredRecord] = []
        clock = self._engine.clock
        deadline = clock.monotonic() + timeout
        with self._engine.consumer(
            principal=self._principal, isolation_level=READ_COMMITTED, enable_auto_commit=False
        ) as consumer:
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            while any(consumer.position(tp) < end for tp, end in stable.items()):
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"scanning {', '.join(topics)} took over {timeout} s")
                for record in consumer.poll(remaining):
                    if header in record.headers and record.offset < stable[_tp(record)]:
                        leader = self._engine.partition(record.topic, record.partition)
                        epoch = _epoch_at(leader, record.offset)
                        ref = RecordRef(
                            record.topic, record.partition, record.offset, epoch, leader.topic_id
                        )
                        found.append(StoredRecord(ref, record.key, record.value, record.headers))
        return found

    def close(self, timeout: float) -> None:
        self._producer.close(timeout)
        if self._transactional is not None:
            self._transactional.close(timeout)


def passed_over(where: object) -> str:
    """Why a ref whose offset a reader moved past without a record is
    refused: nothing readable is there, and nothing ever will be, so a wait
    could only run out the read's timeout (docs/design/0046)."""
    return (
        f"no record at {where}: the reader passed over its offset (a record "
        "of an aborted transaction, or a transaction marker)"
    )


def _tp(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def _epoch_at(partition: Partition, offset: int) -> int:
    """The leader epoch the batch holding ``offset`` was written in (-1: not known)."""
    epoch = -1
    for started, start_offset in partition.leader_epochs:
        if start_offset > offset:
            break
        epoch = started
    return epoch
