"""A fetched block's batches out of the cyclic collector's way
(docs/design/0154, "Fetched blocks").

Every store's GET gives an exact bytes, and parse_block builds each of the
block's batches as the produce path builds its own: the payload a ByteSlice
of the GET's bytes (no copy), the batch a record the collector leaves
untracked. The block cache keeps them, the compactor re-encodes them, and
the bytes read back are the bytes appended. Over another buffer (a
memoryview of an array or an mmap) the batches keep memoryview slices and
stay tracked; the pure twin gives read-only memoryviews in tracked batches:
the same bytes.
"""

from __future__ import annotations

import array
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import native
from native import _pure
from s3stream import StreamStore, StreamStoreConfig, objects
from s3stream.errors import CorruptObject
from s3stream.objects import (
    ObjectKind,
    StoredBatch,
    encode_object,
    parse_block,
    parse_object,
)
from s3stream.store import LocalStore
from tests.native.conftest import C_IMPL, c_impl, differential

C = native.IMPLEMENTATION == "c"


@pytest.fixture
def opened() -> Iterator[list[StreamStore]]:
    stores: list[StreamStore] = []
    yield stores
    for store in stores:
        store.close(flush=False)


def _open(directory: Path, bucket: LocalStore, opened: list[StreamStore]) -> StreamStore:
    config = StreamStoreConfig(upload_interval_s=3600.0, compaction_interval_s=3600.0)
    store = StreamStore.open(directory, bucket, config)
    opened.append(store)
    return store


def _payload(offset: int, size: int) -> bytes:
    return bytes((offset * 31 + i) % 256 for i in range(size))


def test_a_fetched_blocks_batches_are_untracked_after_a_collection(
    tmp_path: Path, opened: list[StreamStore]
) -> None:
    bucket = LocalStore(str(tmp_path / "bucket"))
    first = _open(tmp_path / "node", bucket, opened)
    stream_id = first.create_stream()
    first.open_stream(stream_id, 1)
    sent = []
    for offset in range(0, 60, 3):
        payload = _payload(offset, 40 + 9 * offset)
        first.append(stream_id, offset, offset + 2, payload)
        sent.append((offset, offset + 3, payload))
    assert first.flush(timeout=30)
    fresh = _open(tmp_path / "fresh", bucket, opened)  # only the bucket: every batch fetched
    got = []
    offset = 0
    while offset < fresh.end_offset(stream_id):
        result = fresh.fetch(stream_id, offset, 1 << 20)
        got += result.batches
        offset = result.next_offset
    assert fresh.reader.gets > 0
    gc.collect()
    assert [(b.base_offset, b.end_offset, bytes(b.payload)) for b in got] == sent
    for batch in got:
        assert gc.is_tracked(batch) is not C
        assert batch.payload.readonly  # type: ignore[union-attr]
        owner = batch.payload.obj  # type: ignore[union-attr]
        assert type(owner) is bytes and len(owner) > len(batch.payload)  # the GET's bytes
        if C:
            assert type(batch.payload) is c_impl().ByteSlice
        else:
            assert type(batch.payload) is memoryview


def test_a_whole_objects_batches_are_untracked_and_re_encode_as_they_were(
    tmp_path: Path,
) -> None:
    sent = [StoredBatch(o, o + 2, _payload(o, 30 + 300 * (o % 5))) for o in range(0, 40, 2)]
    encoded = encode_object(ObjectKind.STREAM_SET, [(7, sent)], block_bytes=1500)
    bucket = LocalStore(str(tmp_path / "bucket"))
    bucket.put("object", encoded.data)
    index, blocks = parse_object("object", bucket.get("object"))
    assert len(blocks) > 1
    parsed = [batch for block in blocks for batch in block]
    gc.collect()
    assert all(gc.is_tracked(batch) is not C for batch in parsed)
    # The compactor's route: the fetched batches laid out again, by
    # reference and by copy, give the same object.
    again = encode_object(ObjectKind.STREAM_SET, [(7, parsed)], block_bytes=1500)
    assert again.data == encoded.data
    again_small = encode_object(ObjectKind.STREAM_SET, [(7, parsed)], 1500, copy_small=False)
    assert again_small.data == encoded.data
    assert [b.payload[1:4] for b in parsed] == [b.payload[1:4] for b in sent]
    assert index.blocks == tuple(encoded.blocks)


@pytest.mark.parametrize("make", [lambda b: memoryview(array.array("B", b)), bytes])
def test_a_block_over_another_buffer_keeps_views_and_tracked_batches(make: object) -> None:
    sent = [StoredBatch(o, o + 1, _payload(o, 20 + o)) for o in range(6)]
    encoded = encode_object(ObjectKind.STREAM, [(1, sent)])
    info = encoded.blocks[0]
    data = encoded.data[info.position : info.position + info.size]
    held = make(data)  # type: ignore[operator]
    batches = parse_block("object", info, held)
    gc.collect()
    assert [bytes(b.payload) for b in batches] == [b.payload for b in sent]
    over_bytes = type(held) is bytes
    for batch in batches:
        assert gc.is_tracked(batch) is not (C and over_bytes)
        assert (type(batch.payload) is memoryview) is not (C and over_bytes)


@contextmanager
def _parsing_with(impl: ModuleType) -> Iterator[None]:
    with mock.patch.object(objects, "untracked_record", impl.untracked_record):
        yield


def _parsed(impl: ModuleType, info: objects.BlockInfo, data: bytes) -> object:
    with _parsing_with(impl):
        try:
            batches = parse_block("object", info, data)
        except CorruptObject as error:
            return ("refused", str(error))
    return [(b.base_offset, b.end_offset, bytes(b.payload), b.crc) for b in batches]


# In both passes (the block's layout and CRC are the live native/'s; only
# the batches' making is each implementation's).
@pytest.mark.skipif(C_IMPL is None, reason="the C extension is not built")
@differential
@given(
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12),
    damage=st.none() | st.tuples(st.integers(0, 4000), st.integers(1, 255)),
    trust_crc=st.booleans(),
)
def test_the_c_and_the_twin_parse_a_block_to_the_same_batches(
    sizes: list[int], damage: tuple[int, int] | None, trust_crc: bool
) -> None:
    sent = [StoredBatch(2 * i, 2 * i + 2, _payload(i, size)) for i, size in enumerate(sizes)]
    encoded = encode_object(ObjectKind.STREAM, [(3, sent)], block_bytes=1 << 20)
    info = encoded.blocks[0]
    data = bytearray(encoded.data[info.position : info.position + info.size])
    if damage is not None:
        place, flip = damage
        data[place % len(data)] ^= flip
        if trust_crc:  # damage the CRC does not see: the entries' checks must
            info = info._replace(crc=c_impl().crc32c(data))
    for owner in (bytes(data), data):
        c_batches = _parsed(c_impl(), info, owner)  # type: ignore[arg-type]
        assert c_batches == _parsed(_pure, info, owner)  # type: ignore[arg-type]
        if damage is None:
            expected = [(b.base_offset, b.end_offset, b.payload, None) for b in sent]
            assert c_batches == expected
