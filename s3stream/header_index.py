"""The header index region of a data object (docs/object-format.md).

For each stream an object holds whose owner asked for it, the region maps
a 64-bit hash of (header name, header value) to the base offsets of the
batches holding a record with that header. Entries are sorted by hash and
bucketed by the hash's top byte, so a lookup reads the region's directory
(near the object's end, beside its index) and then one bucket with one
ranged GET. Since format version 4 each entry also says where its batch
lies in the object and its CRC32C, so the lookup then reads that batch
alone, never the rest of its block. A hash collision only costs reading a batch
that does not match: the caller checks the real header.

The store knows streams and batches, not records: what to index comes from
an ``Indexer`` the stream's owner sets (``StreamStore.set_indexer``), called
on the store's own threads when an object is written (upload, merge,
replace), so the produce path pays nothing.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from native import crc32c
from native.buffers import BytesLike
from s3stream.errors import CorruptObject
from s3stream.objects import (
    CHAIN_ENTRY,
    CHAIN_TRAILER,
    FOOTER_SIZE,
    HEADER_BUCKET,
    HEADER_BUCKETS,
    HEADER_KEY,
    HEADER_NAME,
    HEADER_TRAILER,
    INDEX_ENTRY,
    EntrySpan,
    Locate,
    StoredBatch,
    check_header_index,
    header_index_layout,
    header_key_entry,
    parse_footer,
)
from s3stream.store import ObjectStore

NAME_ENTRY = HEADER_NAME
KEY_ENTRY = HEADER_KEY
BUCKET = HEADER_BUCKET
BUCKETS = HEADER_BUCKETS
TRAILER = HEADER_TRAILER
LOOKUP_TAIL_BYTES = 16 * 1024
"""How much of an object's end a lookup fetches first: footer, index, chain
region, names and directory of an object of up to a few hundred blocks
(a lookup reads every object of a partition: their tails add up)."""
FIRST_VERSION = 3
"""The object format version that has the region."""
_NAME_TAG = b"tidelog.index.name\x00"


def name_hash(name: str) -> int:
    """The 64-bit hash of a header name (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(_NAME_TAG + name.encode()).digest()[:8], "little")


def key_hash(name: str, value: bytes) -> int:
    """The 64-bit hash of a header's name and value."""
    digest = hashlib.sha256(name.encode() + b"\x00" + value).digest()
    return int.from_bytes(digest[:8], "little")


class Unindexable(Exception):
    """An indexer could not read a batch: the object then covers nothing of
    the stream, and lookups scan it."""


class Indexer(NamedTuple):
    """What to index for one stream: the hashes of the header names it
    covers, and a function from stored batches to ``(key hash, base
    offset)`` pairs (one per distinct key of a batch)."""

    names: tuple[int, ...]
    keys: Callable[[Sequence[StoredBatch]], Iterable[tuple[int, int]]]


class StreamKeys(NamedTuple):
    """What one object's region says of one stream."""

    stream_id: int
    names: tuple[int, ...]
    keys: list[tuple[int, int]]


