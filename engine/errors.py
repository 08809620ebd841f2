"""The engine's typed errors, each carrying the Kafka code a broker answers
for the same fault.

Every class names its ``code`` (a ``KafkaCode``) on the class, so the
embedded API raises these classes and the wire server answers with the code;
``error_class`` goes back from a code to the class, from a table built from
the subclasses themselves.
"""

from __future__ import annotations

from typing import ClassVar

from engine.protocol.kafka_code import KafkaCode
from engine.topic_id import uuid_text

RecordError = tuple[int, str]
"""A refused record: its index in its batch and why (KIP-467's batch_index
and batch_index_error_message in the Produce response)."""


class EngineError(Exception):
    """Base class of every engine error."""

    code: ClassVar[KafkaCode] = KafkaCode.UNKNOWN_SERVER_ERROR
    record_errors: tuple[RecordError, ...] = ()
    """The records of a produced batch that caused the error, if it is theirs."""

    @property
    def error_code(self) -> KafkaCode:
        return self.code


class UnknownTopic(EngineError):
    code = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist")
        self.topic = topic


class UnknownTopicId(EngineError):
    """No topic has the id a reference names: the topic it was in was deleted
    (one created since under the same name has another id)."""

    code = KafkaCode.UNKNOWN_TOPIC_ID

    def __init__(self, topic: str, topic_id: bytes) -> None:
        super().__init__(
            f"topic {topic!r} with id {uuid_text(topic_id)} does not exist (deleted; "
            "a topic of that name now, if any, is another)"
        )
        self.topic = topic
        self.topic_id = topic_id


class UnknownPartition(EngineError):
    code = KafkaCode.UNKNOWN_TOPIC_OR_PARTITION

    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        super().__init__(f"topic {topic!r} has {partitions} partitions, not partition {partition}")
        self.topic = topic
        self.partition = partition


class TopicExists(EngineError):
    code = KafkaCode.TOPIC_ALREADY_EXISTS

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} already exists")
        self.topic = topic


class InvalidTopic(EngineError):
    code = KafkaCode.INVALID_TOPIC_EXCEPTION


class InvalidPartitions(EngineError):
    code = KafkaCode.INVALID_PARTITIONS


class InvalidReplicationFactor(EngineError):
    code = KafkaCode.INVALID_REPLICATION_FACTOR


class InvalidConfig(EngineError):
    code = KafkaCode.INVALID_CONFIG

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(f"invalid value {value!r} for config {name}: {reason}")
        self.name = name
        self.value = value


