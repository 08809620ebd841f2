"""docs/object-format.md is enough to write a reader and a writer.

Every structure the document defines is built here from its own layouts
and tables (read by tests.docspec: field names, types and order, record
and operation shapes, key patterns), with a CRC32C written from its
definition: the store must read what the document describes, and what the
store writes must parse by the document's rules.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import StreamStore, StreamStoreConfig
from s3stream.chain_hash import ChainHash
from s3stream.errors import CorruptObject
from s3stream.header_index import (
    StreamKeys,
    Tails,
    encode_region,
    parse_region,
    read_directory,
    read_offsets,
    region_end,
)
from s3stream.manifest import load_state
from s3stream.manifest_records import checkpoint_key, delta_key
from s3stream.manifest_state import KEPT_FENCES
from s3stream.objects import (
    SUFFIX_READ_BYTES,
    ChainLinks,
    ObjectKind,
    StoredBatch,
    encode_object,
    parse_object,
    read_chain,
    read_index,
)
from s3stream.store import LocalStore, MemoryStore
from s3stream.uploader import object_key
from s3stream.wal_entries import (
    WAL_DATA,
    WAL_OWNED_DATA,
    WAL_OWNED_TRIM,
    WAL_TRIM,
    Writer,
    encode_writer,
    split_entry,
)
from tests import docspec
from wal import WriteAheadLog

DOC = "object-format.md"
LAYOUTS = docspec.layouts(DOC)
ENTRY = LAYOUTS["entry"]
INDEX_ENTRY = LAYOUTS["index_entry"]
FOOTER = LAYOUTS["footer"]
CHAIN_ENTRY = LAYOUTS["chain_entry"]
CHAIN_TRAILER = LAYOUTS["chain_trailer"]
HEADER_NAME = LAYOUTS["header_name"]
HEADER_KEY = LAYOUTS["header_key"]
HEADER_KEY_V3 = LAYOUTS["header_key_v3"]
HEADER_BUCKET = LAYOUTS["header_bucket"]
HEADER_TRAILER = LAYOUTS["header_trailer"]
RECORD = LAYOUTS["record"]


def _stated_size(pattern: str) -> int:
    found = re.search(pattern, docspec.text(DOC), flags=re.S)
    assert found is not None, pattern
    return int(found.group(1))


def chain_algorithms() -> dict[str, int]:
    """The chain entry's algorithm ids, by name: "1 = SHA-256, 2 = BLAKE3"."""
    pairs = re.findall(r"(\d+) = ([A-Z0-9-]+)", CHAIN_ENTRY.field("algorithm").comment)
    return {name: int(value) for value, name in pairs}


def doc_chain_hash(name: str) -> ChainHash:
    """The store's algorithm of a name the document gives (SHA-256 is SHA256)."""
    return ChainHash[name.replace("-", "")]


def _kinds() -> dict[str, int]:
    """The footer's kind values, by name: "1 = stream-set object, 2 = stream object"."""
    pairs = re.findall(r"(\d+) = ([a-z -]+?)(?:,|$)", FOOTER.field("kind").comment)
    return {name.strip(): int(value) for value, name in pairs}


# -- data objects ---------------------------------------------------------------


def test_the_layouts_have_the_sizes_the_text_states() -> None:
    assert INDEX_ENTRY.fixed().size == _stated_size(r"one (\d+)-byte entry per block")
    assert FOOTER.fixed().size == _stated_size(r"then a\s+(\d+)-byte \*footer\*")
    assert FOOTER.fixed().size == _stated_size(r"The last (\d+) bytes of every data object")
    assert ENTRY.names[-1] == "payload"
    assert RECORD.names == ["magic", "crc", "body"]


def test_the_numbers_in_the_text_are_the_stores() -> None:
    defaults = StreamStoreConfig()
    mib = 1024 * 1024
    assert _stated_size(r"`block_bytes` \((\d+) MiB by default\)") * mib == defaults.block_bytes
    assert (
        _stated_size(r"`stream_object_bytes`\s+\((\d+) MiB by default\)") * mib
        == defaults.stream_object_bytes
    )
    assert _stated_size(r"It fetches the last\s+(\d+) KiB") * 1024 == SUFFIX_READ_BYTES
    assert _stated_size(r"`checkpoint_every` \((\d+)\)") == defaults.checkpoint_every
    assert _stated_size(r"which keeps the last (\d+)") == KEPT_FENCES
    assert _stated_size(r"grace period, (\d+) s\s+by default") == defaults.garbage_grace_s
    assert _stated_size(r"\((\d+) min by\s+default\)") * 60 == defaults.force_split_after_s
    assert (
        _stated_size(r"`stream_object_max_bytes`\s+\((\d+) MiB\)") * mib
        == defaults.stream_object_max_bytes
    )


def test_the_object_kinds_are_the_documented_numbers() -> None:
    assert _kinds() == {
        "stream-set object": ObjectKind.STREAM_SET,
        "stream object": ObjectKind.STREAM,
    }


Run = tuple[int, list[StoredBatch]]


def _doc_chain_region(chain: list[ChainLinks], version: int) -> bytes:
    """The chain region as the document lays it out: entries sorted by
    (stream, start offset), then the trailer; before version 5 the
    algorithm byte is 0."""
    entry, trailer = CHAIN_ENTRY.fixed(), CHAIN_TRAILER.fixed()
    ids = {doc_chain_hash(name): value for name, value in chain_algorithms().items()}
    body = bytearray()
    for c in sorted(chain, key=lambda c: (c.stream_id, c.start_offset)):
        old_before, old_after = c.old or (bytes(32), bytes(32))
        values = {
            "stream_id": c.stream_id,
            "start_offset": c.start_offset,
            "end_offset": c.end_offset,
            "flags": 0 if c.old is None else 1,
            "algorithm": ids[c.algorithm] if version >= 5 else 0,
            "reserved": CHAIN_ENTRY.field("reserved").literal,
            "before": c.before,
            "after": c.after,
            "old_before": old_before,
            "old_after": old_after,
        }
        body += entry.pack(*(values[n] for n in CHAIN_ENTRY.names))
    values = {"entry_count": len(chain), "chain_crc": docspec.crc32c(bytes(body))}
    return bytes(body) + trailer.pack(*(values[n] for n in CHAIN_TRAILER.names))


