"""The engine's errors for a produce whose records Kafka's LogValidator would
refuse one by one (KIP-467), in its words: each refused record's index and
message, and the batch's message (``processRecordErrors``). Only a refused
batch gets here: an accepted one costs nothing.
"""

from __future__ import annotations

import native
from engine.errors import InvalidRecord, InvalidTimestamp
from native import MAX_RECORD_ERRORS, RejectedRecords
from native.errors import NO_KEY_MESSAGE, RecordError

INVALID_TIMESTAMP_MESSAGE = "One or more records have been rejected due to invalid timestamp"


def rejected(error: RejectedRecords, topic_partition: str) -> InvalidRecord | InvalidTimestamp:
    """native's refusal of records breaking the topic's rules, with the topic
    partition where Kafka names it."""
    where = f" in topic partition {topic_partition}"
    errors = tuple(
        (i, message + where if message == NO_KEY_MESSAGE else message)
        for i, message in error.record_errors
    )
    if error.kafka_error == "INVALID_TIMESTAMP":
        return InvalidTimestamp(INVALID_TIMESTAMP_MESSAGE, errors)
    return records_rejected(errors, error.total)


def records_rejected(errors: tuple[RecordError, ...], total: int) -> InvalidRecord:
    """The refusal of a batch whose records ``errors`` names (``total`` of
    them in all), with Kafka's message for it."""
    shown = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3])
    return InvalidRecord(
        f"One or more records have been rejected due to {total} record errors in "
        f"total, and only showing the first three errors at most: [{shown}]",
        errors,
    )


def log_append_time_refused(batch: bytes | memoryview, max_inflated: int) -> InvalidTimestamp:
    """A producer's batch marked LogAppendTime, on a LogAppendTime topic or
    with no time (maxTimestamp -1) on a CreateTime one: Kafka refuses each
    of its records (LogValidator.validateTimestamp); the broker, not the
    producer, stamps the time."""
    records = native.decode_records(batch, max_inflated=max_inflated)
    errors: tuple[RecordError, ...] = tuple(
        (
            i,
            f"Invalid timestamp type in message DefaultRecord(offset={r.offset}, "
            f"timestamp={r.timestamp}, key={len(r.key or b'')} bytes, "
            f"value={len(r.value or b'')} bytes). Producer should not set timestamp "
            "type to LogAppendTime.",
        )
        for i, r in enumerate(records[:MAX_RECORD_ERRORS])
    )
    return InvalidTimestamp(INVALID_TIMESTAMP_MESSAGE, errors)
