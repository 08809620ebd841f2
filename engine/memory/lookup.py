"""Every record of a partition whose header has a given value, without
reading the whole log (docs/memory.md, "Lookup by header").

The stream store names the batches that may hold the value (from its
objects' header indexes) and the stretches no index covers: objects
written before the topic indexed the header or before the index existed,
and the data not uploaded yet, scanned from the WAL-resident tail (small by
construction: the uploader ships it within its interval). Each batch read
is decoded and its records checked against the real header, so a hash
collision costs a read, never a wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import native
from engine.memory.vector import RecordRef
from engine.partition import Partition
from engine.topic_id import NO_TOPIC_ID
from native.records import Header
from s3stream.lookup import Candidates, committed_batches

SCAN_BYTES = 1024 * 1024
"""How much one read of a scanned stretch asks for."""


class FoundRecord(NamedTuple):
    """One record a lookup found: where it is, and the record itself."""

    ref: RecordRef
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


def lookup_partition(partition: Partition, header: str, value: bytes) -> list[FoundRecord]:
    """The partition's records holding header ``header`` = ``value``, from
    its log start to its high watermark, in offset order."""
    start, end = partition.log_start_offset, partition.high_watermark
    if start >= end:
        return []
    store = partition.store
    candidates = store.header_candidates(partition.stream_id, header, value)
    found: dict[int, FoundRecord] = {}
    # The listed batches are read from their objects one by one (alone, or
    # in their block in an object older than format version 4): the fetch
    # path's read-ahead would bring whole spans for one batch.
    listed = Candidates(candidates.offsets, [], candidates.tails, candidates.spans)
    limit = partition.max_inflated
    for batch in committed_batches(store.store, store.manifest.state, partition.stream_id, listed):
        for record in matching_records(
            partition.topic, partition.index, batch.payload, header, value, limit,
            partition.topic_id,
        ):  # fmt: skip
            found[record.ref.offset] = record
    for scan_start, scan_end in candidates.scans:
        _collect(partition, max(scan_start, start), min(scan_end, end), header, value, found)
    return [found[offset] for offset in sorted(found) if start <= offset < end]


def _collect(
    partition: Partition,
    start: int,
    end: int,
    header: str,
    value: bytes,
    found: dict[int, FoundRecord],
) -> None:
    """Reads the batches holding offsets ``[start, end)`` and keeps their
    records that hold the header (records outside the stretch too: each
    is checked against the real header, and the caller keeps the log's
    readable span)."""
    offset = start
    while offset < end:
        fetched = partition.fetch(offset, 1 if end - start == 1 else SCAN_BYTES)
        if not fetched.records:
            return
        for batch in fetched.records:
            _matches(partition, batch, header, value, fetched.max_inflated, found)
        if fetched.next_offset <= offset:
            return
        offset = fetched.next_offset


def _matches(
    partition: Partition,
    batch: bytes | memoryview,
    header: str,
    value: bytes,
    max_inflated: int,
    found: dict[int, FoundRecord],
) -> None:
    for record in matching_records(
        partition.topic, partition.index, batch, header, value, max_inflated, partition.topic_id
    ):
        found[record.ref.offset] = record


def matching_records(
    topic: str,
    partition: int,
    batch: bytes | memoryview,
    header: str,
    value: bytes,
    max_inflated: int = native.MAX_INFLATED,
    topic_id: bytes = NO_TOPIC_ID,
) -> Iterator[FoundRecord]:
    """The records of a stored batch whose header ``header`` has ``value``
    (``topic_id``: the id of the topic the batch is stored in)."""
    epochs = [h.partition_leader_epoch for h in native.scan_batches(batch)]
    epoch = epochs[0] if epochs else -1
    for record in native.decode_records(batch, skip_control=True, max_inflated=max_inflated):
        if _holds(record.headers, header, value):
            ref = RecordRef(topic, partition, record.offset, epoch, topic_id)
            yield FoundRecord(ref, record.timestamp, record.key, record.value, record.headers)


def _holds(headers: Iterable[Header], name: str, value: bytes) -> bool:
    return any(n == name and v == value for n, v in headers)
