"""Every record of a partition whose header has a given value, without
reading the whole log (docs/memory.md, "Lookup by header").

The stream store names the batches that may hold the value (from its
objects' header indexes) and the stretches no index covers: objects
written before the topic indexed the header or before the index existed,
and the data not uploaded yet, scanned from the WAL-resident tail (small by
construction: the uploader ships it within its interval). Each batch read
is decoded and its records checked against the real header, so a hash
collision costs a read, never a wrong answer.

Read uncommitted, every stored record is a candidate; read committed, as a
read_committed consumer reads: only below the last stable offset, and no
record of a transaction the partition's aborted index lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import native
from engine.memory.vector import RecordRef
from engine.partition import Partition
from engine.partition_txns import AbortedTxn
from engine.topic_id import NO_TOPIC_ID
from native.buffers import BytesLike
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


class _Found(NamedTuple):
    record: FoundRecord
    producer_id: int | None
    """Its batch's producer id if the batch is transactional (None: not in
    a transaction): what a read_committed lookup checks it by."""


def lookup_partition(
    partition: Partition, header: str, value: bytes, read_committed: bool = False
) -> list[FoundRecord]:
    """The partition's records holding header ``header`` = ``value``, from
    its log start to its high watermark (``read_committed``: to its last
    stable offset, aborted transactions left out), in offset order."""
    start = partition.log_start_offset
    end = partition.last_stable_offset if read_committed else partition.high_watermark
    if start >= end:
        return []
    found = _lookup(partition, header, value, start, end)
    if read_committed:
        with partition.lock:
            aborted = partition.txns.aborted_between(start, end)
        found = [f for f in found if not _aborted(f, aborted)]
    return [f.record for f in found]


def _aborted(found: _Found, aborted: list[AbortedTxn]) -> bool:
    offset = found.record.ref.offset
    return found.producer_id is not None and any(
        t.producer_id == found.producer_id and t.first_offset <= offset < t.last_offset
        for t in aborted
    )


def _lookup(partition: Partition, header: str, value: bytes, start: int, end: int) -> list[_Found]:
    store = partition.store
    candidates = store.header_candidates(partition.stream_id, header, value)
    found: dict[int, _Found] = {}
    # The listed batches are read from their objects one by one (alone, or
    # in their block in an object older than format version 4): the fetch
    # path's read-ahead would bring whole spans for one batch.
    listed = Candidates(candidates.offsets, [], candidates.tails, candidates.spans)
    limit = partition.max_inflated
    for batch in committed_batches(store.store, store.manifest.state, partition.stream_id, listed):
        for match in _matching(
            partition.topic, partition.index, batch.payload, header, value, limit,
            partition.topic_id,
        ):  # fmt: skip
            found[match.record.ref.offset] = match
    for scan_start, scan_end in candidates.scans:
        _collect(partition, max(scan_start, start), min(scan_end, end), header, value, found)
    return [found[offset] for offset in sorted(found) if start <= offset < end]


def _collect(
    partition: Partition,
    start: int,
    end: int,
    header: str,
    value: bytes,
    found: dict[int, _Found],
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
    batch: BytesLike,
    header: str,
    value: bytes,
    max_inflated: int,
    found: dict[int, _Found],
) -> None:
    for match in _matching(
        partition.topic, partition.index, batch, header, value, max_inflated, partition.topic_id
    ):
        found[match.record.ref.offset] = match


def matching_records(
    topic: str,
    partition: int,
    batch: BytesLike,
    header: str,
    value: bytes,
    max_inflated: int = native.MAX_INFLATED,
    topic_id: bytes = NO_TOPIC_ID,
    aborted: list[AbortedTxn] | None = None,
) -> Iterator[FoundRecord]:
    """The records of a stored batch whose header ``header`` has ``value``
    (``topic_id``: the id of the topic the batch is stored in); with
    ``aborted``, none of the transactions it lists."""
    for match in _matching(topic, partition, batch, header, value, max_inflated, topic_id):
        if aborted is None or not _aborted(match, aborted):
            yield match.record


def _matching(
    topic: str,
    partition: int,
    batch: BytesLike,
    header: str,
    value: bytes,
    max_inflated: int,
    topic_id: bytes,
) -> Iterator[_Found]:
    headers = native.scan_batches(batch)
    epoch = headers[0].partition_leader_epoch if headers else -1
    producer_id = headers[0].producer_id if headers and headers[0].is_transactional else None
    for record in native.decode_records(batch, skip_control=True, max_inflated=max_inflated):
        if _holds(record.headers, header, value):
            ref = RecordRef(topic, partition, record.offset, epoch, topic_id)
            found = FoundRecord(ref, record.timestamp, record.key, record.value, record.headers)
            yield _Found(found, producer_id)


def _holds(headers: Iterable[Header], name: str, value: bytes) -> bool:
    return any(n == name and v == value for n, v in headers)
