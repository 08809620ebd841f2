"""Records out of a fetch: the stored batches a partition returned, decoded
into ConsumerRecords from the consumer's position on.

native builds the ConsumerRecords itself (no Python step per record),
leaving out control batches, batches of aborted transactions (read
committed) and records below the position.
"""

from __future__ import annotations

from typing import NamedTuple

import native
from engine.errors import CorruptRecord
from engine.isolation import committed_batches
from engine.partition import PartitionFetch
from engine.types import ConsumerRecord, TopicPartition
from native.buffers import BytesLike


class Decoded(NamedTuple):
    records: list[ConsumerRecord]
    position: int
    """Where the partition's next fetch starts."""
    error: CorruptRecord | None
    """A batch that cannot be decoded: ``records`` are those before it and
    ``position`` is its offset (raise this after handing them on)."""


def decode_fetched(tp: TopicPartition, position: int, fetched: PartitionFetch) -> Decoded:
    prefix = (tp.topic, tp.partition)
    aborted = fetched.aborted_transactions
    payloads = committed_batches(fetched.records, aborted) if aborted else fetched.records
    decoded: list[ConsumerRecord] = []
    for payload in payloads:
        try:
            records = native.decode_records(
                payload,
                record_type=ConsumerRecord,
                prefix=prefix,
                min_offset=position,
                skip_control=True,
                max_inflated=fetched.max_inflated,
            )
        except native.BatchError as error:
            return _stop_at_bad_batch(tp, position, payload, fetched.max_inflated, error, decoded)
        decoded += records
    # Past the batches read, and past a gap the cleaner left at the end.
    return Decoded(decoded, max(position, fetched.next_offset), None)


def _stop_at_bad_batch(
    tp: TopicPartition,
    position: int,
    payload: BytesLike,
    max_inflated: int,
    error: native.BatchError,
    decoded: list[ConsumerRecord],
) -> Decoded:
    """A batch of ``payload`` stored before compressed batches were
    validated on produce cannot be decoded. As Kafka's consumer, stop at
    it: the records of the batches before it (in this payload too) are
    handed out, the position is the bad batch's, and seeking past it goes on.
    """
    view = memoryview(payload)
    prefix = (tp.topic, tp.partition)
    for header in native.scan_batches(view):
        try:
            records = native.decode_records(
                view[header.position : header.position + header.size],
                record_type=ConsumerRecord,
                prefix=prefix,
                min_offset=position,
                skip_control=True,
                max_inflated=max_inflated,
            )
        except native.BatchError as bad:
            error, position = bad, max(position, header.base_offset)
            break
        decoded += records
    corrupt = CorruptRecord(
        f"{tp.topic}-{tp.partition}: the batch at offset {position} cannot be decoded: {error}"
    )
    corrupt.__cause__ = error
    return Decoded(decoded, position, corrupt)