class ResourceNamedTwice(EngineError):
    """One alteration of several names a resource twice: each would be
    checked against the configs before the other, so the two could not be
    applied together as checked (Kafka's AlterConfigs: INVALID_REQUEST)."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self, resource: str) -> None:
        super().__init__(f"{resource!r} is named more than once; name each resource once")
        self.resource = resource


class InvalidRecord(EngineError):
    """A produced batch is malformed or breaks the topic's rules."""

    code = KafkaCode.INVALID_RECORD

    def __init__(self, message: str = "", record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class CorruptRecord(InvalidRecord):
    """A produced batch fails its CRC or framing checks."""

    code = KafkaCode.CORRUPT_MESSAGE


class UnsupportedCompressionType(InvalidRecord):
    code = KafkaCode.UNSUPPORTED_COMPRESSION_TYPE


class RecordTooLarge(EngineError):
    code = KafkaCode.MESSAGE_TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a record batch of {size} bytes exceeds max.message.bytes {limit}")
        self.size = size
        self.limit = limit


class RecordListTooLarge(EngineError):
    """An append larger than one WAL record holds (the store's
    ``max_append_bytes``, from wal_segment_bytes) was refused and changed
    nothing; as Kafka refuses a batch larger than a log segment
    (RecordBatchTooLargeException). A coordinator refused a record of its
    own state this way answers what Kafka's does (UNKNOWN_SERVER_ERROR)."""

    code = KafkaCode.RECORD_LIST_TOO_LARGE

    def __init__(self, size: int, limit: int, message: str = "") -> None:
        super().__init__(message or f"an append of {size} bytes exceeds the {limit} a record holds")
        self.size = size
        self.limit = limit


class StateRecordTooLarge(EngineError):
    """A coordinator's record of its own state is larger than one WAL
    record holds (a transaction's partition set grown past it): refused,
    the state stays as it was. Kafka's TransactionStateManager answers an
    append refused with MESSAGE_TOO_LARGE or RECORD_LIST_TOO_LARGE
    UNKNOWN_SERVER_ERROR."""

    code = KafkaCode.UNKNOWN_SERVER_ERROR


class InvalidTimestamp(EngineError):
    code = KafkaCode.INVALID_TIMESTAMP

    def __init__(self, message: str = "", record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class OutOfOrderSequence(EngineError):
    code = KafkaCode.OUT_OF_ORDER_SEQUENCE_NUMBER

    def __init__(self, producer_id: int, expected: int, found: int) -> None:
        super().__init__(
            f"producer {producer_id}: sequence {found} is out of order, expected {expected}"
        )
        self.producer_id = producer_id
        self.expected = expected
        self.found = found


class InvalidProducerEpoch(EngineError):
    code = KafkaCode.INVALID_PRODUCER_EPOCH

    def __init__(self, producer_id: int, epoch: int, current: int) -> None:
        super().__init__(f"producer {producer_id}: epoch {epoch} is older than epoch {current}")
        self.producer_id = producer_id
        self.epoch = epoch
        self.current = current


class InvalidTxnState(EngineError):
    code = KafkaCode.INVALID_TXN_STATE


class NotInTransaction(InvalidTxnState):
    """A transactional write its producer's open transaction does not
    include (a batch for a partition with no AddPartitionsToTxn, offsets of
    a group with no AddOffsetsToTxn, or no transaction open): what Kafka's
    transaction verification refuses (KIP-890). Kafka answers it
    TRANSACTION_ABORTABLE to a client that knows that code (Produce v11,
    TxnOffsetCommit v4: AddPartitionsToTxnManager's genericError),
    INVALID_TXN_STATE before. A write that passed the check and that its
    transaction's end voided before it was durable is no such refusal: it
    stays INVALID_TXN_STATE at every version, as Kafka's verification
    guard refuses that append (UnifiedLog: "Record was not part of an
    ongoing transaction")."""


class OffsetOutOfRange(EngineError):
    code = KafkaCode.OFFSET_OUT_OF_RANGE

    def __init__(self, topic: str, partition: int, offset: int, start: int, end: int) -> None:
        super().__init__(
            f"{topic}-{partition}: offset {offset} is outside the log [{start}, {end}]"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.log_start_offset = start
        self.high_watermark = end


class Fenced(EngineError):
    """Another engine opened the same storage; this one no longer leads anything."""

    code = KafkaCode.NOT_LEADER_OR_FOLLOWER


class EngineClosed(EngineError):
    code = KafkaCode.NOT_LEADER_OR_FOLLOWER

    def __init__(self) -> None:
        super().__init__("the engine is closed")


class FlushInCallback(EngineError):
    """A producer's flush called from a delivery callback. Callbacks run on
    the thread that settles records (the WAL's group commit, shared by
    every producer of the engine): a flush there waits for records only
    that thread settles, and would hold every producer's writes until it
    timed out, or for ever. Kafka's KafkaProducer.flush refuses the same
    from its I/O thread, with the same words."""

    def __init__(self) -> None:
        super().__init__(
            "Producer.flush() invocation inside a callback is not permitted "
            "because it may lead to deadlock"
        )


class BufferExhausted(EngineError, TimeoutError):
    """An embedded producer's queue stayed full for ``max_block_ms``: the
    engine takes no more appends (its object store unreachable, say, with
    ``max_unuploaded_bytes`` reached). Kafka's producer raises its
    BufferExhaustedException (a TimeoutException) after max.block.ms the
    same way; the record was not queued, so sending it again is safe."""

    code = KafkaCode.REQUEST_TIMED_OUT

    def __init__(self, queued_bytes: int, max_queued_bytes: int, max_block_ms: float) -> None:
        super().__init__(
            f"{queued_bytes} bytes stayed queued (max_queued_bytes {max_queued_bytes}) "
            f"for max_block_ms {max_block_ms:g}: the engine is not taking appends; "
            f"send again once it does, or raise max_block_ms"
        )
        self.queued_bytes = queued_bytes
        self.max_queued_bytes = max_queued_bytes
        self.max_block_ms = max_block_ms


class AdminTimedOut(EngineError):
    """An admin change (creating topics or partitions) was not committed
    before its request's timeout: the object store failed transiently all
    along, or another commit held the manifest. Nothing it asked for is in
    force, now or after a restart: ask again once the store answers.
    Kafka's controller answers REQUEST_TIMED_OUT for the same expiry, after
    which its change may still complete; here it never does."""

    code = KafkaCode.REQUEST_TIMED_OUT

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; nothing was changed: ask again once the object store answers")
        self.what = what


class StorageError(EngineError):
    """The WAL or object storage failed; appends are refused until reopened."""

    code = KafkaCode.KAFKA_STORAGE_ERROR


class StoreWriteFailed(StorageError):
    """The object store did not take a write the engine made on the caller's
    behalf (a manifest commit creating or deleting streams, an object): a
    refusal its retries cannot get past (denied access, a missing bucket),
    or a transient failure they gave up on. The change it carried is not in
    force, here or after a restart; the same request succeeds once the store
    takes writes again. Kafka's KAFKA_STORAGE_ERROR, as for a log dir that
    failed under a write (the code StorageError answers for the WAL's)."""

    def __init__(self, reason: str, *, transient: bool, advice: str = "") -> None:
        then = "retry once the store answers" if transient else "retry once the store is fixed"
        super().__init__(
            f"the object store did not take a write ({reason}); nothing was changed: {then}{advice}"
        )
        self.reason = reason
        self.transient = transient


class StoreUnavailable(EngineError):
    """The object store did not answer a read of a partition's stored data:
    a timeout, a 5xx, a dropped connection (what its own retries and
    hedging gave up on: ``transient``), or a refusal no retry of its own
    gets past (denied access, a missing bucket: fixed by the operator).
    Nothing is lost and the partition keeps serving its tail; the same read
    succeeds once the store answers. Kafka's KAFKA_STORAGE_ERROR for a log
    it cannot read (a log dir that failed, whatever the cause), which
    consumers retry (librdkafka, the Java client), for this partition alone."""

    code = KafkaCode.KAFKA_STORAGE_ERROR

    def __init__(
        self, topic: str, partition: int, reason: str, *, transient: bool = True, advice: str = ""
    ) -> None:
        then = "retry once the store answers" if transient else "retry once the store is fixed"
        super().__init__(
            f"{topic}-{partition}: the stored data could not be read from the object "
            f"store ({reason}); nothing is lost: {then}{advice}"
        )
        self.topic = topic
        self.partition = partition
        self.reason = reason
        self.transient = transient


class CatalogDamaged(EngineError, ValueError):
    """The catalog stream starts with a snapshot in parts that cannot be
    joined. The stream is trimmed to a snapshot's opening record only once
    every part is durable (docs/design/0110), so one that starts there and
    joins none lost parts, and holds nothing else to read the topics from.
    A ValueError too, as the open's other refusals of what it read are;
    Kafka's CORRUPT_MESSAGE, as CorruptStoredData: no retry mends it."""

    code = KafkaCode.CORRUPT_MESSAGE

    def __init__(self, stream_id: int) -> None:
        super().__init__(
            f"stream {stream_id}: the catalog starts with a snapshot in parts "
            "that is not whole; the catalog is damaged"
        )
        self.stream_id = stream_id


class CorruptStoredData(EngineError):
    """Stored data of a partition fails its checks when read back (a damaged
    object in object storage): the records from ``offset`` cannot be served.
    Kafka's CORRUPT_MESSAGE, which consumers surface to the application
    (KAFKA_STORAGE_ERROR would have them retry quietly for ever)."""

    code = KafkaCode.CORRUPT_MESSAGE

    def __init__(self, topic: str, partition: int, offset: int, key: str, reason: str) -> None:
        super().__init__(
            f"{topic}-{partition}: the stored data at offset {offset} is damaged "
            f"(object {key!r}: {reason}); seek past it to read on"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.reason = reason


# -- transactions


class ProducerFenced(EngineError):
    """A newer producer with the same transactional id has the id now (its
    InitProducerId bumped the epoch), or the coordinator aborted the
    transaction on timeout and bumped it."""

    code = KafkaCode.PRODUCER_FENCED

    def __init__(self, transactional_id: str, epoch: int, current: int) -> None:
        super().__init__(
            f"transactional id {transactional_id!r}: epoch {epoch} is fenced, "
            f"the current epoch is {current}"
        )
        self.transactional_id = transactional_id
        self.epoch = epoch
        self.current = current


class InvalidProducerIdMapping(EngineError):
    """The transactional id is unknown, or has another producer id."""

    code = KafkaCode.INVALID_PRODUCER_ID_MAPPING


class InvalidTransactionTimeout(EngineError):
    code = KafkaCode.INVALID_TRANSACTION_TIMEOUT

    def __init__(self, timeout_ms: int, max_timeout_ms: int) -> None:
        super().__init__(
            f"transaction timeout {timeout_ms} ms is not in [1, {max_timeout_ms}] "
            "(transaction.max.timeout.ms)"
        )
        self.timeout_ms = timeout_ms
        self.max_timeout_ms = max_timeout_ms


class ConcurrentTransactions(EngineError):
    """The transactional id is completing a transaction; retry shortly."""

    code = KafkaCode.CONCURRENT_TRANSACTIONS


class TransactionalIdNotFound(EngineError):
    code = KafkaCode.TRANSACTIONAL_ID_NOT_FOUND

    def __init__(self, transactional_id: str) -> None:
        super().__init__(f"no transactional id {transactional_id!r}")
        self.transactional_id = transactional_id


class InvalidTransactionRequest(EngineError):
    """A transaction request that is malformed (an empty transactional id,
    a producer id without an epoch)."""

    code = KafkaCode.INVALID_REQUEST


class CoordinatorNotAvailable(EngineError):
    """The coordinator cannot serve the request now (its state is being
    written, or a coordinator it needs is missing); clients retry."""

    code = KafkaCode.COORDINATOR_NOT_AVAILABLE


class NotCoordinator(EngineError):
    """The coordinator (of groups or of transactions) has closed, or its
    state log can no longer be written (the store failed or was taken
    over): the client finds the coordinator again, as after it moved."""

    code = KafkaCode.NOT_COORDINATOR


class CoordinatorCannotWrite(NotCoordinator):
    """The coordinator's state log failed under a write, or its store was
    fenced or closed: it writes nothing until the engine is opened again.
    On the wire it is NOT_COORDINATOR, as Kafka's TransactionStateManager
    answers a log that failed or left the node (clients find the
    coordinator again, which serves once the engine is reopened); the
    embedded API raises it at once, as sending again cannot succeed."""


class CoordinatorClosed(NotCoordinator, EngineClosed):
    """A coordinator asked after its engine began to close. On the wire it
    is NOT_COORDINATOR, what a Kafka coordinator that is no longer the
    coordinator answers (its cache of states cleared at shutdown): clients
    look the coordinator up again and retry, where NOT_LEADER_OR_FOLLOWER,
    a partition's code, is sent again to the coordinator they knew
    (kafka-python) or taken as fatal. To the embedded API it is an
    EngineClosed too: this engine will not serve again, so an embedded
    caller stops rather than retrying as after a NotCoordinator."""

    def __init__(self, coordinator: str) -> None:
        EngineError.__init__(self, f"the {coordinator} coordinator is closed")


class GroupCoordinatorClosed(CoordinatorNotAvailable, EngineClosed):
    """The group coordinator was asked after its engine began to close. On
    the wire it is COORDINATOR_NOT_AVAILABLE, what Kafka 4's
    GroupCoordinatorService answers every group API while it is not
    active: clients look the coordinator up again and retry. To the
    embedded API it is an EngineClosed too: this engine will not serve
    again, so an embedded caller stops rather than retrying."""

    def __init__(self) -> None:
        EngineError.__init__(self, "the group coordinator is closed")


# -- consumer groups


class GroupError(EngineError):
    """A consumer group request the group coordinator refuses as a whole."""


class InvalidGroupId(GroupError):
    code = KafkaCode.INVALID_GROUP_ID

    def __init__(self, group_id: str | None) -> None:
        super().__init__(f"invalid group id {group_id!r}")
        self.group_id = group_id


class GroupIdNotFound(GroupError):
    code = KafkaCode.GROUP_ID_NOT_FOUND

    def __init__(self, group_id: str) -> None:
        super().__init__(f"group {group_id!r} does not exist")
        self.group_id = group_id


class NonEmptyGroup(GroupError):
    """The group has members, and the request needs it without any."""

    code = KafkaCode.NON_EMPTY_GROUP

    def __init__(self, group_id: str, state: str) -> None:
        super().__init__(f"group {group_id!r} has members (state {state})")
        self.group_id = group_id
        self.state = state


class UnknownMemberId(GroupError):
    code = KafkaCode.UNKNOWN_MEMBER_ID


class IllegalGeneration(GroupError):
    code = KafkaCode.ILLEGAL_GENERATION


class RebalanceInProgress(GroupError):
    code = KafkaCode.REBALANCE_IN_PROGRESS


class InconsistentGroupProtocol(GroupError):
    code = KafkaCode.INCONSISTENT_GROUP_PROTOCOL


class InvalidSessionTimeout(GroupError):
    code = KafkaCode.INVALID_SESSION_TIMEOUT


class MemberIdRequired(GroupError):
    code = KafkaCode.MEMBER_ID_REQUIRED


class GroupMaxSizeReached(GroupError):
    code = KafkaCode.GROUP_MAX_SIZE_REACHED


class FencedInstanceId(GroupError):
    """Another consumer joined with the same group.instance.id."""

    code = KafkaCode.FENCED_INSTANCE_ID


class GroupSubscribedToTopic(GroupError):
    code = KafkaCode.GROUP_SUBSCRIBED_TO_TOPIC


class OffsetMetadataTooLarge(GroupError):
    code = KafkaCode.OFFSET_METADATA_TOO_LARGE


class UnstableOffsetCommit(GroupError):
    """A transaction has offsets pending for the partition."""

    code = KafkaCode.UNSTABLE_OFFSET_COMMIT


# -- consumer groups (KIP-848)


class FencedMemberEpoch(GroupError):
    """A member of a consumer group claims an epoch the coordinator never
    gave it: it must give up its partitions and join again."""

    code = KafkaCode.FENCED_MEMBER_EPOCH


class StaleMemberEpoch(GroupError):
    """A commit or fetch in an older member epoch than the member's."""

    code = KafkaCode.STALE_MEMBER_EPOCH


def error_code(error: BaseException) -> KafkaCode:
    """The Kafka code to answer for an exception raised while serving a
    request: an engine error's own, UNKNOWN_SERVER_ERROR for anything else."""
    if isinstance(error, EngineError):
        return error.code
    return KafkaCode.UNKNOWN_SERVER_ERROR


def _raised_from_a_code(cls: type[EngineError]) -> bool:
    """Whether ``cls`` is built from a message alone (it adds no facts of its
    own), so a code someone answered can be raised as it."""
    return all(
        "__init__" not in vars(base) for base in cls.__mro__[: cls.__mro__.index(EngineError)]
    )


def _classes_by_code() -> dict[KafkaCode, type[EngineError]]:
    """Each code's class, from the subclasses of EngineError, breadth first
    and each level in the order defined: the most general class of a code is
    its class. Walked on each call (only errors are looked up) so that a
    subclass defined after this module, in a handler say, is found too."""
    table: dict[KafkaCode, type[EngineError]] = {}
    pending: list[type[EngineError]] = [EngineError]
    while pending:
        cls = pending.pop(0)
        if _raised_from_a_code(cls):
            table.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return table


def error_class(code: KafkaCode) -> type[EngineError] | None:
    """The error to raise for a code a coordinator answered, or None when no
    engine error carries that code with only a message."""
    return _classes_by_code().get(code)
