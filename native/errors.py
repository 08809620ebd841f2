"""Typed errors for record batches that fail framing or validation.

Each class names, in ``kafka_error``, the error a Kafka broker returns for the
same fault; the engine maps those names to wire codes in one table. Both
implementations raise these exact classes with the same facts.
"""

from __future__ import annotations

from typing import ClassVar


class BatchError(ValueError):
    """A record batch (or a buffer of them) is not acceptable."""

    kafka_error: ClassVar[str] = "CORRUPT_MESSAGE"

    def __init__(
        self,
        message: str,
        *,
        position: int,
        expected: int | None = None,
        found: int | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.expected = expected
        self.found = found

    def facts(self) -> tuple[object, ...]:
        """What the error says, comparable across implementations."""
        return (type(self), self.position, self.expected, self.found)


class TruncatedBatch(BatchError):
    """The buffer ends inside a batch: a header or the batch body is cut short."""


class InvalidBatchLength(BatchError):
    """batchLength is smaller than a v2 header (or, framing a Produce
    partition's records, than the least frame Kafka's iterator accepts)."""


class CorruptBatch(BatchError):
    """The stored CRC32C does not match the bytes it covers."""


class UnsupportedMagic(BatchError):
    """Not a v2 (magic 2) batch; Produce v3+ accepts only magic 2."""

    kafka_error = "INVALID_RECORD"


class InvalidMagic(UnsupportedMagic):
    """A magic byte no format has (below 0 or above 2): Kafka's MemoryRecords
    iterator refuses it as it frames the batch ("Invalid magic found in
    record", CorruptRecordException), before ProduceRequest.validateRecords
    would refuse magic 0 or 1 (INVALID_RECORD)."""

    kafka_error = "CORRUPT_MESSAGE"


class InvalidRecordCount(BatchError):
    """recordCount is not positive or disagrees with lastOffsetDelta."""

    kafka_error = "INVALID_RECORD"


class InvalidRecord(BatchError):
    """A record inside the batch is malformed (lengths, varints, headers)."""

    kafka_error = "INVALID_RECORD"


class UnsupportedCompression(BatchError):
    """The attributes name a compression codec Kafka does not define (5-7),
    or, framing a Produce partition's records with ``allow_zstd=False``
    (Produce before v7), zstd (``found`` 4)."""

    kafka_error = "UNSUPPORTED_COMPRESSION_TYPE"


class InflationLimitExceeded(BatchError):
    """A compressed batch inflates (or its codec claims it would) past the
    caller's limit; it is refused before the excess is ever allocated.

    Kafka's CORRUPT_MESSAGE covers a batch that "exceeds the valid size".
    ``expected`` is the limit, ``found`` how far inflation got (or the size a
    snappy block declares)."""


class SecondBatch(BatchError):
    """A whole batch follows the first where one is allowed (validate_batches'
    ``one_batch``: Produce v3+ carries exactly one per partition, Kafka's
    ProduceRequest.validateRecords); ``position`` is where it starts."""

    kafka_error = "INVALID_RECORD"


class NoBatch(BatchError):
    """A Produce partition's records hold no whole first batch as Kafka's
    MemoryRecords iterator frames it (ProduceRequest.validateRecords: "must
    have at least one record batch per partition")."""

    kafka_error = "INVALID_RECORD"


class NonZeroBaseOffset(BatchError):
    """A Produce partition's batch (validate_batches' ``one_batch``) whose
    baseOffset is not 0: Kafka's UnifiedLog.analyzeAndValidateRecords
    refuses a client's v2 batch so, before its size or CRC is looked at
    ("should be 0, but it is ..."). ``found`` is the baseOffset, None for
    -2**63, the one value the C implementation's facts cannot carry."""

    kafka_error = "INVALID_RECORD"


class StampedBatchTooLarge(BatchError):
    """A batch with the broker's provenance headers added would pass the
    topic's max.message.bytes (``expected``); ``found`` is its size."""

    kafka_error = "MESSAGE_TOO_LARGE"


NO_KEY_MESSAGE = "Compacted topic cannot accept message without key"
"""A keyless record's error on a compacted topic: Kafka's words, to which the
engine adds " in topic partition <topic>-<partition>" as Kafka does."""

RecordError = tuple[int, str]
"""(index of the record in its batch, why it was refused): KIP-467's
batch_index and batch_index_error_message."""


class RejectedRecords(BatchError):
    """Records of a well-formed batch break the topic's rules (a compacted
    topic's key); ``record_errors`` names each, in Kafka's LogValidator's
    words, and ``total`` counts them all (only the first MAX_RECORD_ERRORS
    are named)."""

    kafka_error = "INVALID_RECORD"

    def __init__(
        self,
        message: str,
        *,
        position: int,
        record_errors: tuple[RecordError, ...],
        total: int | None = None,
        expected: int | None = None,
        found: int | None = None,
    ) -> None:
        super().__init__(message, position=position, expected=expected, found=found)
        self.record_errors = record_errors
        self.total = len(record_errors) if total is None else total

    def facts(self) -> tuple[object, ...]:
        return (*super().facts(), self.record_errors, self.total)


class RejectedTimestamps(RejectedRecords):
    """Among the refused records, at least one has a timestamp outside the
    topic's message.timestamp.* bounds (Kafka then answers INVALID_TIMESTAMP)."""

    kafka_error = "INVALID_TIMESTAMP"
