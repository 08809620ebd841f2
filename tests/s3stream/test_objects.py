"""The data-object format: round trips, layout rules and corruption detection."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3stream.errors import CorruptObject
from s3stream.header_index import encode_region
from s3stream.objects import (
    EMPTY_HEADER_INDEX,
    FOOTER_SIZE,
    INDEX_ENTRY,
    ObjectKind,
    StoredBatch,
    encode_object,
    parse_block,
    parse_object,
    read_index,
)


def batches_from(start: int, sizes: list[tuple[int, int]]) -> list[StoredBatch]:
    out = []
    offset = start
    for count, length in sizes:
        out.append(StoredBatch(offset, offset + count, bytes([offset % 251]) * length))
        offset += count
    return out


stream_runs = st.dictionaries(
    st.integers(0, 2**40),
    st.tuples(
        st.integers(0, 2**50),
        st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 3000)), min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=6,
)


@given(stream_runs, st.integers(1, 8192))
def test_every_batch_comes_back_unchanged(runs: dict, block_bytes: int) -> None:
    streams = {sid: batches_from(start, sizes) for sid, (start, sizes) in runs.items()}
    encoded = encode_object(ObjectKind.STREAM_SET, list(streams.items()), block_bytes)
    index, blocks = parse_object("k", bytes(encoded.data))
    assert index.kind is ObjectKind.STREAM_SET
    got: dict[int, list[StoredBatch]] = {}
    for info, batches in zip(index.blocks, blocks, strict=True):
        got.setdefault(info.stream_id, []).extend(
            StoredBatch(b.base_offset, b.end_offset, bytes(b.payload)) for b in batches
        )
    assert got == streams
    ranges = {(r.stream_id, r.start_offset, r.end_offset) for r in encoded.ranges}
    assert ranges == {(s, b[0].base_offset, b[-1].end_offset) for s, b in streams.items()}


@given(stream_runs, st.integers(1, 8192), st.data())
def test_index_finds_the_block_of_every_offset(runs: dict, block_bytes: int, data) -> None:
    streams = {sid: batches_from(start, sizes) for sid, (start, sizes) in runs.items()}
    encoded = encode_object(ObjectKind.STREAM_SET, list(streams.items()), block_bytes)
    index = read_index("k", encoded.data, len(encoded.data))
    assert not isinstance(index, int)
    sid = data.draw(st.sampled_from(sorted(streams)))
    first, end = streams[sid][0].base_offset, streams[sid][-1].end_offset
    offset = data.draw(st.integers(first, end - 1))
    block = index.blocks[index.find(sid, offset)]  # type: ignore[index]
    assert block.stream_id == sid and block.start_offset <= offset < block.end_offset
    assert index.find(sid, end) is None


def test_blocks_close_at_the_block_size() -> None:
    batches = batches_from(0, [(1, 400)] * 10)
    encoded = encode_object(ObjectKind.STREAM, [(7, batches)], block_bytes=1000)
    # 416 bytes per entry: two fit in 1000 bytes, a third would not.
    spans = [(b.start_offset, b.end_offset) for b in encoded.blocks]
    assert spans == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert all(b.size <= 1000 for b in encoded.blocks)


def test_a_batch_larger_than_a_block_gets_its_own_block() -> None:
    batches = batches_from(0, [(1, 10), (5, 5000), (1, 10)])
    encoded = encode_object(ObjectKind.STREAM, [(1, batches)], block_bytes=100)
    assert [(b.start_offset, b.end_offset) for b in encoded.blocks] == [(0, 1), (1, 6), (6, 7)]


def test_runs_must_be_consecutive_and_not_overlap() -> None:
    with pytest.raises(ValueError, match="does not follow"):
        encode_object(
            ObjectKind.STREAM_SET, [(1, [StoredBatch(0, 2, b"a"), StoredBatch(3, 4, b"b")])]
        )
    with pytest.raises(ValueError, match="overlap"):
        encode_object(
            ObjectKind.STREAM_SET, [(1, batches_from(0, [(5, 1)])), (1, batches_from(3, [(5, 1)]))]
        )
    with pytest.raises(ValueError, match="one stream"):
        encode_object(
            ObjectKind.STREAM, [(1, batches_from(0, [(1, 1)])), (2, batches_from(0, [(1, 1)]))]
        )


def test_several_runs_of_one_stream_in_one_object() -> None:
    runs = [(1, batches_from(10, [(2, 3)])), (1, batches_from(0, [(4, 3)]))]
    encoded = encode_object(ObjectKind.STREAM_SET, runs)
    index, _ = parse_object("k", bytes(encoded.data))
    assert [(b.start_offset, b.end_offset) for b in index.blocks] == [(0, 4), (10, 12)]
    assert index.find(1, 5) == 1  # the first block holding an offset >= 5


def object_bytes() -> bytes:
    return bytes(encode_object(ObjectKind.STREAM_SET, [(1, batches_from(0, [(3, 50)] * 4))]).data)


@given(st.data())
def test_any_flipped_bit_is_detected(data) -> None:
    raw = bytearray(object_bytes())
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptObject) as caught:
        parse_object("bad", bytes(raw))
    assert caught.value.key == "bad"


def test_truncated_object_is_corrupt() -> None:
    raw = object_bytes()
    for cut in (1, FOOTER_SIZE, len(raw) - 1):
        with pytest.raises(CorruptObject):
            parse_object("k", raw[:-cut] if cut < len(raw) else raw[:1])


def test_tail_without_the_whole_index_asks_for_its_position() -> None:
    raw = object_bytes()
    index = read_index("k", raw, len(raw))
    assert not isinstance(index, int)
    tail = raw[-(FOOTER_SIZE + INDEX_ENTRY.size // 2) :]
    assert read_index("k", tail, len(raw)) == len(raw) - FOOTER_SIZE - INDEX_ENTRY.size * len(
        index.blocks
    )


def test_block_with_inconsistent_entry_offsets_is_corrupt() -> None:
    encoded = encode_object(ObjectKind.STREAM, [(1, batches_from(0, [(2, 8), (2, 8)]))])
    info = encoded.blocks[0]
    block = bytearray(encoded.data[info.position : info.position + info.size])
    struct.pack_into("<q", block, 0, 1)  # the first entry now claims offset 1
    good_crc = info._replace(crc=__import__("native").crc32c(bytes(block)))
    with pytest.raises(CorruptObject, match="inconsistent entry"):
        parse_block("k", good_crc, bytes(block))


@given(stream_runs, st.integers(1, 8192))
def test_an_object_with_nothing_indexed_is_the_bytes_its_region_encoder_gives(
    runs: dict, block_bytes: int
) -> None:
    """The uploader writes the empty header index region as a constant when
    no stream of an object is indexed: the same bytes as the region encoder
    listing nothing, which locates every entry first."""
    layout = [(s, batches_from(start, sizes)) for s, (start, sizes) in runs.items()]
    constant = encode_object(ObjectKind.STREAM_SET, layout, block_bytes, (), EMPTY_HEADER_INDEX)
    encoded = encode_object(
        ObjectKind.STREAM_SET, layout, block_bytes, (), lambda locate: encode_region([], locate)
    )
    assert constant.data == encoded.data
    assert constant.blocks == encoded.blocks
