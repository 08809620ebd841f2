"""The engine's typed errors and the one table that maps them to Kafka codes.

Every error names, in ``kafka_error``, the error a Kafka broker returns for
the same fault; ``ERROR_CODES`` turns that name into the wire code, so the
embedded API raises these classes and the wire server answers with the code.
"""

from __future__ import annotations

from typing import ClassVar

ERROR_CODES: dict[str, int] = {
    "UNKNOWN_SERVER_ERROR": -1,
    "NONE": 0,
    "OFFSET_OUT_OF_RANGE": 1,
    "CORRUPT_MESSAGE": 2,
    "UNKNOWN_TOPIC_OR_PARTITION": 3,
    "INVALID_FETCH_SIZE": 4,
    "LEADER_NOT_AVAILABLE": 5,
    "NOT_LEADER_OR_FOLLOWER": 6,
    "REQUEST_TIMED_OUT": 7,
    "BROKER_NOT_AVAILABLE": 8,
    "REPLICA_NOT_AVAILABLE": 9,
    "MESSAGE_TOO_LARGE": 10,
    "OFFSET_METADATA_TOO_LARGE": 12,
    "NETWORK_EXCEPTION": 13,
    "COORDINATOR_LOAD_IN_PROGRESS": 14,
    "COORDINATOR_NOT_AVAILABLE": 15,
    "NOT_COORDINATOR": 16,
    "INVALID_TOPIC_EXCEPTION": 17,
    "RECORD_LIST_TOO_LARGE": 18,
    "INVALID_REQUIRED_ACKS": 21,
    "ILLEGAL_GENERATION": 22,
    "INCONSISTENT_GROUP_PROTOCOL": 23,
    "INVALID_GROUP_ID": 24,
    "UNKNOWN_MEMBER_ID": 25,
    "INVALID_SESSION_TIMEOUT": 26,
    "REBALANCE_IN_PROGRESS": 27,
    "INVALID_COMMIT_OFFSET_SIZE": 28,
    "INVALID_TIMESTAMP": 32,
    "UNSUPPORTED_VERSION": 35,
    "TOPIC_ALREADY_EXISTS": 36,
    "INVALID_PARTITIONS": 37,
    "INVALID_REPLICATION_FACTOR": 38,
    "INVALID_REPLICA_ASSIGNMENT": 39,
    "INVALID_CONFIG": 40,
    "INVALID_REQUEST": 42,
    "POLICY_VIOLATION": 44,
    "OUT_OF_ORDER_SEQUENCE_NUMBER": 45,
    "DUPLICATE_SEQUENCE_NUMBER": 46,
    "INVALID_PRODUCER_EPOCH": 47,
    "INVALID_TXN_STATE": 48,
    "INVALID_PRODUCER_ID_MAPPING": 49,
    "INVALID_TRANSACTION_TIMEOUT": 50,
    "CONCURRENT_TRANSACTIONS": 51,
    "TRANSACTION_COORDINATOR_FENCED": 52,
    "OPERATION_NOT_ATTEMPTED": 55,
    "KAFKA_STORAGE_ERROR": 56,
    "UNKNOWN_PRODUCER_ID": 59,
    "NON_EMPTY_GROUP": 68,
    "GROUP_ID_NOT_FOUND": 69,
    "FETCH_SESSION_ID_NOT_FOUND": 70,
    "INVALID_FETCH_SESSION_EPOCH": 71,
    "FENCED_LEADER_EPOCH": 74,
    "UNKNOWN_LEADER_EPOCH": 75,
    "UNSUPPORTED_COMPRESSION_TYPE": 76,
    "OFFSET_NOT_AVAILABLE": 78,
    "MEMBER_ID_REQUIRED": 79,
    "GROUP_MAX_SIZE_REACHED": 81,
    "FENCED_INSTANCE_ID": 82,
    "GROUP_SUBSCRIBED_TO_TOPIC": 86,
    "INVALID_RECORD": 87,
    "UNSTABLE_OFFSET_COMMIT": 88,
    "PRODUCER_FENCED": 90,
    "UNKNOWN_TOPIC_ID": 100,
    "TRANSACTIONAL_ID_NOT_FOUND": 105,
    "FENCED_MEMBER_EPOCH": 110,
    "UNRELEASED_INSTANCE_ID": 111,
    "UNSUPPORTED_ASSIGNOR": 112,
    "STALE_MEMBER_EPOCH": 113,
    "UNSUPPORTED_ENDPOINT_TYPE": 115,
    "TRANSACTION_ABORTABLE": 120,
    "INVALID_REGULAR_EXPRESSION": 128,
}


