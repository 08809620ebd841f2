"""The object format: stream-set objects and stream objects (docs/object-format.md).

An object is a run of data blocks, an index and a fixed-size footer. A data
block holds consecutive batches of one stream; the index says, per block,
which stream and offsets it holds, where it is and its CRC32C, so a reader
fetches one block with one ranged GET. Payloads are stored exactly as they
were appended and come back as slices of the block, never re-encoded.
"""

from __future__ import annotations

import bisect
import enum
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from native import crc32c, encode_entries, untracked_record
from native.buffers import BytesLike
from s3stream.chain_hash import ChainHash, UnknownChainHash, chain_hash
from s3stream.errors import CorruptObject

MAGIC = b"TLSOBJ\x00\x01"
FORMAT_VERSION = 5
READABLE_VERSIONS = (1, 2, 3, 4, 5)
"""Version 1 objects have no chain region, version 2 no header index region
(s3stream/header_index.py), version 3 header index keys without their
batch's byte span, versions before 5 no chain algorithm (their links are
SHA-256); everything else is the same."""
FIRST_CHAIN_HASH_VERSION = 5
"""The format version whose chain entries name their links' algorithm: a
reader of an older version refuses the object rather than take its links
for SHA-256."""
HEADER_NAME = struct.Struct("<qQ")  # stream, name hash
HEADER_KEY = struct.Struct("<QqQQII")  # key hash, stream, base offset, entry position, size, crc
HEADER_KEY_V3 = struct.Struct("<QqQ")  # key hash, stream, base offset
HEADER_BUCKET = struct.Struct("<II")  # entries up to the bucket's end, CRC32C of its entries
HEADER_BUCKETS = 256
HEADER_TRAILER = struct.Struct("<III")  # name count, key count, CRC32C of names + directory
EMPTY_HEADER_INDEX = HEADER_TRAILER.pack(0, 0, 0)
"""A header index region with nothing indexed (its trailer alone: no
names, no keys, the CRC32C of nothing)."""
ENTRY_HEADER = struct.Struct("<qII")  # base offset, offset count, payload length
INDEX_ENTRY = struct.Struct("<qqqQII")  # stream, start, end, position, size, crc
FOOTER = struct.Struct("<QIIHBBI8s")  # index position, count, crc, version, kind, pad, crc
FOOTER_SIZE = FOOTER.size
# stream, start, end, flags, algorithm, reserved, 4 links (before version 5
# flags was a uint32 whose upper bytes were 0: the same bytes)
CHAIN_ENTRY = struct.Struct("<qqqBBH32s32s32s32s")
CHAIN_TRAILER = struct.Struct("<II")  # entry count, CRC32C of the entries
CHAIN_REWRITE = 1
"""A chain entry's flag: the range is a log cleaner's rewrite (its old links are set)."""
NO_LINK = bytes(32)
DEFAULT_BLOCK_BYTES = 1024 * 1024
SUFFIX_READ_BYTES = 64 * 1024
"""How much of an object's end a reader fetches to get footer and index in one GET."""


class ObjectKind(enum.IntEnum):
    STREAM_SET = 1  # blocks of many streams
    STREAM = 2  # blocks of one stream only


class StoredBatch(NamedTuple):
    """One append as stored: offsets ``[base_offset, end_offset)`` and its bytes."""

    base_offset: int
    end_offset: int
    payload: BytesLike
    """As appended: on the produce path a ByteSlice of the request's bytes
    (StreamStore.submit_then, native.untracked_view), so that the log cache's
    batches are never walked by the cyclic collector (docs/design/0154)."""
    crc: int | None = None
    """The payload's CRC32C when the appender has it (the produce path
    combines it from the checked batches' own CRCs): an upload then combines
    it into its block's CRC instead of reading the payload again. None: the
    upload reads the bytes."""


class BlockInfo(NamedTuple):
    stream_id: int
    start_offset: int
    end_offset: int
    position: int
    size: int
    crc: int


