"""The engine's error for each refusal of a produced batch by native's
checks (docs/record-batch.md), in Kafka's words where Kafka's broker has
words for it, and the framing of a Produce partition's records that Kafka
does before any partition's log sees them (ProduceRequest.validateRecords).
"""

from __future__ import annotations

import native
from engine.errors import (
    CorruptRecord,
    EngineError,
    InvalidRecord,
    InvalidTimestamp,
    RecordTooLarge,
    UnsupportedCompressionType,
)
from engine.record_errors import rejected
from native import BatchError, NoBatch, NonZeroBaseOffset, RejectedRecords, SecondBatch
from native.buffers import BytesLike

LONG_MIN = -(2**63)
"""The one baseOffset NonZeroBaseOffset cannot carry in its ``found``."""

ONE_BATCH_PER_PARTITION = (
    "Produce requests with version 3 and above are only allowed to contain exactly one"
    " record batch per partition"
)
"""Kafka's refusal (ProduceRequest.validateRecords) of more than one batch."""

NO_BATCH_IN_PARTITION = (
    "Produce requests with version 3 and above must have at least one record batch per partition"
)
"""Kafka's refusal (ProduceRequest.validateRecords) of records it frames no batch in."""


def produce_framing_refusal(
    records: BytesLike, topic: str, index: int, *, allow_zstd: bool = True
) -> EngineError | None:
    """What Kafka's ProduceRequest.validateRecords refuses a Produce
    partition's records for (native.produce_batch_size), or None; without
    ``allow_zstd`` (Produce before v7) a zstd batch is refused too."""
    try:
        native.produce_batch_size(records, allow_zstd=allow_zstd)
    except BatchError as error:
        return batch_error(error, topic, index)
    return None


def batch_error(
    error: BatchError, topic: str, index: int
) -> InvalidRecord | InvalidTimestamp | RecordTooLarge:
    """The engine's error for native's refusal of a batch produced to
    partition ``index`` of ``topic``."""
    kind = error.kafka_error
    if isinstance(error, SecondBatch):
        return InvalidRecord(ONE_BATCH_PER_PARTITION)
    if isinstance(error, NoBatch):
        return InvalidRecord(NO_BATCH_IN_PARTITION)
    if isinstance(error, NonZeroBaseOffset):  # UnifiedLog.analyzeAndValidateRecords' words
        base_offset = LONG_MIN if error.found is None else error.found
        return InvalidRecord(
            f"The baseOffset of the record batch in the append to {topic}-{index} should be 0,"
            f" but it is {base_offset}"
        )
    if isinstance(error, RejectedRecords):
        return rejected(error, f"{topic}-{index}")
    if kind == "MESSAGE_TOO_LARGE":  # a provenance stamp past max.message.bytes
        return RecordTooLarge(error.found or 0, error.expected or 0)
    if kind == "CORRUPT_MESSAGE":
        return CorruptRecord(str(error))
    if kind == "UNSUPPORTED_COMPRESSION_TYPE":
        return UnsupportedCompressionType(str(error))
    return InvalidRecord(str(error))