RecordError = tuple[int, str]
"""A refused record: its index in its batch and why (KIP-467's batch_index
and batch_index_error_message in the Produce response)."""


class EngineError(Exception):
    """Base class of every engine error."""

    kafka_error: ClassVar[str] = "UNKNOWN_SERVER_ERROR"
    record_errors: tuple[RecordError, ...] = ()
    """The records of a produced batch that caused the error, if it is theirs."""

    @property
    def error_code(self) -> int:
        return ERROR_CODES[self.kafka_error]


class UnknownTopic(EngineError):
    kafka_error = "UNKNOWN_TOPIC_OR_PARTITION"

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist")
        self.topic = topic


class UnknownPartition(EngineError):
    kafka_error = "UNKNOWN_TOPIC_OR_PARTITION"

    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        super().__init__(f"topic {topic!r} has {partitions} partitions, not partition {partition}")
        self.topic = topic
        self.partition = partition


class TopicExists(EngineError):
    kafka_error = "TOPIC_ALREADY_EXISTS"

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} already exists")
        self.topic = topic


class InvalidTopic(EngineError):
    kafka_error = "INVALID_TOPIC_EXCEPTION"


class InvalidPartitions(EngineError):
    kafka_error = "INVALID_PARTITIONS"


class InvalidReplicationFactor(EngineError):
    kafka_error = "INVALID_REPLICATION_FACTOR"


class InvalidConfig(EngineError):
    kafka_error = "INVALID_CONFIG"

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(f"invalid value {value!r} for config {name}: {reason}")
        self.name = name
        self.value = value


