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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

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
from s3stream.objects import ObjectIndex, StoredBatch, parse_block, read_index
from s3stream.store import ObjectStore


class Candidates(NamedTuple):
    offsets: list[int]
    """Base offsets of batches that may hold the value, ascending."""
    scans: list[tuple[int, int]]
    """Offset stretches ``[start, end)`` no index covers, ascending."""
    tails: Tails | None = None
    """The objects' tails read to find them (their indexes are in them too)."""


def header_candidates(
    store: ObjectStore,
    state: ManifestState,
    stream_id: int,
    start_offset: int,
    end_offset: int,
    name: str,
    value: bytes,
) -> Candidates:
    """See ``StreamStore.header_candidates``: ``[start_offset, end_offset)``
    is the stream's readable span."""
    hashed_name = name_hash(name)
    hashed = key_hash(name, value)
    offsets: list[int] = []
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
        directory = read_directory(tails, info.key, info.size)
        if directory is None or (stream_id, hashed_name) not in directory.names:
            scans.append((max(range_start, start_offset), range_end))
            continue
        offsets.extend(
            o
            for o in read_offsets(store, info.key, directory, stream_id, hashed)
            if range_start <= o < range_end
        )
    tail = max(remote_end, start_offset)
    if tail < end_offset:
        scans.append((tail, end_offset))
    return Candidates(sorted(set(offsets)), _merged(scans), tails)


def _merged(scans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(scans):
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def committed_batches(
    store: ObjectStore, state: ManifestState, stream_id: int, candidates: Candidates
) -> Iterator[StoredBatch]:
    """The committed batches holding the candidates' offsets and those of
    their stretches to scan, read from the objects alone with ranged GETs
    (for a reader that does not open the store as a writer), in offset order."""
    ranges = state.ranges.get(stream_id)
    tails = candidates.tails or Tails(store)
    for range_start, range_end, object_id in list(ranges.entries) if ranges else []:
        offsets = [o for o in candidates.offsets if range_start <= o < range_end]
        scans = [(s, e) for s, e in candidates.scans if s < range_end and e > range_start]
        if not offsets and not scans:
            continue
        info = state.objects[object_id]
        index = _index(tails, info.key, info.size)
        for block in index.blocks:
            if block.stream_id != stream_id:
                continue
            low, high = max(block.start_offset, range_start), min(block.end_offset, range_end)
            if low >= high:
                continue
            if not any(low <= o < high for o in offsets) and not any(
                s < high and e > low for s, e in scans
            ):
                continue
            data = store.get(info.key, block.position, block.position + block.size)
            for batch in parse_block(info.key, block, data):
                if low <= batch.base_offset < high or batch.base_offset < low < batch.end_offset:
                    yield batch


def _index(tails: Tails, key: str, size: int) -> ObjectIndex:
    tail = tails.get(key, size, size - LOOKUP_TAIL_BYTES)[1]
    found = read_index(key, tail, size)
    if isinstance(found, int):
        found = read_index(key, tails.get(key, size, found)[1], size)
    if isinstance(found, int):
        raise CorruptObject(key, "index outside the object", found)
    return found