@dataclass(frozen=True)
class ObjectIndex:
    """The parsed index of one object, searchable by (stream, offset)."""

    kind: ObjectKind
    blocks: tuple[BlockInfo, ...]
    _keys: list[tuple[int, int]] = field(repr=False, compare=False)

    @classmethod
    def of(cls, kind: ObjectKind, blocks: Sequence[BlockInfo]) -> ObjectIndex:
        return cls(kind, tuple(blocks), [(b.stream_id, b.end_offset) for b in blocks])

    def find(self, stream_id: int, offset: int) -> int | None:
        """Index of the first block of ``stream_id`` holding an offset >= ``offset``."""
        i = bisect.bisect_right(self._keys, (stream_id, offset))
        if i < len(self.blocks) and self.blocks[i].stream_id == stream_id:
            return i
        return None


class ChainLinks(NamedTuple):
    """The hash chain at the ends of one range of an object (docs/tamper-evidence.md),
    made with ``algorithm``: ``old`` holds the replaced chain's links for a
    cleaner's rewrite."""

    stream_id: int
    start_offset: int
    end_offset: int
    algorithm: ChainHash
    before: bytes
    after: bytes
    old: tuple[bytes, bytes] | None = None


def encode_chain(entries: Sequence[ChainLinks]) -> bytes:
    body = b"".join(
        CHAIN_ENTRY.pack(
            e.stream_id,
            e.start_offset,
            e.end_offset,
            0 if e.old is None else CHAIN_REWRITE,
            e.algorithm,
            0,
            e.before,
            e.after,
            *(e.old or (NO_LINK, NO_LINK)),
        )
        for e in entries
    )
    return body + CHAIN_TRAILER.pack(len(entries), crc32c(body))


def parse_chain(
    key: str, data: BytesLike, index_position: int, version: int = FORMAT_VERSION
) -> list[ChainLinks]:
    """The chain region of a whole object of ``version`` (2 or later; it ends
    where the index starts)."""
    if index_position < CHAIN_TRAILER.size or index_position > len(data):
        raise CorruptObject(key, "no room for the chain region", index_position)
    count, crc = CHAIN_TRAILER.unpack_from(data, index_position - CHAIN_TRAILER.size)
    start = index_position - CHAIN_TRAILER.size - count * CHAIN_ENTRY.size
    if start < 0:
        raise CorruptObject(key, f"chain region of {count} entries overruns the object", 0)
    body = memoryview(data)[start : index_position - CHAIN_TRAILER.size]
    if crc32c(body) != crc:
        raise CorruptObject(key, "chain region checksum mismatch", start)
    entries = []
    for (
        stream_id,
        first,
        end,
        flags,
        algorithm,
        _,
        before,
        after,
        old_before,
        old_after,
    ) in CHAIN_ENTRY.iter_unpack(body):
        old = (old_before, old_after) if flags & CHAIN_REWRITE else None
        made_with = _chain_algorithm(key, version, algorithm)
        entries.append(ChainLinks(stream_id, first, end, made_with, before, after, old))
    return entries


def _chain_algorithm(key: str, version: int, found: int) -> ChainHash:
    if version < FIRST_CHAIN_HASH_VERSION:
        return ChainHash.SHA256  # the only one there was
    try:
        return chain_hash(found)
    except UnknownChainHash as error:
        raise CorruptObject(key, str(error)) from None


@dataclass
class StreamRangeInfo:
    """What an object holds of one stream: offsets ``[start, end)`` in ``size`` bytes."""

    stream_id: int
    start_offset: int
    end_offset: int
    size: int


class EntrySpan(NamedTuple):
    """Where one stored batch's entry (its entry header, then its payload)
    lies in an object, and the CRC32C of those bytes: enough to fetch and
    check that batch alone with one ranged GET."""

    position: int
    size: int
    crc: int


Locate = Callable[[int, int], EntrySpan]
"""The span of a stream's entry at a base offset in the object being
written (KeyError if the object holds no entry there)."""


def header_key_entry(version: int) -> struct.Struct:
    """The header index key entry of a format version (3 or later)."""
    return HEADER_KEY_V3 if version == 3 else HEADER_KEY