HeaderIndex = list[tuple[int, list[int], list[tuple[int, int]]]]
"""Per stream: the name hashes it indexes and its (key hash, base offset) pairs."""


def _pack(layout: docspec.Layout, values: dict[str, Any]) -> bytes:
    return layout.fixed().pack(*(values[n] for n in layout.names))


Spans = dict[tuple[int, int], tuple[int, int, int]]
"""Per (stream, base offset): the entry's position, size and CRC32C."""


def _doc_header_index_region(streams: HeaderIndex, spans: Spans, version: int) -> bytes:
    """The header index region as the document lays it out: keys sorted by
    (key hash, stream, base offset) each once (with their batch's entry's
    position, size and CRC in version 4), names by (stream, name hash),
    the 256-bucket directory by the key hash's top byte if there are keys,
    the trailer."""
    names = b"".join(
        _pack(HEADER_NAME, {"stream_id": stream, "name_hash": name})
        for stream, name in sorted({(s, n) for s, found, _ in streams for n in found})
    )
    keys = sorted({(k, s, o) for s, _, pairs in streams for k, o in pairs})
    layout = HEADER_KEY_V3 if version == 3 else HEADER_KEY
    packed = []
    for k, s, o in keys:
        position, size, crc = spans[(s, o)]
        fields = {"key_hash": k, "stream_id": s, "base_offset": o, "position": position}
        packed.append(_pack(layout, {**fields, "entry_size": size, "entry_crc": crc}))
    directory = b""
    if keys:
        for bucket in range(256):
            end = sum(1 for k, _, _ in keys if k >> 56 <= bucket)
            first = sum(1 for k, _, _ in keys if k >> 56 < bucket)
            chunk = b"".join(packed[first:end])
            directory += _pack(HEADER_BUCKET, {"end": end, "bucket_crc": docspec.crc32c(chunk)})
    trailer = {
        "name_count": len(names) // HEADER_NAME.fixed().size,
        "key_count": len(keys),
        "header_crc": docspec.crc32c(names + directory),
    }
    return b"".join(packed) + names + directory + _pack(HEADER_TRAILER, trailer)


def doc_read_header_index(data: bytes) -> HeaderIndex:
    """The header index region of an object of version 3 or later, read by
    the document's rules: from the chain region's start, back through
    trailer, directory, names and keys, every CRC checked; in version 4
    each key's span checked against the entry it names."""
    footer = FOOTER.fixed()
    version = dict(zip(FOOTER.names, footer.unpack(data[-footer.size :]), strict=True))[
        "format_version"
    ]
    key_struct = (HEADER_KEY_V3 if version == 3 else HEADER_KEY).fixed()
    index_position = int.from_bytes(data[-footer.size : -footer.size + 8], "little")
    chain_count = CHAIN_TRAILER.fixed().unpack_from(data, index_position - 8)[0]
    end = index_position - CHAIN_TRAILER.fixed().size - CHAIN_ENTRY.fixed().size * chain_count
    trailer_struct = HEADER_TRAILER.fixed()
    trailer = dict(
        zip(
            HEADER_TRAILER.names,
            trailer_struct.unpack_from(data, end - trailer_struct.size),
            strict=True,
        )
    )
    bucket_struct = HEADER_BUCKET.fixed()
    directory_at = end - trailer_struct.size
    if trailer["key_count"]:
        directory_at -= 256 * bucket_struct.size
    names_at = directory_at - HEADER_NAME.fixed().size * trailer["name_count"]
    keys_at = names_at - key_struct.size * trailer["key_count"]
    directory = data[directory_at : end - trailer_struct.size]
    assert trailer["header_crc"] == docspec.crc32c(data[names_at:directory_at] + directory)
    key_size = key_struct.size
    first = 0
    for bucket, (bucket_end, crc) in enumerate(bucket_struct.iter_unpack(directory)):
        chunk = data[keys_at + first * key_size : keys_at + bucket_end * key_size]
        assert crc == docspec.crc32c(chunk)
        assert all(row[0] >> 56 == bucket for row in key_struct.iter_unpack(chunk))
        first = bucket_end
    streams: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
    for stream, name in HEADER_NAME.fixed().iter_unpack(data[names_at:directory_at]):
        streams.setdefault(stream, ([], []))[0].append(name)
    key_rows = list(key_struct.iter_unpack(data[keys_at:names_at]))
    assert key_rows == sorted(set(key_rows))
    entry_head = ENTRY.fixed()
    for key, stream, offset, *span in key_rows:
        streams.setdefault(stream, ([], []))[1].append((key, offset))
        if span:
            position, size, crc = span
            entry = data[position : position + size]
            assert docspec.crc32c(entry) == crc
            assert entry_head.unpack_from(entry)[0] == offset
            assert entry_head.size + entry_head.unpack_from(entry)[2] == size
    return [(s, sorted(n), sorted(p)) for s, (n, p) in sorted(streams.items())]


def doc_object(
    kind: int,
    runs: list[Run],
    block_bytes: int,
    chain: list[ChainLinks] | None = None,
    *,
    version: int | None = None,
    header_index: HeaderIndex | None = None,
) -> bytes:
    """An object laid out by the document: blocks of entries, a new block when
    the next entry would pass ``block_bytes``; the chain region (none in a
    version 1 object); the index sorted by (stream, start offset); the
    footer, its CRC over its other 28 bytes in order."""
    version = version or int(str(FOOTER.field("format_version").literal))
    entry_head, index_struct, footer_struct = (
        ENTRY.fixed(),
        INDEX_ENTRY.fixed(),
        FOOTER.fixed(),
    )
    data = bytearray()
    index: list[dict[str, int]] = []
    spans: Spans = {}
    for stream_id, batches in sorted(runs, key=lambda r: (r[0], r[1][0].base_offset)):
        block = bytearray()
        first = batches[0].base_offset
        for batch in batches:
            fields = {
                "base_offset": batch.base_offset,
                "offset_count": batch.end_offset - batch.base_offset,
                "length": len(batch.payload),
            }
            entry = entry_head.pack(*(fields[n] for n in ENTRY.names[:-1])) + bytes(batch.payload)
            if block and len(block) + len(entry) > block_bytes:
                index.append(_index_row(stream_id, first, batch.base_offset, len(data), block))
                data += block
                block, first = bytearray(), batch.base_offset
            spans[(stream_id, batch.base_offset)] = (
                len(data) + len(block),
                len(entry),
                docspec.crc32c(entry),
            )
            block += entry
        index.append(_index_row(stream_id, first, batches[-1].end_offset, len(data), block))
        data += block
    if version >= 3:
        data += _doc_header_index_region(header_index or [], spans, version)
    if version >= 2:
        data += _doc_chain_region(chain or [], version)
    index_bytes = b"".join(index_struct.pack(*(row[n] for n in INDEX_ENTRY.names)) for row in index)
    footer: dict[str, Any] = {
        "index_position": len(data),
        "block_count": len(index),
        "index_crc": docspec.crc32c(index_bytes),
        "format_version": version,
        "kind": kind,
        "reserved": FOOTER.field("reserved").literal,
        "footer_crc": 0,
        "magic": FOOTER.field("magic").literal,
    }
    footer["footer_crc"] = docspec.crc32c(
        _footer_crc_covers(footer_struct.pack(*(footer[n] for n in FOOTER.names)))
    )
    return bytes(data + index_bytes + footer_struct.pack(*(footer[n] for n in FOOTER.names)))


