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


def log_append_time_refused(
    batch: bytes | memoryview, max_inflated: int, compacted_in: str | None = None
) -> InvalidTimestamp | None:
    """A producer's batch marked LogAppendTime, on a LogAppendTime topic or
    with no time (maxTimestamp -1) on a CreateTime one: Kafka refuses each
    of its records (LogValidator.validateTimestamp); the broker, not the
    producer, stamps the time.

    On a compacted topic (``compacted_in``, its topic partition) a keyless
    record's error is its key's, as LogValidator.validateRecord checks the
    key first; None when every record's is, the refusal then being
    INVALID_RECORD's (records_rejected)."""
    records = native.decode_records(batch, max_inflated=max_inflated)
    errors: list[RecordError] = []
    any_timestamp = False
    for i, r in enumerate(records):
        if compacted_in is not None and r.key is None:
            message = f"{NO_KEY_MESSAGE} in topic partition {compacted_in}"
        else:
            any_timestamp = True
            message = (
                f"Invalid timestamp type in message DefaultRecord(offset={r.offset}, "
                f"timestamp={r.timestamp}, key={len(r.key or b'')} bytes, "
                f"value={len(r.value or b'')} bytes). Producer should not set timestamp "
                "type to LogAppendTime."
            )
        if i < MAX_RECORD_ERRORS:
            errors.append((i, message))
    if not any_timestamp:
        return None
    return InvalidTimestamp(INVALID_TIMESTAMP_MESSAGE, tuple(errors))
