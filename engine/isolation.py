"""What a read_committed reader keeps of fetched batches.

Kafka's consumers do this on the client side, and the embedded consumer
does the same: a fetch below the last stable offset comes with the aborted
transactions that overlap it; walking the batches in offset order, a
producer becomes "aborted" at its transaction's first offset and stops
being so at its abort marker; its transactional batches in between are
dropped. Control batches are never returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import native
from engine import markers
from engine.partition_txns import AbortedTxn
from native.buffers import BytesLike


def committed_batches(
    payloads: Iterable[BytesLike], aborted: Sequence[AbortedTxn]
) -> Iterator[memoryview]:
    """Each batch of ``payloads`` that is neither a control batch nor part
    of one of the ``aborted`` transactions (ordered by first offset)."""
    upcoming = sorted(aborted, key=lambda t: t.first_offset)
    next_aborted = 0
    active: set[int] = set()
    for payload in payloads:
        view = memoryview(payload)
        for header in native.scan_batches(view):
            while (
                next_aborted < len(upcoming)
                and upcoming[next_aborted].first_offset <= header.last_offset
            ):
                active.add(upcoming[next_aborted].producer_id)
                next_aborted += 1
            batch = view[header.position : header.position + header.size]
            if header.is_control:
                if header.producer_id in active:
                    marker = markers.decode(batch)
                    if marker is not None and not marker.commit:
                        active.discard(header.producer_id)
                continue
            if header.is_transactional and header.producer_id in active:
                continue
            yield batch