class EncodedObject(NamedTuple):
    parts: list[BytesLike]
    """The object's bytes in order: stored batches of 4 KiB or more by
    reference, between the entry headers (and the smaller batches, copied:
    one part for each stretch between two large ones), index and footer
    written for them. Stores write the parts as
    they are (a local store with writev), so no one copies a whole object
    into one buffer while holding the GIL."""
    size: int
    ranges: list[StreamRangeInfo]
    blocks: list[BlockInfo]

    @property
    def data(self) -> bytes:
        """The whole object in one buffer."""
        return b"".join(self.parts)


def encode_object(
    kind: ObjectKind,
    streams: Iterable[tuple[int, Sequence[StoredBatch]]],
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    chain: Sequence[ChainLinks] = (),
    header_index: bytes | Callable[[Locate], bytes] = EMPTY_HEADER_INDEX,
    *,
    copy_small: bool = True,
) -> EncodedObject:
    """Lays out runs of batches as one object, ordered by (stream, offset).

    Each run's batches must be consecutive (each starts where the last ended);
    one stream may have several runs, which must not overlap.
    A block holds at most ``block_bytes``, unless one batch alone is larger:
    that batch gets a block of its own. ``chain`` is the chain region: the
    links of the object's ranges; ``header_index`` the header index region
    (s3stream/header_index.py), before it, or a function that encodes it
    from where the object's entries lie. Without ``copy_small`` no batch
    is copied, small ones neither (native.encode_entries): for batches
    that are views of bytes the caller holds anyway.
    """
    # The object is gathered as a list of parts, never joined here: growing
    # one buffer would copy every payload again on each reallocation, and
    # even one join of tens of MiB holds the GIL for tens of milliseconds.
    # The entries and blocks are laid out in C (native.encode_entries: large
    # payloads by reference, small ones copied beside their entry headers,
    # the copies and CRCs with the GIL released).
    runs = sorted(((s, b) for s, b in streams if b), key=lambda r: (r[0], r[1][0].base_offset))
    previous: tuple[int, int] | None = None
    for stream_id, batches in runs:
        if previous is not None and (stream_id, batches[0].base_offset) < previous:
            raise ValueError(f"stream {stream_id}: runs overlap")
        if kind is ObjectKind.STREAM and previous is not None and previous[0] != stream_id:
            raise ValueError("a stream object holds one stream")
        previous = (stream_id, batches[-1].end_offset)
    # Only a region that lists batches needs their spans: one small tuple
    # per batch; CRCs are taken for listed ones only (in locate).
    parts, size, block_rows, range_rows, spans = encode_entries(
        runs, block_bytes, with_spans=callable(header_index), copy_small=copy_small
    )
    blocks = [BlockInfo(*row) for row in block_rows]
    ranges = [StreamRangeInfo(*row) for row in range_rows]
    if spans is not None and callable(header_index):
        held = spans

        def locate(stream_id: int, base_offset: int) -> EntrySpan:
            position, header, payload = held[(stream_id, base_offset)]
            return EntrySpan(position, len(header) + len(payload), crc32c(payload, crc32c(header)))

        region = header_index(locate)
    else:
        assert not callable(header_index)
        region = header_index
    parts.append(region)
    size += len(region)
    chain_region = encode_chain(sorted(chain, key=lambda c: (c.stream_id, c.start_offset)))
    parts.append(chain_region)
    size += len(chain_region)
    index = b"".join(INDEX_ENTRY.pack(*block) for block in blocks)
    index_crc = crc32c(index)
    head = FOOTER.pack(size, len(blocks), index_crc, FORMAT_VERSION, kind, 0, 0, MAGIC)
    footer_crc = crc32c(head[:20] + head[24:])
    parts.append(index)
    parts.append(
        FOOTER.pack(size, len(blocks), index_crc, FORMAT_VERSION, kind, 0, footer_crc, MAGIC)
    )
    return EncodedObject(parts, size + len(parts[-2]) + len(parts[-1]), ranges, blocks)


