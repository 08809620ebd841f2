"""Where a stream's batches with one header value may be: the offsets its
committed objects' header indexes list, and the stretches no index covers.

An object covers a stream's range for a header name if its header index
region lists the name for the stream (s3stream/header_index.py); then only
the batches the region lists for the value's hash can hold it. A range in
an object written before the region existed, or when the stream indexed
other names, is not covered and is scanned; so is the stream's data not in
a committed object yet (in the WAL and log cache, above the remote
watermark): small by construction, as the uploader ships it within its
interval.

A listed batch in an object of format version 4 or later is read alone,
with one ranged GET of its entry (or of a run of listed entries that lie
end to end), checked against the CRC32C its key
entry keeps; in an older object, or if that check fails, its whole block
is read (checked against the block's CRC, so damage to the data itself is
a CorruptObject either way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

from native import crc32c
from native.buffers import BytesLike
from s3stream.chain_verify import ParsedObjects, moved_batches, moved_or_lost
from s3stream.errors import CorruptObject
from s3stream.header_index import (
    LOOKUP_TAIL_BYTES,
    Tails,
    key_hash,
    name_hash,
    read_directory,
    read_offsets,
)
from s3stream.manifest_state import ManifestState
from s3stream.objects import (
    ENTRY_HEADER,
    EntrySpan,
    ObjectIndex,
    StoredBatch,
    parse_block,
    read_index,
)
from s3stream.store import ObjectNotFound, ObjectStore

log = logging.getLogger("tidelog.s3stream")

ALONE_RUN_BYTES = 1024 * 1024
"""The most one GET of batches lying end to end brings (a block's default size)."""


class Candidates(NamedTuple):
    offsets: list[int]
    """Base offsets of batches that may hold the value, ascending."""
    scans: list[tuple[int, int]]
    """Offset stretches ``[start, end)`` no index covers, ascending."""
    tails: Tails | None = None
    """The objects' tails read to find them (their indexes are in them too)."""
    spans: Mapping[int, EntrySpan] | None = None
    """Where each offset's batch lies in its object, for those whose
    object says so (format version 4 or later)."""


def header_candidates(
    store: ObjectStore,
    state: ManifestState,
    stream_id: int,
    start_offset: int,
    end_offset: int,
    name: str,
    value: bytes,
    current: Callable[[], ManifestState] | None = None,
) -> Candidates:
    """See ``StreamStore.header_candidates``: ``[start_offset, end_offset)``
    is the stream's readable span. With ``current`` (the manifest as it is
    now), a range whose object a writer merged away since ``state`` is
    scanned: committed_batches reads it where that manifest places it."""
    hashed_name = name_hash(name)
    hashed = key_hash(name, value)
    offsets: list[int] = []
    spans: dict[int, EntrySpan] = {}
    scans: list[tuple[int, int]] = []
    ranges = state.ranges.get(stream_id)
    entries = list(ranges.entries) if ranges is not None else []
    meta = state.streams.get(stream_id)
    remote_end = meta.end_offset if meta is not None else start_offset
    tails = Tails(store)
    for range_start, range_end, object_id in entries:
        if range_end <= start_offset:
            continue
        info = state.objects[object_id]
        # A fork's shared range is indexed under the stream that wrote it.
        writer = state.source_of(stream_id, range_start, object_id)
        found = None
        try:
            directory = read_directory(tails, info.key, info.size)
            if directory is not None and (writer, hashed_name) in directory.names:
                found = list(read_offsets(store, info.key, directory, writer, hashed))
        except ObjectNotFound as gone:
            if current is None:
                raise
            moved_or_lost(current, info.key, gone)
        if found is None:  # no index of the name here, or the object moved: scanned
            scans.append((max(range_start, start_offset), range_end))
            continue
        for listed in found:
            if range_start <= listed.base_offset < range_end:
                offsets.append(listed.base_offset)
                if listed.span is not None:
                    spans[listed.base_offset] = listed.span
    tail = max(remote_end, start_offset)
    if tail < end_offset:
        scans.append((tail, end_offset))
    return Candidates(sorted(set(offsets)), _merged(scans), tails, spans)


def _merged(scans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(scans):
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def committed_batches(
    store: ObjectStore,
    state: ManifestState,
    stream_id: int,
    candidates: Candidates,
    current: Callable[[], ManifestState] | None = None,
) -> Iterator[StoredBatch]:
    """The committed batches holding the candidates' offsets and those of
    their stretches to scan, read from the objects alone with ranged GETs
    (for a reader that does not open the store as a writer), in offset order:
    a batch whose span is known alone, any other in its whole block. With
    ``current`` (the manifest as it is now), a range whose object a writer
    merged away since ``state`` is read where that manifest places it
    (chain_verify.moved_batches)."""
    ranges = state.ranges.get(stream_id)
    tails = candidates.tails or Tails(store)
    spans = candidates.spans or {}
    moved = ParsedObjects(store)
    for range_start, range_end, object_id in list(ranges.entries) if ranges else []:
        listed = [o for o in candidates.offsets if range_start <= o < range_end]
        scans = [(s, e) for s, e in candidates.scans if s < range_end and e > range_start]
        if not listed and not scans:
            continue
        info = state.objects[object_id]
        # A fork's shared range is in the blocks of the stream that wrote it.
        writer = state.source_of(stream_id, range_start, object_id)
        given: set[int] = set()
        try:
            for batch in _range_batches(
                store,
                tails,
                info.key,
                info.size,
                writer,
                range_start,
                range_end,
                listed,
                scans,
                spans,
            ):
                given.add(batch.base_offset)
                yield batch
        except ObjectNotFound as gone:
            if current is None:
                raise
            for batch in moved_batches(
                moved, current, info.key, writer, range_start, range_end, gone
            ):
                if batch.base_offset not in given and _wanted(batch, listed, scans):
                    yield batch


def _wanted(batch: StoredBatch, listed: list[int], scans: list[tuple[int, int]]) -> bool:
    """Whether a batch holds a listed offset or lies in a stretch to scan."""
    return any(batch.base_offset <= o < batch.end_offset for o in listed) or any(
        s < batch.end_offset and e > batch.base_offset for s, e in scans
    )


def _range_batches(
    store: ObjectStore,
    tails: Tails,
    key: str,
    size: int,
    writer: int,
    range_start: int,
    range_end: int,
    listed: list[int],
    scans: list[tuple[int, int]],
    spans: Mapping[int, EntrySpan],
) -> Iterator[StoredBatch]:
    """One committed range's batches of committed_batches, from its object."""
    alone = [o for o in listed if o in spans]
    offsets = [o for o in listed if o not in spans]
    if not offsets and not scans:
        # Every batch is read alone: the object's index is not needed
        # unless one of them fails its check.
        yield from _batches_alone(store, tails, key, size, writer, alone, spans)
        return
    index = _index(tails, key, size)
    for block in index.blocks:
        if block.stream_id != writer:
            continue
        low, high = max(block.start_offset, range_start), min(block.end_offset, range_end)
        if low >= high:
            continue
        if not any(low <= o < high for o in offsets) and not any(
            s < high and e > low for s, e in scans
        ):
            continue
        before = [o for o in alone if o < low]
        yield from _batches_alone(store, tails, key, size, writer, before, spans)
        alone = [o for o in alone if o >= high]  # this block holds those below
        data = store.get(key, block.position, block.position + block.size)
        for batch in parse_block(key, block, data):
            if low <= batch.base_offset < high or batch.base_offset < low < batch.end_offset:
                yield batch
    yield from _batches_alone(store, tails, key, size, writer, alone, spans)


def _batches_alone(
    store: ObjectStore,
    tails: Tails,
    key: str,
    size: int,
    stream_id: int,
    offsets: list[int],
    spans: Mapping[int, EntrySpan],
) -> Iterator[StoredBatch]:
    """The batches at ``offsets`` (ascending) read alone: one ranged GET
    per run of entries that lie end to end in the object (a value on many
    consecutive batches costs no more GETs than their blocks would), up to
    ``ALONE_RUN_BYTES`` a GET; each checked against its span's CRC32C and
    its entry header, and one that fails read again in its whole block."""
    run: list[int] = []
    for offset in [*offsets, None]:
        if run and (
            offset is None
            or spans[offset].position != spans[run[-1]].position + spans[run[-1]].size
            or spans[offset].position + spans[offset].size - spans[run[0]].position
            > ALONE_RUN_BYTES
        ):
            first = spans[run[0]].position
            data = memoryview(store.get(key, first, spans[run[-1]].position + spans[run[-1]].size))
            for listed in run:
                span = spans[listed]
                piece = data[span.position - first : span.position - first + span.size]
                batch = _entry(piece, span, listed)
                yield batch or _in_block(store, tails, key, size, stream_id, listed)
            run = []
        if offset is not None:
            run.append(offset)


def _in_block(
    store: ObjectStore, tails: Tails, key: str, size: int, stream_id: int, offset: int
) -> StoredBatch:
    """The batch at ``offset`` read in its whole block, checked against the
    block's CRC: the answer when a batch read alone fails its check."""
    log.warning(
        "lookup: the batch at offset %d of %s failed its check when read alone; reading its block",
        offset,
        key,
    )
    index = _index(tails, key, size)
    for block in index.blocks:
        if block.stream_id == stream_id and block.start_offset <= offset < block.end_offset:
            fetched = store.get(key, block.position, block.position + block.size)
            for found in parse_block(key, block, fetched):
                if found.base_offset == offset:
                    return found
    raise CorruptObject(key, f"header index lists a batch at offset {offset} it does not hold")


def _entry(data: BytesLike, span: EntrySpan, offset: int) -> StoredBatch | None:
    """The batch of an entry read alone, or None if its bytes are not what
    the header index says (length, CRC32C, base offset, payload length)."""
    if len(data) != span.size or span.size < ENTRY_HEADER.size or crc32c(data) != span.crc:
        return None
    base, count, length = ENTRY_HEADER.unpack_from(data, 0)
    if base != offset or count == 0 or ENTRY_HEADER.size + length != span.size:
        return None
    return StoredBatch(base, base + count, memoryview(data)[ENTRY_HEADER.size :])


def _index(tails: Tails, key: str, size: int) -> ObjectIndex:
    tail = tails.get(key, size, size - LOOKUP_TAIL_BYTES)[1]
    found = read_index(key, tail, size)
    if isinstance(found, int):
        found = read_index(key, tails.get(key, size, found)[1], size)
    if isinstance(found, int):
        raise CorruptObject(key, "index outside the object", found)
    return found