def _footer_crc_covers(footer: bytes) -> bytes:
    """The footer's bytes but its CRC's own, in order."""
    at = struct.calcsize(
        "<" + "".join(f.code or "" for f in FOOTER.fields[: FOOTER.names.index("footer_crc")])
    )
    return footer[:at] + footer[at + struct.calcsize(FOOTER.field("footer_crc").code or "") :]


def _index_row(stream_id: int, start: int, end: int, position: int, block: bytes) -> dict[str, int]:
    return {
        "stream_id": stream_id,
        "start_offset": start,
        "end_offset": end,
        "position": position,
        "size": len(block),
        "crc": docspec.crc32c(block),
    }


def doc_read_object(
    data: bytes,
) -> tuple[int, list[tuple[int, list[tuple[int, int, bytes]]]], list[dict[str, Any]]]:
    """An object read by the document's rules: its kind, per index entry the
    block's stream and its entries (base offset, end offset, payload), and
    the chain region's entries."""
    footer_struct = FOOTER.fixed()
    footer = dict(zip(FOOTER.names, footer_struct.unpack(data[-footer_struct.size :]), strict=True))
    raw = data[-footer_struct.size :]
    assert footer["magic"] == FOOTER.field("magic").literal
    assert footer["format_version"] == FOOTER.field("format_version").literal
    assert footer["reserved"] == FOOTER.field("reserved").literal
    assert footer["footer_crc"] == docspec.crc32c(_footer_crc_covers(raw))
    index_struct = INDEX_ENTRY.fixed()
    position, count = footer["index_position"], footer["block_count"]
    assert position + index_struct.size * count == len(data) - footer_struct.size
    index_bytes = data[position : position + index_struct.size * count]
    assert footer["index_crc"] == docspec.crc32c(index_bytes)
    trailer_struct, entry_struct = CHAIN_TRAILER.fixed(), CHAIN_ENTRY.fixed()
    trailer_at = position - trailer_struct.size
    trailer = dict(
        zip(CHAIN_TRAILER.names, trailer_struct.unpack_from(data, trailer_at), strict=True)
    )
    chain_at = trailer_at - entry_struct.size * trailer["entry_count"]
    chain_bytes = data[chain_at:trailer_at]
    assert trailer["chain_crc"] == docspec.crc32c(chain_bytes)
    chain = [
        dict(zip(CHAIN_ENTRY.names, e, strict=True)) for e in entry_struct.iter_unpack(chain_bytes)
    ]
    rows = [
        dict(zip(INDEX_ENTRY.names, r, strict=True)) for r in index_struct.iter_unpack(index_bytes)
    ]
    keys = [(r["stream_id"], r["start_offset"]) for r in rows]
    assert keys == sorted(keys)
    entry_head = ENTRY.fixed()
    blocks = []
    for row in rows:
        block = data[row["position"] : row["position"] + row["size"]]
        assert docspec.crc32c(block) == row["crc"]
        entries, at, expected = [], 0, row["start_offset"]
        while at < len(block):
            entry = dict(zip(ENTRY.names, entry_head.unpack_from(block, at), strict=False))
            at += entry_head.size
            assert entry["base_offset"] == expected and entry["offset_count"] >= 1
            expected = entry["base_offset"] + entry["offset_count"]
            entries.append((entry["base_offset"], expected, block[at : at + entry["length"]]))
            at += entry["length"]
        assert at == len(block) and expected == row["end_offset"]
        assert row["position"] + row["size"] <= chain_at
        blocks.append((row["stream_id"], entries))
    return footer["kind"], blocks, chain


@st.composite
def runs(draw: st.DrawFn) -> tuple[int, list[Run]]:
    """Runs of consecutive batches, several streams, or one stream's runs
    that do not overlap (for a stream object); the kind goes with them."""
    kind = draw(st.sampled_from([int(ObjectKind.STREAM_SET), int(ObjectKind.STREAM)]))
    streams = [draw(st.integers(0, 2**40))] if kind == ObjectKind.STREAM else None
    stream_ids = streams or draw(
        st.lists(st.integers(0, 2**40), min_size=1, max_size=4, unique=True)
    )
    result: list[Run] = []
    for stream_id in stream_ids:
        offset = draw(st.integers(0, 2**50))
        for _ in range(draw(st.integers(1, 3 if kind == ObjectKind.STREAM else 1))):
            batches = []
            for _ in range(draw(st.integers(1, 6))):
                count = draw(st.integers(1, 1000))
                payload = draw(st.binary(min_size=0, max_size=300))
                batches.append(StoredBatch(offset, offset + count, payload))
                offset += count
            result.append((stream_id, batches))
            offset += draw(st.integers(0, 50))  # a gap between runs
    return kind, result


@st.composite
def chains(draw: st.DrawFn, object_runs: list[Run], version: int = 5) -> list[ChainLinks]:
    """Links for some of the runs (a range copied from before the chain has
    none), each made with one of the document's algorithms (SHA-256 alone
    before version 5)."""
    link = st.binary(min_size=32, max_size=32)
    names = sorted(chain_algorithms()) if version >= 5 else ["SHA-256"]
    found = []
    for stream_id, batches in object_runs:
        if draw(st.booleans()):
            old = draw(st.none() | st.tuples(link, link))
            first, end = batches[0].base_offset, batches[-1].end_offset
            algorithm = doc_chain_hash(draw(st.sampled_from(names)))
            found.append(ChainLinks(stream_id, first, end, algorithm, draw(link), draw(link), old))
    return found