def encode_region(streams: Sequence[StreamKeys], locate: Locate) -> bytes:
    """The region: key entries sorted by hash, each with its batch's span
    in the object (from ``locate``), name entries, the bucket directory and
    the trailer (an object of version 3 or later always has a trailer, even
    with nothing indexed). Names, directory and trailer end the region, so
    they come in the object's tail with its index."""
    names = b"".join(
        NAME_ENTRY.pack(s.stream_id, name) for s in sorted(streams) for name in sorted(s.names)
    )
    keys = sorted({(k, s.stream_id, offset) for s in streams for k, offset in s.keys})
    located: dict[tuple[int, int], EntrySpan] = {}
    for _, stream_id, offset in keys:
        if (stream_id, offset) not in located:
            located[(stream_id, offset)] = locate(stream_id, offset)
    body = b"".join(
        KEY_ENTRY.pack(k, stream_id, offset, *located[(stream_id, offset)])
        for k, stream_id, offset in keys
    )
    directory = b""
    if keys:
        ends: list[bytes] = []
        start = 0
        for bucket in range(BUCKETS):
            end = start
            while end < len(keys) and keys[end][0] >> 56 == bucket:
                end += 1
            chunk = body[start * KEY_ENTRY.size : end * KEY_ENTRY.size]
            ends.append(BUCKET.pack(end, crc32c(chunk)))
            start = end
        directory = b"".join(ends)
    trailer = TRAILER.pack(len(names) // NAME_ENTRY.size, len(keys), crc32c(names + directory))
    return body + names + directory + trailer


class Directory(NamedTuple):
    """An object's region without its key entries: what it covers and where
    each bucket's entries lie (absolute byte positions in the object)."""

    names: frozenset[tuple[int, int]]
    keys_position: int
    buckets: tuple[tuple[int, int], ...]
    """Per bucket: (entries up to its end, CRC32C of its entries)."""
    version: int = 4
    """The object's format version: whether key entries carry their batch's span."""


def region_end(key: str, tail: BytesLike, object_size: int) -> int | None:
    """Where the region ends (the chain region's start) from the object's
    last bytes, or None for an object older than the region. Raises
    CorruptObject if the tail is too short to tell: callers read enough."""
    footer = parse_footer(key, tail, object_size)
    if footer.version < FIRST_VERSION:
        return None
    tail_start = object_size - len(tail)
    chain_trailer = footer.index_position - CHAIN_TRAILER.size
    if chain_trailer < tail_start:
        raise CorruptObject(key, "tail too short for the chain trailer", chain_trailer)
    count, _ = CHAIN_TRAILER.unpack_from(tail, chain_trailer - tail_start)
    end = chain_trailer - count * CHAIN_ENTRY.size
    if end < TRAILER.size:
        raise CorruptObject(key, "chain region overruns the object", end)
    return int(end)


class Tails:
    """The objects' last bytes one lookup fetched, by key: the header
    index's directory and the object's index come from the same GET."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._held: dict[str, tuple[int, bytes]] = {}

    def get(self, key: str, size: int, start: int) -> tuple[int, bytes]:
        """``(tail_start, bytes)``: the object from ``tail_start <= start``
        to its end; one GET unless a tail held already reaches ``start``."""
        held = self._held.get(key)
        if held is not None and held[0] <= max(0, start):
            return held
        tail_start = max(0, min(start, size - LOOKUP_TAIL_BYTES))
        fetched = (tail_start, self.store.get(key, tail_start, size))
        self._held[key] = fetched
        return fetched


def read_directory(tails: Tails, key: str, object_size: int) -> Directory | None:
    """Reads an object's region directory: from the object's tail (one GET,
    shared with the object's index), and a second GET only if the names
    and directory reach before it; None for an object written before the
    region existed."""
    tail_start, tail = tails.get(key, object_size, object_size - LOOKUP_TAIL_BYTES)
    footer = parse_footer(key, tail, object_size)
    if footer.version < FIRST_VERSION:
        return None
    index_position = object_size - FOOTER_SIZE - INDEX_ENTRY.size * footer.block_count
    if index_position - CHAIN_TRAILER.size < tail_start:
        tail_start, tail = tails.get(key, object_size, index_position - CHAIN_TRAILER.size)
    end = region_end(key, tail, object_size)
    assert end is not None
    if end - TRAILER.size < tail_start:
        tail_start, tail = tails.get(key, object_size, end - TRAILER.size)
    name_count, key_count, crc = TRAILER.unpack_from(tail, end - TRAILER.size - tail_start)
    directory_size = BUCKETS * BUCKET.size if key_count else 0
    names_position = end - TRAILER.size - directory_size - name_count * NAME_ENTRY.size
    keys_position = names_position - key_count * header_key_entry(footer.version).size
    if keys_position < 0:
        raise CorruptObject(key, "header index overruns the object", end)
    if names_position < tail_start:
        tail_start, tail = tails.get(key, object_size, names_position)
    names = tail[names_position - tail_start : end - TRAILER.size - directory_size - tail_start]
    directory = tail[
        end - TRAILER.size - directory_size - tail_start : end - TRAILER.size - tail_start
    ]
    if crc32c(names + directory) != crc:
        raise CorruptObject(key, "header index checksum mismatch", names_position)
    buckets = tuple((end_, crc_) for end_, crc_ in BUCKET.iter_unpack(directory))
    if buckets and (
        buckets[-1][0] != key_count
        or any(later[0] < earlier[0] for earlier, later in itertools.pairwise(buckets))
    ):
        raise CorruptObject(key, "header index directory out of order", names_position)
    return Directory(
        frozenset(NAME_ENTRY.iter_unpack(names)), keys_position, buckets, footer.version
    )


class Listed(NamedTuple):
    """A batch a region lists for a key: its base offset and, in an object
    of version 4 or later, where its entry lies (None before)."""

    base_offset: int
    span: EntrySpan | None


def read_offsets(
    store: ObjectStore, key: str, directory: Directory, stream_id: int, hashed: int
) -> list[Listed]:
    """The batches the object's region lists for ``hashed`` in
    ``stream_id``: one ranged GET of the key's bucket (none if it is empty)."""
    if not directory.buckets:
        return []
    bucket = hashed >> 56
    first = directory.buckets[bucket - 1][0] if bucket else 0
    end, crc = directory.buckets[bucket]
    if end == first:
        return []
    entry = header_key_entry(directory.version)
    start = directory.keys_position + first * entry.size
    data = store.get(key, start, directory.keys_position + end * entry.size)
    if len(data) != (end - first) * entry.size or crc32c(data) != crc:
        raise CorruptObject(key, "header index bucket checksum mismatch", start)
    return [
        Listed(row[2], EntrySpan(*row[3:]) if len(row) > 3 else None)
        for row in entry.iter_unpack(data)
        if row[0] == hashed and row[1] == stream_id
    ]


def parse_region(key: str, data: BytesLike, end: int) -> list[StreamKeys]:
    """The whole region of a whole object (``end`` from ``region_end``),
    checked: what a merge reads (the batches' spans are the old object's,
    so they are left out: the new object's region locates them again)."""
    entry = header_key_entry(parse_footer(key, data, len(data)).version)
    check_header_index(key, data, end, entry)
    keys, names, directory, _ = header_index_layout(key, data, end, entry)
    view = memoryview(data)
    per_stream: dict[int, StreamKeys] = {}
    for stream_id, name in NAME_ENTRY.iter_unpack(view[names:directory]):
        found = per_stream.setdefault(stream_id, StreamKeys(stream_id, (), []))
        per_stream[stream_id] = found._replace(names=(*found.names, name))
    for row in entry.iter_unpack(view[keys:names]):
        hashed, stream_id, offset = row[:3]
        per_stream.setdefault(stream_id, StreamKeys(stream_id, (), [])).keys.append(
            (hashed, offset)
        )
    return [per_stream[s] for s in sorted(per_stream)]


def stream_keys(stream_id: int, indexer: Indexer, batches: Sequence[StoredBatch]) -> StreamKeys:
    """What the region holds for a run of one stream's batches."""
    try:
        return StreamKeys(stream_id, indexer.names, list(indexer.keys(batches)))
    except Unindexable:
        return StreamKeys(stream_id, (), [])
