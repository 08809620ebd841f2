"""Re-encoding a stored batch's records: a new batch that keeps every field
of the batch it replaces (base offset and offset deltas, producer id, epoch
and sequence, transactional flag, leader epoch, timestamp type and base,
codec), so that readers see it at the same offsets with the same
transactional meaning. The log cleaner (records dropped) and masked fetches
(records masked) both rewrite batches this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import native
from native import BatchHeader, RecordSpec


def encode_like(
    header: BatchHeader, records: Sequence[RecordSpec], offsets: Sequence[int]
) -> bytes:
    """``records`` (at ``offsets``) as one batch with ``header``'s fields."""
    return native.encode_batch(
        records,
        base_offset=header.base_offset,
        compression=header.compression,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        partition_leader_epoch=header.partition_leader_epoch,
        timestamp_type=header.timestamp_type,
        base_timestamp=header.base_timestamp,
        offset_deltas=[offset - header.base_offset for offset in offsets],
        last_offset_delta=header.last_offset_delta,
    )