@st.composite
def header_indexes(draw: st.DrawFn, object_runs: list[Run]) -> HeaderIndex:
    """Header index entries for some of the runs' streams: names, and keys
    at their batches' base offsets (hashes of any value: the format does
    not care which)."""
    hashes = st.integers(0, 2**64 - 1)
    found: dict[int, tuple[list[int], list[tuple[int, int]]]] = {}
    for stream_id, batches in object_runs:
        if not draw(st.booleans()):
            continue
        names, keys = found.setdefault(stream_id, ([], []))
        if not names:
            names.extend(draw(st.lists(hashes, min_size=1, max_size=3, unique=True)))
        for batch in batches:
            keys.extend((k, batch.base_offset) for k in draw(st.lists(hashes, max_size=3)))
    return [(s, n, k) for s, (n, k) in found.items()]


@settings(max_examples=60, deadline=None)
@given(runs(), st.integers(1, 1200), st.data())
def test_the_store_reads_objects_built_from_the_document(
    layout: tuple[int, list[Run]], block_bytes: int, data_: st.DataObject
) -> None:
    kind, object_runs = layout
    version = data_.draw(st.sampled_from([1, 2, 3, 4, 5]))  # every version is read
    chain = data_.draw(chains(object_runs, version))
    header_index = data_.draw(header_indexes(object_runs))
    data = doc_object(
        kind, object_runs, block_bytes, chain, version=version, header_index=header_index
    )
    want_chain = sorted(chain, key=lambda c: (c.stream_id, c.start_offset))
    assert read_chain("doc.sso", data) == (want_chain if version >= 2 else None)
    end = region_end("doc.sso", data, len(data))
    # A lookup's reader: no directory in an older object (its ranges are
    # scanned), else the names the document's region lists.
    bucket = MemoryStore()
    bucket.put("doc.sso", data)
    directory = read_directory(Tails(bucket), "doc.sso", len(data))
    if version < 3:
        assert end is None and directory is None
    else:
        assert end is not None
        read = [
            (k.stream_id, sorted(k.names), sorted(k.keys))
            for k in parse_region("doc.sso", data, end)
        ]
        assert read == [(s, sorted(n), sorted(set(p))) for s, n, p in sorted(header_index)]
        assert directory is not None
        assert directory.names == {(s, n) for s, names, _ in header_index for n in names}
        # A lookup's listed batches: with their spans from version 4, which
        # hold exactly the entry of their batch; without them in version 3.
        for stream_id, _, pairs in header_index:
            for hashed, offset in pairs:
                listed = read_offsets(bucket, "doc.sso", directory, stream_id, hashed)
                assert offset in [found.base_offset for found in listed]
                for found in listed:
                    if version == 3:
                        assert found.span is None
                        continue
                    assert found.span is not None
                    entry = data[found.span.position : found.span.position + found.span.size]
                    assert ENTRY.fixed().unpack_from(entry)[0] == found.base_offset
    index, blocks = parse_object("doc.sso", data)
    assert index.kind == kind
    expected = sorted(
        ((s, b.base_offset, b.end_offset, bytes(b.payload)) for s, run in object_runs for b in run),
        key=lambda t: t[:2],
    )
    read = [
        (info.stream_id, b.base_offset, b.end_offset, bytes(b.payload))
        for info, block in zip(index.blocks, blocks, strict=True)
        for b in block
    ]
    assert read == expected
    # A reader holding only the 64 KiB tail reads the index from it, or is
    # told where it starts.
    tail = data[-64 * 1024 :]
    found = read_index("doc.sso", tail, len(data))
    if isinstance(found, int):
        assert found == int.from_bytes(data[-32:-24], "little") < len(data) - len(tail)
    else:
        assert found == index


@settings(max_examples=60, deadline=None)
@given(runs(), st.integers(1, 1200), st.data())
def test_objects_the_store_writes_parse_by_the_document(
    layout: tuple[int, list[Run]], block_bytes: int, data_: st.DataObject
) -> None:
    kind, object_runs = layout
    chain = data_.draw(chains(object_runs))
    header_index = data_.draw(header_indexes(object_runs))
    listed = [StreamKeys(s, tuple(n), k) for s, n, k in header_index]
    encoded = encode_object(
        ObjectKind(kind),
        object_runs,
        block_bytes,
        chain,
        lambda locate: encode_region(listed, locate),
    )
    data = encoded.data
    read_kind, blocks, chain_read = doc_read_object(data)
    names = {value: name for name, value in chain_algorithms().items()}
    assert doc_read_header_index(data) == [
        (s, sorted(n), sorted(set(k))) for s, n, k in sorted(header_index)
    ]
    assert read_kind == kind
    assert [
        ChainLinks(
            e["stream_id"],
            e["start_offset"],
            e["end_offset"],
            doc_chain_hash(names[e["algorithm"]]),
            e["before"],
            e["after"],
            (e["old_before"], e["old_after"]) if e["flags"] == 1 else None,
        )
        for e in chain_read
    ] == sorted(chain, key=lambda c: (c.stream_id, c.start_offset))
    for _, entries in blocks:  # a block passes block_bytes only by one entry alone
        size = sum(ENTRY.fixed().size + len(p) for *_, p in entries)
        assert size <= block_bytes or len(entries) == 1
    by_stream = sorted(
        ((s, b.base_offset, b.end_offset, bytes(b.payload)) for s, run in object_runs for b in run),
        key=lambda t: t[:2],
    )
    assert [(s, *e) for s, entries in blocks for e in entries] == by_stream
    # Written by the same rules, the bytes are the document's byte for byte.
    assert data == doc_object(kind, object_runs, block_bytes, chain, header_index=header_index)