class Footer(NamedTuple):
    index_position: int
    block_count: int
    index_crc: int
    kind: ObjectKind
    version: int = FORMAT_VERSION


def parse_footer(key: str, tail: BytesLike, object_size: int) -> Footer:
    """Reads the footer from the last FOOTER_SIZE bytes of an object."""
    if len(tail) < FOOTER_SIZE or object_size < FOOTER_SIZE:
        raise CorruptObject(key, f"object of {object_size} bytes is too short for a footer")
    raw = bytes(tail[-FOOTER_SIZE:])
    position, count, index_crc, version, kind, _, footer_crc, magic = FOOTER.unpack(raw)
    if magic != MAGIC:
        raise CorruptObject(key, f"bad magic {magic!r}", object_size - 8)
    if crc32c(raw[:20] + raw[24:]) != footer_crc:
        raise CorruptObject(key, "footer checksum mismatch", object_size - FOOTER_SIZE)
    if version not in READABLE_VERSIONS:
        raise CorruptObject(key, f"unsupported format version {version}")
    if kind not in (ObjectKind.STREAM_SET, ObjectKind.STREAM):
        raise CorruptObject(key, f"unknown object kind {kind}")
    if position + count * INDEX_ENTRY.size != object_size - FOOTER_SIZE:
        raise CorruptObject(key, "index does not end at the footer", position)
    return Footer(position, count, index_crc, ObjectKind(kind), version)


def parse_index(key: str, footer: Footer, index_bytes: BytesLike) -> ObjectIndex:
    """Parses the index region (exactly ``block_count`` entries) and checks it."""
    if len(index_bytes) != footer.block_count * INDEX_ENTRY.size:
        raise CorruptObject(key, "index length mismatch", footer.index_position)
    if crc32c(index_bytes) != footer.index_crc:
        raise CorruptObject(key, "index checksum mismatch", footer.index_position)
    blocks = [BlockInfo(*entry) for entry in INDEX_ENTRY.iter_unpack(index_bytes)]
    previous = (-1, -1)
    for block in blocks:
        if block.position + block.size > footer.index_position or block.size <= 0:
            raise CorruptObject(key, f"block at {block.position} overruns the data")
        if (block.stream_id, block.start_offset) < previous:
            raise CorruptObject(key, "index entries are out of order", block.position)
        previous = (block.stream_id, block.end_offset)
    return ObjectIndex.of(footer.kind, blocks)


def read_index(key: str, tail: BytesLike, object_size: int) -> ObjectIndex | int:
    """The index if ``tail`` (the object's last bytes) holds it, else the byte
    position from which the caller must read to get it."""
    footer = parse_footer(key, tail, object_size)
    tail_start = object_size - len(tail)
    if footer.index_position < tail_start:
        return footer.index_position
    begin = footer.index_position - tail_start
    return parse_index(key, footer, memoryview(tail)[begin : len(tail) - FOOTER_SIZE])


def parse_block(key: str, info: BlockInfo, data: BytesLike) -> list[StoredBatch]:
    """Splits a fetched block into its batches, after checking its CRC.

    Where ``data`` is (a view of) an exact bytes or bytearray, as every
    store's GET gives, each batch is built as the produce path builds its
    own (docs/design/0154, "Fetched blocks"): its payload a ByteSlice of
    the same bytes and the batch untracked, so the block cache's batches
    are not walked by the cyclic collector; over another buffer, and in
    the pure twin, a memoryview slice and a tracked batch."""
    if len(data) != info.size:
        raise CorruptObject(key, f"block is {len(data)} bytes, index says {info.size}")
    if crc32c(data) != info.crc:
        raise CorruptObject(key, "block checksum mismatch", info.position)
    view = memoryview(data)
    batches: list[StoredBatch] = []
    position = 0
    expected = info.start_offset
    while position < len(view):
        if position + ENTRY_HEADER.size > len(view):
            raise CorruptObject(key, "truncated entry header", info.position + position)
        base, count, length = ENTRY_HEADER.unpack_from(view, position)
        position += ENTRY_HEADER.size
        if base != expected or count == 0 or position + length > len(view):
            raise CorruptObject(key, "inconsistent entry", info.position + position)
        payload = view[position : position + length]
        batches.append(untracked_record(StoredBatch, base, base + count, payload, None))
        position += length
        expected = base + count
    if expected != info.end_offset:
        raise CorruptObject(key, "block offsets do not match its index entry", info.position)
    return batches


