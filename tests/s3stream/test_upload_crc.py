"""An append whose payload CRC the caller gives (the produce path combines
it from the checked batches' own CRCs): the log cache keeps it with the
payload, and the upload combines it into its block's CRC32C instead of
reading the payload a second time. The object is the same bytes as one laid
out from the payloads alone, and reads back from a fresh data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from native import crc32c
from s3stream import StreamStore, StreamStoreConfig
from s3stream.errors import CorruptObject
from s3stream.objects import parse_object
from s3stream.store import MemoryStore
from s3stream.uploader import OBJECT_PREFIX

PAYLOADS = [bytes((i * 7 + j) % 256 for j in range(3000 + i)) for i in range(5)]
QUIET = StreamStoreConfig(upload_interval_s=3600.0, compaction_interval_s=3600.0)


@pytest.fixture
def bucket() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def store(tmp_path: Path, bucket: MemoryStore) -> Iterator[StreamStore]:
    opened = StreamStore.open(tmp_path / "node", bucket, QUIET)
    yield opened
    opened.close(flush=False)


def append_all(store: StreamStore, crcs: list[int | None]) -> int:
    stream_id = store.create_stream()
    store.open_stream(stream_id, 1)
    for payload, crc in zip(PAYLOADS, crcs, strict=True):
        base = store.next_offset(stream_id)
        store.submit(stream_id, base, base + 1, payload, payload_crc=crc).result(timeout=30)
    assert store.flush(timeout=30)
    return stream_id


def uploaded(bucket: MemoryStore) -> bytes:
    (info,) = bucket.list(OBJECT_PREFIX)
    return bucket.get(info.key)


def test_an_object_from_given_crcs_is_the_bytes_of_one_from_the_payloads(
    tmp_path: Path, bucket: MemoryStore, store: StreamStore
) -> None:
    append_all(store, [crc32c(p) for p in PAYLOADS])
    combined = uploaded(bucket)
    other = MemoryStore()
    with StreamStore.open(tmp_path / "other", other, QUIET) as read_all:
        append_all(read_all, [None] * len(PAYLOADS))
        assert uploaded(other) == combined
    _, blocks = parse_object("key", combined)  # every block's CRC checked
    assert [bytes(b.payload) for block in blocks for b in block] == PAYLOADS


def test_the_upload_takes_the_given_crc_and_does_not_read_the_payload(
    tmp_path: Path, bucket: MemoryStore, store: StreamStore
) -> None:
    # A CRC that does not match its payload: an upload that read the bytes
    # would checksum them right; one that takes the CRC given makes a block
    # whose CRC the bytes do not match.
    crcs: list[int | None] = [crc32c(p) for p in PAYLOADS]
    crcs[2] = crc32c(PAYLOADS[2]) ^ 1
    append_all(store, crcs)
    with pytest.raises(CorruptObject, match="block checksum mismatch"):
        parse_object("key", uploaded(bucket))


def test_the_log_cache_keeps_the_crc_with_its_payload(store: StreamStore) -> None:
    stream_id = store.create_stream()
    store.open_stream(stream_id, 1)
    crc = crc32c(PAYLOADS[0])
    store.submit(stream_id, 0, 1, PAYLOADS[0], payload_crc=crc).result(timeout=30)
    store.submit(stream_id, 2, 3, PAYLOADS[1]).result(timeout=30)
    batches = store.fetch(stream_id, 0, 1 << 20).batches
    assert [b.crc for b in batches] == [crc, None]