def test_a_chain_algorithm_the_document_does_not_name_is_corrupt_in_version_5() -> None:
    """Links of an algorithm the reader cannot compute are refused, never
    taken for another algorithm's; the same byte is no algorithm before
    version 5, whose links are all SHA-256."""
    unknown = max(chain_algorithms().values()) + 1
    batch = StoredBatch(0, 1, b"x")
    links = ChainLinks(5, 0, 1, ChainHash.SHA256, bytes(32), bytes(range(32)))
    for version in (4, 5):
        data = bytearray(doc_object(1, [(5, [batch])], 1024, [links], version=version))
        footer_at = len(data) - FOOTER.fixed().size
        index_at = int.from_bytes(data[footer_at : footer_at + 8], "little")
        entry_at = index_at - CHAIN_TRAILER.fixed().size - CHAIN_ENTRY.fixed().size
        algorithm_at = entry_at + struct.calcsize(
            "<" + "".join(f.code or "" for f in CHAIN_ENTRY.fields[:4])
        )
        assert data[algorithm_at] == (1 if version == 5 else 0)
        data[algorithm_at] = unknown
        body = data[entry_at : index_at - CHAIN_TRAILER.fixed().size]
        struct.pack_into("<I", data, index_at - 4, docspec.crc32c(bytes(body)))
        if version == 5:
            with pytest.raises(CorruptObject, match="unknown chain hash algorithm"):
                read_chain("doc.sso", bytes(data))
        else:
            (read,) = read_chain("doc.sso", bytes(data)) or []
            assert read.algorithm is ChainHash.SHA256


def test_a_footer_checksum_off_by_one_bit_is_refused() -> None:
    data = bytearray(doc_object(1, [(5, [StoredBatch(0, 1, b"x")])], 1024))
    data[-32] ^= 0x01  # index_position, covered by the footer CRC
    with pytest.raises(CorruptObject):
        parse_object("doc.sso", bytes(data))


# -- keys -------------------------------------------------------------------------


def _key(pattern: str, **values: int) -> str:
    return re.sub(r"<(\w+):(\d+)>", lambda m: f"{values[m.group(1)]:0{m.group(2)}d}", pattern)


KEYS = {row["What"]: row["Key"].strip("`") for row in docspec.table(DOC, "Key", "What")}


@given(st.integers(0, 10**10 - 1), st.integers(0, 10**16 - 1), st.integers(0, 10**20 - 1))
def test_keys_are_the_documented_patterns(epoch: int, object_id: int, version: int) -> None:
    sso = _key(
        KEYS["a stream-set object written by the writer of `epoch`"], epoch=epoch, id=object_id
    )
    so = _key(KEYS["a stream object"], epoch=epoch, id=object_id)
    assert object_key(epoch, object_id, ObjectKind.STREAM_SET) == sso
    assert object_key(epoch, object_id, ObjectKind.STREAM) == so
    assert delta_key(version) == _key(
        KEYS["manifest delta that creates version `version`"], version=version
    )
    assert checkpoint_key(version) == _key(
        KEYS["the full manifest state at `version`"], version=version
    )


def _key_pattern(pattern: str) -> re.Pattern[str]:
    """A key pattern of the table as a regular expression: ``<name:N>`` is N
    decimal digits, ``<name:N hex>`` N hex digits."""
    parts = re.split(r"<\w+:(\d+)( hex)?>", pattern)
    regex = ""
    for i in range(0, len(parts), 3):
        regex += re.escape(parts[i])
        if i + 1 < len(parts):
            regex += ("[0-9a-f]" if parts[i + 2] else "[0-9]") + "{" + parts[i + 1] + "}"
    return re.compile(regex)


class ProbeRecordingStore(LocalStore):
    """A local store that notes the keys created with create-if-absent, and
    is probed as a server's store is (a local store's own is skipped)."""

    checks_its_own_conditions = False

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.created: list[str] = []

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> str:
        self.created.append(key)
        return super().put_if_absent(key, data)


def test_an_openers_probe_key_is_the_documented_pattern(tmp_path: Path) -> None:
    store = ProbeRecordingStore(tmp_path / "bucket")
    StreamStore.open(tmp_path / "data", store).close()
    probe = KEYS["an opener's conditional-write probe (deleted at once; never read)"]
    probes = [k for k in store.created if k.startswith("manifest/probe/")]
    assert probes and all(_key_pattern(probe).fullmatch(k) for k in probes)
    assert store.list("manifest/probe/") == []  # deleted at once


@given(st.lists(st.integers(0, 10**20 - 1), min_size=2, max_size=20, unique=True))
def test_a_key_listing_is_in_numeric_order(versions: list[int]) -> None:
    assert sorted(delta_key(v) for v in versions) == [delta_key(v) for v in sorted(versions)]


# -- the manifest -----------------------------------------------------------------


def doc_record(body: Any) -> bytes:
    payload: bytes = msgpack.packb(body, use_bin_type=True)
    fields = {"magic": RECORD.field("magic").literal, "crc": docspec.crc32c(payload)}
    return RECORD.fixed().pack(*(fields[n] for n in RECORD.names[:-1])) + payload


def doc_read_record(data: bytes) -> Any:
    head = RECORD.fixed()
    fields = dict(zip(RECORD.names, head.unpack_from(data), strict=False))
    assert fields["magic"] == RECORD.field("magic").literal
    assert fields["crc"] == docspec.crc32c(data[head.size :])
    return msgpack.unpackb(data[head.size :], raw=False, strict_map_key=False)


def _map_keys(marker: str) -> list[str]:
    """The keys of the body map the document writes after ``marker``."""
    found = re.search(re.escape(marker) + r"[^{]*(\{.*?\})`?", docspec.text(DOC), flags=re.S)
    assert found is not None, marker
    return re.findall(r'"(\w+)":', found.group(1))


def _checkpoint_block() -> str:
    return next(b for b in docspec.code_blocks(DOC) if b.lstrip().startswith('{"seq"'))


def _tuple_names(block: str, before: str) -> list[str]:
    """The names in the first array after ``before`` (``[[a, b], ...]``), up
    to a nested array, which stands as the last name, ``""``."""
    found = re.search(re.escape(before) + r"[^\[]*\[+([^\[\]]*)[\[\]]", block)
    assert found is not None, before
    return [name.strip() for name in found.group(1).split(",")]