def parse_object(key: str, data: BytesLike) -> tuple[ObjectIndex, list[list[StoredBatch]]]:
    """Parses a whole object: its index and every block's batches (for compaction)."""
    index = read_index(key, data, len(data))
    if isinstance(index, int):  # cannot happen with the whole object in hand
        raise CorruptObject(key, "index outside the object", index)
    view = memoryview(data)
    chain = read_chain(key, data)  # checked as well: a damaged region is damage
    if chain is not None:
        chain_start = len(data) - FOOTER_SIZE - INDEX_ENTRY.size * len(index.blocks)
        chain_start -= CHAIN_TRAILER.size + CHAIN_ENTRY.size * len(chain)
        data_end = chain_start
        version = parse_footer(key, data, len(data)).version
        if version >= 3:
            data_end = check_header_index(key, data, chain_start, header_key_entry(version))
        if index.blocks and max(b.position + b.size for b in index.blocks) > data_end:
            raise CorruptObject(key, "blocks overrun the regions after them", data_end)
    return index, [
        parse_block(key, b, view[b.position : b.position + b.size]) for b in index.blocks
    ]


def header_index_layout(
    key: str, data: BytesLike, end: int, key_entry: struct.Struct = HEADER_KEY
) -> tuple[int, int, int, int]:
    """The header index region ending at ``end`` (where the chain region
    starts): the positions of its keys, names and directory, and its key
    count, from its trailer (``data`` holds at least the trailer's bytes,
    as the object's bytes from position 0)."""
    if end < HEADER_TRAILER.size:
        raise CorruptObject(key, "no room for the header index region", end)
    name_count, key_count, _ = HEADER_TRAILER.unpack_from(data, end - HEADER_TRAILER.size)
    directory_size = HEADER_BUCKETS * HEADER_BUCKET.size if key_count else 0
    directory = end - HEADER_TRAILER.size - directory_size
    names = directory - name_count * HEADER_NAME.size
    keys = names - key_count * key_entry.size
    if keys < 0:
        raise CorruptObject(key, "header index region overruns the object", end)
    return keys, names, directory, key_count


def check_header_index(
    key: str, data: BytesLike, end: int, key_entry: struct.Struct = HEADER_KEY
) -> int:
    """Checks a whole object's header index region (ending at ``end``,
    with key entries of ``key_entry``'s layout) against its CRCs and
    returns where it starts."""
    keys, names, directory, key_count = header_index_layout(key, data, end, key_entry)
    view = memoryview(data)
    crc = HEADER_TRAILER.unpack_from(data, end - HEADER_TRAILER.size)[2]
    if crc32c(view[names : end - HEADER_TRAILER.size]) != crc:
        raise CorruptObject(key, "header index checksum mismatch", names)
    first = 0
    for bucket, (bucket_end, bucket_crc) in enumerate(
        HEADER_BUCKET.iter_unpack(view[directory : end - HEADER_TRAILER.size])
    ):
        chunk = view[keys + first * key_entry.size : keys + bucket_end * key_entry.size]
        if not first <= bucket_end <= key_count or crc32c(chunk) != bucket_crc:
            raise CorruptObject(key, f"header index bucket {bucket} mismatch", keys)
        first = bucket_end
    if key_count and first != key_count:
        raise CorruptObject(key, "header index directory does not end at its keys", directory)
    return keys


def read_chain(key: str, data: BytesLike) -> list[ChainLinks] | None:
    """The chain region of a whole object; None for a version 1 object (none kept)."""
    footer = parse_footer(key, data, len(data))
    if footer.version < 2:
        return None
    return parse_chain(key, data, footer.index_position, footer.version)