class InvalidRecord(EngineError):
    """A produced batch is malformed or breaks the topic's rules."""

    kafka_error = "INVALID_RECORD"

    def __init__(self, message: str = "", record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class CorruptRecord(InvalidRecord):
    """A produced batch fails its CRC or framing checks."""

    kafka_error = "CORRUPT_MESSAGE"


class UnsupportedCompressionType(InvalidRecord):
    kafka_error = "UNSUPPORTED_COMPRESSION_TYPE"


class RecordTooLarge(EngineError):
    kafka_error = "MESSAGE_TOO_LARGE"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a record batch of {size} bytes exceeds max.message.bytes {limit}")
        self.size = size
        self.limit = limit


class InvalidTimestamp(EngineError):
    kafka_error = "INVALID_TIMESTAMP"

    def __init__(self, message: str = "", record_errors: tuple[RecordError, ...] = ()) -> None:
        super().__init__(message)
        self.record_errors = record_errors


class OutOfOrderSequence(EngineError):
    kafka_error = "OUT_OF_ORDER_SEQUENCE_NUMBER"

    def __init__(self, producer_id: int, expected: int, found: int) -> None:
        super().__init__(
            f"producer {producer_id}: sequence {found} is out of order, expected {expected}"
        )
        self.producer_id = producer_id
        self.expected = expected
        self.found = found


class InvalidProducerEpoch(EngineError):
    kafka_error = "INVALID_PRODUCER_EPOCH"

    def __init__(self, producer_id: int, epoch: int, current: int) -> None:
        super().__init__(f"producer {producer_id}: epoch {epoch} is older than epoch {current}")
        self.producer_id = producer_id
        self.epoch = epoch
        self.current = current


class InvalidTxnState(EngineError):
    kafka_error = "INVALID_TXN_STATE"


class OffsetOutOfRange(EngineError):
    kafka_error = "OFFSET_OUT_OF_RANGE"

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

    kafka_error = "NOT_LEADER_OR_FOLLOWER"


class EngineClosed(EngineError):
    kafka_error = "NOT_LEADER_OR_FOLLOWER"

    def __init__(self) -> None:
        super().__init__("the engine is closed")


class StorageError(EngineError):
    """The WAL or object storage failed; appends are refused until reopened."""

    kafka_error = "KAFKA_STORAGE_ERROR"


class CorruptStoredData(EngineError):
    """Stored data of a partition fails its checks when read back (a damaged
    object in object storage): the records from ``offset`` cannot be served.
    Kafka's CORRUPT_MESSAGE, which consumers surface to the application
    (KAFKA_STORAGE_ERROR would have them retry quietly for ever)."""

    kafka_error = "CORRUPT_MESSAGE"

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


def error_code(error: BaseException) -> int:
    """The Kafka error code for any exception (UNKNOWN_SERVER_ERROR if untyped)."""
    name = getattr(error, "kafka_error", "UNKNOWN_SERVER_ERROR")
    return ERROR_CODES.get(name, -1)


# -- transactions


class ProducerFenced(EngineError):
    """A newer producer with the same transactional id has the id now (its
    InitProducerId bumped the epoch), or the coordinator aborted the
    transaction on timeout and bumped it."""

    kafka_error = "PRODUCER_FENCED"

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

    kafka_error = "INVALID_PRODUCER_ID_MAPPING"


class InvalidTransactionTimeout(EngineError):
    kafka_error = "INVALID_TRANSACTION_TIMEOUT"

    def __init__(self, timeout_ms: int, max_timeout_ms: int) -> None:
        super().__init__(
            f"transaction timeout {timeout_ms} ms is not in [1, {max_timeout_ms}] "
            "(transaction.max.timeout.ms)"
        )
        self.timeout_ms = timeout_ms
        self.max_timeout_ms = max_timeout_ms


class ConcurrentTransactions(EngineError):
    """The transactional id is completing a transaction; retry shortly."""

    kafka_error = "CONCURRENT_TRANSACTIONS"


class TransactionalIdNotFound(EngineError):
    kafka_error = "TRANSACTIONAL_ID_NOT_FOUND"

    def __init__(self, transactional_id: str) -> None:
        super().__init__(f"no transactional id {transactional_id!r}")
        self.transactional_id = transactional_id


class InvalidTransactionRequest(EngineError):
    """A transaction request that is malformed (an empty transactional id,
    a producer id without an epoch)."""

    kafka_error = "INVALID_REQUEST"


class CoordinatorNotAvailable(EngineError):
    """The coordinator cannot serve the request now (its state is being
    written, or a coordinator it needs is missing); clients retry."""

    kafka_error = "COORDINATOR_NOT_AVAILABLE"


# -- consumer groups


class GroupError(EngineError):
    """A consumer group request the group coordinator refuses as a whole."""


class InvalidGroupId(GroupError):
    kafka_error = "INVALID_GROUP_ID"

    def __init__(self, group_id: str | None) -> None:
        super().__init__(f"invalid group id {group_id!r}")
        self.group_id = group_id


class GroupIdNotFound(GroupError):
    kafka_error = "GROUP_ID_NOT_FOUND"

    def __init__(self, group_id: str) -> None:
        super().__init__(f"group {group_id!r} does not exist")
        self.group_id = group_id


class NonEmptyGroup(GroupError):
    """The group has members, and the request needs it without any."""

    kafka_error = "NON_EMPTY_GROUP"

    def __init__(self, group_id: str, state: str) -> None:
        super().__init__(f"group {group_id!r} has members (state {state})")
        self.group_id = group_id
        self.state = state


class NotCoordinator(GroupError):
    """The coordinator has closed (or its storage was taken over)."""

    kafka_error = "NOT_COORDINATOR"


class UnknownMemberId(GroupError):
    kafka_error = "UNKNOWN_MEMBER_ID"


class IllegalGeneration(GroupError):
    kafka_error = "ILLEGAL_GENERATION"


class RebalanceInProgress(GroupError):
    kafka_error = "REBALANCE_IN_PROGRESS"


class InconsistentGroupProtocol(GroupError):
    kafka_error = "INCONSISTENT_GROUP_PROTOCOL"


class InvalidSessionTimeout(GroupError):
    kafka_error = "INVALID_SESSION_TIMEOUT"


class GroupMaxSizeReached(GroupError):
    kafka_error = "GROUP_MAX_SIZE_REACHED"


class FencedInstanceId(GroupError):
    """Another consumer joined with the same group.instance.id."""

    kafka_error = "FENCED_INSTANCE_ID"


class OffsetMetadataTooLarge(GroupError):
    kafka_error = "OFFSET_METADATA_TOO_LARGE"


class UnstableOffsetCommit(GroupError):
    """A transaction has offsets pending for the partition."""

    kafka_error = "UNSTABLE_OFFSET_COMMIT"


# -- consumer groups (KIP-848)


class FencedMemberEpoch(GroupError):
    """A member of a consumer group claims an epoch the coordinator never
    gave it: it must give up its partitions and join again."""

    kafka_error = "FENCED_MEMBER_EPOCH"


class StaleMemberEpoch(GroupError):
    """A commit or fetch in an older member epoch than the member's."""

    kafka_error = "STALE_MEMBER_EPOCH"