DELTA_KEYS = _map_keys("A **delta** body is a map")
CHECKPOINT_KEYS = re.findall(r'"(\w+)":', _checkpoint_block())
STREAM_FIELDS = _tuple_names(_checkpoint_block(), '"streams":')
OBJECT_FIELDS = _tuple_names(_checkpoint_block(), "object := ")
RANGE_FIELDS = _tuple_names(_checkpoint_block(), "created_ms,\n")
GARBAGE_FIELDS = _tuple_names(_checkpoint_block(), '"garbage":')
DROPPED_FIELDS = _tuple_names(_checkpoint_block(), '"dropped":')
SHARED_FIELDS = _tuple_names(_checkpoint_block(), '"shared":')
OPERATIONS = dict(
    docspec.array_shape(row["Operation"]) for row in docspec.table(DOC, "Operation", "Effect")
)


def test_the_document_names_what_the_tests_build_from() -> None:
    assert DELTA_KEYS == ["seq", "epoch", "writer", "ops"]
    assert "streams" in CHECKPOINT_KEYS and "objects" in CHECKPOINT_KEYS
    assert OBJECT_FIELDS[-1] == ""  # the ranges, an array of its own
    assert RANGE_FIELDS == ["stream_id", "start_offset", "end_offset", "size_bytes", "links"]


def doc_object_meta(
    object_id: int, key: str, kind: int, size: int, created_ms: int, ranges: list[dict[str, int]]
) -> list[Any]:
    values: dict[str, Any] = {
        "object_id": object_id,
        "key": key,
        "kind": kind,
        "size": size,
        "created_ms": created_ms,
    }
    return [
        *(values[name] for name in OBJECT_FIELDS[:-1]),
        # A range without links is one written before the chain existed.
        [[r[name] for name in RANGE_FIELDS if name in r] for r in ranges],
    ]


def doc_op(name: str, **arguments: Any) -> list[Any]:
    """An operation as the table shapes it: its name, then its arguments in
    the table's order."""
    assert sorted(arguments) == sorted(OPERATIONS[name]), name
    return [name, *(arguments[a] for a in OPERATIONS[name])]


OWNER = "0123456789abcdef"


def _history() -> list[list[list[Any]]]:
    """Deltas 1..n of one writer, using every operation of the table."""
    sso = doc_object_meta(
        1,
        "objects/0000000001/0000000000000001.sso",
        _kinds()["stream-set object"],
        500,
        1000,
        [
            {"stream_id": 1, "start_offset": 0, "end_offset": 10, "size_bytes": 200},
            {"stream_id": 2, "start_offset": 0, "end_offset": 5, "size_bytes": 100},
            {"stream_id": 3, "start_offset": 0, "end_offset": 7, "size_bytes": 100},
        ],
    )
    so = doc_object_meta(
        2,
        "objects/0000000001/0000000000000002.so",
        _kinds()["stream object"],
        300,
        2000,
        [
            {
                "stream_id": 1,
                "start_offset": 10,
                "end_offset": 30,
                "size_bytes": 250,
                "links": [b"\x05" * 32, b"\x06" * 32],
            }
        ],
    )
    return [
        [doc_op("fence", epoch=1, owner=OWNER)],
        [
            doc_op("create_stream", id=1, created_ms=11),
            doc_op("create_stream", id=2, created_ms=12),
            doc_op("create_stream", id=3, created_ms=13),
        ],
        [doc_op("open_stream", id=1, epoch=1), doc_op("add_object", object=sso)],
        [doc_op("add_object", object=so), doc_op("trim", id=1, start_offset=4)],
        [doc_op("drop_range", stream_id=3, start_offset=0, object_id=1)],
        [
            doc_op("create_stream", id=4, created_ms=14),
            doc_op("share_range", stream_id=4, source_stream_id=2, start_offset=0, object_id=1),
        ],
        [doc_op("delete_stream", id=2)],
        [doc_op("delete_stream", id=1), doc_op("remove_object", object_id=2, delete_after_ms=9)],
        [doc_op("forget_garbage", key="objects/0000000001/0000000000000002.so")],
    ]


def _delta(seq: int, ops: list[list[Any]]) -> bytes:
    values = {"seq": seq, "epoch": 1, "writer": "doc-writer", "ops": ops}
    return doc_record({k: values[k] for k in DELTA_KEYS})


