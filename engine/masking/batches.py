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


def mask_fetch(fetched: PartitionFetch, masking: Masking, limit: int | None) -> PartitionFetch:
    """``fetched`` with its batches masked. A masked batch may be larger than
    the stored one: past ``limit`` bytes the batches that follow the first
    are left for the next fetch (the first goes however large, as Kafka
    sends the first batch of a fetch), and ``next_offset`` says where the
    next fetch starts."""
    masked: list[bytes | memoryview] = []
    size = 0
    next_offset = fetched.next_offset
    for stored in fetched.records:
        batch = mask_batch(stored, masking, fetched.max_inflated)
        if masked and limit is not None and size + len(batch) > limit:
            next_offset = native.scan_batches(stored)[0].base_offset
            break
        masked.append(batch)
        size += len(batch)
    return fetched._replace(records=masked, next_offset=next_offset)


def mask_batch(
    stored: bytes | memoryview, masking: Masking, max_inflated: int
) -> bytes | memoryview:
    """One stored batch (or a run of them) with its records masked."""
    out: list[bytes | memoryview] = []
    view = memoryview(stored)
    for header in native.scan_batches(view):
        raw = view[header.position : header.position + header.size]
        if header.is_control or header.record_count == 0:
            out.append(raw)
            continue
        records = native.decode_records(raw, max_inflated=max_inflated)
        if not records:
            out.append(raw)
            continue
        batch = encode_like(
            header, [masking.record(record) for record in records], [r.offset for r in records]
        )
        out.append(batch)
    return out[0] if len(out) == 1 else b"".join(out)
