"""A fetch's batches with their records masked: each batch decoded (within
the topic's inflation limit), its records masked, and encoded again with
every header field the stored batch had (base offset, offset deltas and
last offset delta, timestamps and their type, producer id, epoch and base
sequence, transactional flag, partition leader epoch, compression codec),
so offsets, transactions and consumer positions are what they would be
unmasked. Under LogAppendTime a record's timestamp is the batch's max
timestamp as decoded (Kafka's rule), so the masked records carry that one:
what every client reads is unchanged, the producer's own times are not
sent. Control batches carry no user data and go as stored. Nothing is
stored: the masked bytes exist for one response.
"""

from __future__ import annotations

import native
from engine.batch_encoding import encode_like
from engine.masking.documents import Masking
from engine.partition import PartitionFetch
from native.buffers import BytesLike
from native.records import BatchHeader


def mask_fetch(fetched: PartitionFetch, masking: Masking, limit: int | None) -> PartitionFetch:
    """``fetched`` with its batches masked, whole batches within ``limit``
    bytes as Kafka bounds a partition's data: the first goes however large,
    and no other passes the limit. A masked batch may be larger than the
    stored one, so the batches of one stored append (an embedded append of
    several) may be cut between them; ``next_offset`` says where the next
    fetch starts. A batch is masked only when the ones before it fit."""
    masked: list[BytesLike] = []
    size = 0
    for stored in fetched.records:
        view = memoryview(stored)
        for header in native.scan_batches(view):
            raw = view[header.position : header.position + header.size]
            batch = _masked(header, raw, masking, fetched.max_inflated)
            if masked and limit is not None and size + len(batch) > limit:
                return fetched._replace(records=masked, next_offset=header.base_offset)
            masked.append(batch)
            size += len(batch)
    return fetched._replace(records=masked)


def mask_batch(stored: BytesLike, masking: Masking, max_inflated: int) -> BytesLike:
    """One stored batch (or a run of them) with its records masked."""
    view = memoryview(stored)
    out = [
        _masked(
            header, view[header.position : header.position + header.size], masking, max_inflated
        )
        for header in native.scan_batches(view)
    ]
    return out[0] if len(out) == 1 else b"".join(out)


def _masked(header: BatchHeader, raw: memoryview, masking: Masking, max_inflated: int) -> BytesLike:
    """One batch with its records masked (a control batch, or one without
    records, as stored)."""
    if header.is_control or header.record_count == 0:
        return raw
    records = native.decode_records(raw, max_inflated=max_inflated)
    if not records:
        return raw
    return encode_like(
        header, [masking.record(record) for record in records], [r.offset for r in records]
    )