def test_the_store_loads_a_manifest_log_built_from_the_document(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    history = _history()
    for seq, ops in enumerate(history[:5], start=1):
        store.put(delta_key(seq), _delta(seq, ops))
    state = load_state(store)
    assert (state.seq, state.epoch, state.owner, state.owner_since) == (5, 1, OWNER, 1)
    assert state.fence_versions == [1]
    one, two, three = state.streams[1], state.streams[2], state.streams[3]
    assert (one.epoch, one.start_offset, one.end_offset, one.created_ms) == (1, 4, 30, 11)
    assert (two.end_offset, three.end_offset) == (5, 7)
    assert state.dropped == {(3, 0, 1)}
    assert state.ranges[3].find(0) is None  # dropped: the stream no longer holds it
    assert state.objects[1].ranges[0].links is None  # written before the chain
    assert state.chain_head(1) == (30, b"\x06" * 32)
    for seq, ops in enumerate(history[5:], start=6):
        store.put(delta_key(seq), _delta(seq, ops))
    state = load_state(store)
    assert sorted(state.streams) == [3, 4]
    assert sorted(state.objects) == [1]
    assert state.garbage == {}
    # Stream 4 still reads stream 2's range, in stream 2's blocks, though 2 is gone.
    assert state.ranges[4].find(0) == (0, 5, 1)
    assert state.source_of(4, 0, 1) == 2
    assert state.streams[4].end_offset == 5


def test_the_store_loads_a_checkpoint_built_from_the_document(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    obj = doc_object_meta(
        4,
        "objects/0000000002/0000000000000004.so",
        _kinds()["stream object"],
        64,
        77,
        [
            {
                "stream_id": 9,
                "start_offset": 3,
                "end_offset": 8,
                "size_bytes": 40,
                "links": [b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32],
            }
        ],
    )
    stream = {"stream_id": 9, "epoch": 2, "start_offset": 3, "end_offset": 8, "created_ms": 70}
    values: dict[str, Any] = {
        "seq": 12,
        "epoch": 2,
        "owner": OWNER,
        "owner_since": 1,
        "fence_versions": [1, 10],
        "next_stream_id": 10,
        "next_object_id": 5,
        "streams": [[stream[n] for n in STREAM_FIELDS]],
        "objects": [obj],
        "garbage": [
            [
                {"key": "objects/0000000001/0000000000000003.so", "delete_after_ms": 99}[n]
                for n in GARBAGE_FIELDS
            ]
        ],
        "dropped": [],
        "shared": [
            [
                {"stream_id": 7, "source_stream_id": 9, "start_offset": 3, "object_id": 4}[n]
                for n in SHARED_FIELDS
            ]
        ],
    }
    values["streams"].append([{**stream, "stream_id": 7, "epoch": 0}[n] for n in STREAM_FIELDS])
    store.put(checkpoint_key(12), doc_record({k: values[k] for k in CHECKPOINT_KEYS}))
    state = load_state(store)
    assert (state.seq, state.epoch, state.owner, state.owner_since) == (12, 2, OWNER, 1)
    assert state.fence_versions == [1, 10]
    assert (state.next_stream_id, state.next_object_id) == (10, 5)
    meta = state.streams[9]
    assert (meta.epoch, meta.start_offset, meta.end_offset, meta.created_ms) == (2, 3, 8, 70)
    assert state.objects[4].ranges[0].size == 40
    links = state.objects[4].ranges[0].links
    assert links is not None and (links.before, links.after) == (b"\x01" * 32, b"\x02" * 32)
    assert links.rewrite == (b"\x03" * 32, b"\x04" * 32)
    assert state.ranges[9].find(5) is not None
    assert state.garbage == {"objects/0000000001/0000000000000003.so": 99}
    assert state.ranges[7].find(5) == (3, 8, 4) and state.source_of(7, 3, 4) == 9


def _links_forms() -> list[list[str]]:
    """The shapes ``links := [..] | [..]`` the checkpoint block allows, in order."""
    found = re.search(r"links := (.*?)\n```", _checkpoint_block() + "\n```", flags=re.S)
    assert found is not None
    return [
        [name.strip() for name in form.split(",")]
        for form in re.findall(r"\[([^\[\]]*)\]", found.group(1))
    ]


def _range_with_links(links: list[Any]) -> list[Any]:
    return doc_object_meta(
        4,
        "objects/0000000002/0000000000000004.so",
        _kinds()["stream object"],
        64,
        77,
        [{"stream_id": 9, "start_offset": 3, "end_offset": 8, "size_bytes": 40, "links": links}],
    )


def _load_range_links(tmp_path: Path, links: list[Any]) -> Any:
    store = LocalStore(tmp_path / "bucket")
    store.put(delta_key(1), _delta(1, [doc_op("fence", epoch=1, owner=OWNER)]))
    ops = [
        doc_op("create_stream", id=9, created_ms=1),
        doc_op("add_object", object=_range_with_links(links)),
    ]
    store.put(delta_key(2), _delta(2, ops))
    return load_state(store).objects[4].ranges[0].links


@pytest.mark.parametrize("form", range(4))
def test_each_links_form_of_the_document_loads_with_its_algorithm(
    tmp_path: Path, form: int
) -> None:
    names = _links_forms()[form]
    link = {n: bytes([i + 1]) * 32 for i, n in enumerate(names) if n != "algorithm"}
    algorithm = chain_algorithms()["BLAKE3"]
    links = _load_range_links(tmp_path, [algorithm if n == "algorithm" else link[n] for n in names])
    # Without an algorithm the links are SHA-256, written before there was a choice.
    want = doc_chain_hash("BLAKE3") if "algorithm" in names else ChainHash.SHA256
    assert links.algorithm is want
    assert (links.before, links.after) == (link["before"], link["after"])
    rewrite = (link["old_before"], link["old_after"]) if "old_before" in names else None
    assert links.rewrite == rewrite
    # The store writes a form that names the algorithm: the first, or the
    # second for a rewrite.
    written = _links_forms()[0 if rewrite is None else 1]
    ids = {doc_chain_hash(name): value for name, value in chain_algorithms().items()}
    values: dict[str, Any] = {**link, "algorithm": ids[want]}
    assert links.to_wire() == [values[n] for n in written]


def test_links_of_an_algorithm_the_document_does_not_name_refuse_the_load(
    tmp_path: Path,
) -> None:
    """A reader that cannot hash a range must not go on with its chain (nor
    leave the delta out as a conflicting writer's): it refuses to load, with
    the error of a damaged manifest record."""
    unknown = max(chain_algorithms().values()) + 1
    with pytest.raises(CorruptObject, match="unknown chain hash algorithm"):
        _load_range_links(tmp_path, [bytes(32), bytes(32), unknown])


def test_a_checkpoint_from_before_owners_and_drops_loads_as_the_document_says(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "bucket")
    newer = {"owner", "owner_since", "fence_versions", "dropped", "shared"}
    values: dict[str, Any] = {
        "seq": 3, "epoch": 2, "next_stream_id": 1, "next_object_id": 1,
        "streams": [], "objects": [], "garbage": [],
    }  # fmt: skip
    store.put(
        checkpoint_key(3), doc_record({k: values[k] for k in CHECKPOINT_KEYS if k not in newer})
    )
    state = load_state(store)
    assert (state.owner, state.owner_since, state.fence_versions, state.dropped) == (
        "",
        2,
        [],
        set(),
    )
    assert state.shares == {}


def test_the_manifest_the_store_writes_parses_by_the_document(tmp_path: Path) -> None:
    objects = tmp_path / "bucket"
    config = StreamStoreConfig(checkpoint_every=4, upload_interval_s=0.05)
    with StreamStore.open(tmp_path / "data", str(objects.as_uri()), config) as store:
        streams = store.create_streams(2)
        for stream_id in streams:
            store.open_stream(stream_id, 1)
        for i in range(6):
            for stream_id in streams:
                store.append(stream_id, i, i, b"record %d" % i)
            assert store.flush(timeout=30)
        store.trim(streams[0], 2)
        assert store.flush(timeout=30)
        identity = store.identity
    deltas = sorted((objects / "manifest" / "log").iterdir())
    checkpoints = sorted((objects / "manifest" / "checkpoint").iterdir())
    assert deltas and checkpoints
    for path in deltas:
        body = doc_read_record(path.read_bytes())
        assert list(body) == DELTA_KEYS
        assert path.name == f"{body['seq']:020d}"
        for name, *arguments in body["ops"]:
            assert len(arguments) == len(OPERATIONS[name]), name
    fences = [body for body in map(doc_read_record, (p.read_bytes() for p in deltas))]
    assert any(b["ops"] == [["fence", b["epoch"], identity]] for b in fences)
    checkpoint = doc_read_record(checkpoints[-1].read_bytes())
    assert list(checkpoint) == CHECKPOINT_KEYS
    assert all(len(s) == len(STREAM_FIELDS) for s in checkpoint["streams"])
    assert all(len(g) == len(GARBAGE_FIELDS) for g in checkpoint["garbage"])
    assert all(len(d) == len(DROPPED_FIELDS) for d in checkpoint["dropped"])
    assert all(len(d) == len(SHARED_FIELDS) for d in checkpoint["shared"])
    for obj in checkpoint["objects"]:
        assert len(obj) == len(OBJECT_FIELDS)
        named = dict(zip(OBJECT_FIELDS, obj, strict=True))
        assert obj[-1] and all(len(r) == len(RANGE_FIELDS) for r in obj[-1])
        data = (objects / named["key"]).read_bytes() if (objects / named["key"]).exists() else None
        if data is not None:  # not yet deleted by compaction
            assert len(data) == named["size"]
            assert doc_read_object(data)[0] == named["kind"]
    assert checkpoint["owner"] == identity


# -- WAL entries --------------------------------------------------------------------

ENTRY_TYPES = {
    row["Name"]: int(row["Type"])
    for row in docspec.table(DOC, "Type", "Name", "Header fields", "Payload")
}
WRITER_ROWS = docspec.table(DOC, "Offset", "Size", "Field", "Meaning")


def test_the_wal_entry_types_are_the_documented_numbers() -> None:
    assert ENTRY_TYPES == {
        "data (before owners)": WAL_DATA,
        "trim (before owners)": WAL_TRIM,
        "owned data": WAL_OWNED_DATA,
        "owned trim": WAL_OWNED_TRIM,
    }


def doc_writer(owner: str, epoch: int) -> bytes:
    values = {"owner": bytes.fromhex(owner), "epoch": epoch.to_bytes(8, "little")}
    out = bytearray()
    for row in WRITER_ROWS:
        assert int(row["Offset"]) == len(out)
        value = values[row["Field"]]
        assert len(value) == int(row["Size"])
        out += value
    return bytes(out)


def doc_read_writer(payload: bytes) -> tuple[str, int, bytes]:
    fields = {
        row["Field"]: payload[int(row["Offset"]) : int(row["Offset"]) + int(row["Size"])]
        for row in WRITER_ROWS
    }
    end = max(int(r["Offset"]) + int(r["Size"]) for r in WRITER_ROWS)
    return fields["owner"].hex(), int.from_bytes(fields["epoch"], "little"), payload[end:]


@given(
    st.binary(min_size=8, max_size=8).map(bytes.hex),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=64),
)
def test_the_writer_prefix_is_the_documented_one(owner: str, epoch: int, rest: bytes) -> None:
    assert encode_writer(owner, epoch) == doc_writer(owner, epoch)
    for entry_type in (ENTRY_TYPES["owned data"], ENTRY_TYPES["owned trim"]):
        writer, payload = split_entry(entry_type, memoryview(doc_writer(owner, epoch) + rest))
        assert (writer, bytes(payload)) == (Writer(owner, epoch), rest)
    writer, payload = split_entry(ENTRY_TYPES["data (before owners)"], memoryview(rest))
    assert (writer, bytes(payload)) == (None, rest)


def test_the_wal_entries_the_store_writes_parse_by_the_document(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = StreamStore.open(
        data_dir, (tmp_path / "bucket").as_uri(), StreamStoreConfig(upload_interval_s=3600)
    )
    try:
        stream_id = store.create_stream()
        store.open_stream(stream_id, 1)
        store.append(stream_id, 0, 2, b"first")
        store.append(stream_id, 3, 3, b"second")
        store.trim(stream_id, 1)
        epoch = store.manifest.epoch
    finally:
        store.close(flush=False)
    identity = (data_dir / "identity").read_text(encoding="ascii")
    assert re.fullmatch(r"[0-9a-f]{16}\n", identity)
    with WriteAheadLog(data_dir / "wal") as log:
        entries = [
            (e.type, e.stream_id, e.start_offset, e.end_offset, bytes(e.payload))
            for e in log.replay()
        ]
    read = []
    for kind, stream, start, end, payload in entries:
        owner, written_at, rest = doc_read_writer(payload)
        assert (owner, written_at) == (identity.strip(), epoch)
        read.append((kind, stream, start, end, rest))
    data, trim = ENTRY_TYPES["owned data"], ENTRY_TYPES["owned trim"]
    assert (data, stream_id, 0, 3, b"first") in read
    assert (data, stream_id, 3, 4, b"second") in read
    assert [r[:3] for r in read if r[0] == trim] == [(trim, stream_id, 1)]


def test_the_store_replays_wal_entries_built_from_the_document(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    bucket = (tmp_path / "bucket").as_uri()
    with StreamStore.open(data_dir, bucket) as store:
        mine, old, foreign = store.create_streams(3)
        epoch = store.manifest.epoch
    identity = (data_dir / "identity").read_text(encoding="ascii").strip()
    with WriteAheadLog(data_dir / "wal") as log:
        owned = ENTRY_TYPES["owned data"]
        log.append(
            doc_writer(identity, epoch) + b"mine",
            stream_id=mine,
            start_offset=0,
            end_offset=2,
            record_type=owned,
        )
        log.append(
            b"from before owners",
            stream_id=old,
            start_offset=0,
            end_offset=1,
            record_type=ENTRY_TYPES["data (before owners)"],
        )
        log.append(
            doc_writer("fedcba9876543210", epoch) + b"not mine",
            stream_id=foreign,
            start_offset=0,
            end_offset=1,
            record_type=owned,
        )
        log.append(
            doc_writer(identity, epoch),
            stream_id=mine,
            start_offset=1,
            record_type=ENTRY_TYPES["owned trim"],
        )
    with StreamStore.open(data_dir, bucket) as store:
        assert [bytes(b.payload) for b in store.fetch(mine, 1).batches] == [b"mine"]
        assert store.start_offset(mine) == 1
        assert [bytes(b.payload) for b in store.fetch(old, 0).batches] == [b"from before owners"]
        assert store.end_offset(foreign) == 0  # another owner's entry is never replayed
