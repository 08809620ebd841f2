"""An append larger than one WAL record holds is refused before the store
hears of it (AppendTooLarge): nothing is appended, the store is not marked
failed, and it keeps serving. The largest one it accepts is read back after
a restart, from the WAL and from objects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from s3stream import AppendTooLarge, StreamStore, StreamStoreConfig
from s3stream.store import ObjectStore

SEGMENT = 64 * 1024


def _open(tmp_path: Path, store: ObjectStore, data_dir: str = "node") -> StreamStore:
    config = StreamStoreConfig(
        wal_segment_bytes=SEGMENT,
        wal_preallocate=False,
        upload_interval_s=3600.0,
        compaction_interval_s=3600.0,
        remote_fetch_max_wait_ms=60_000,
    )
    return StreamStore.open(tmp_path / data_dir, store, config)


def _read(store: StreamStore, stream_id: int) -> list[bytes]:
    out: list[bytes] = []
    offset = store.start_offset(stream_id)
    while offset < store.end_offset(stream_id):
        result = store.fetch(stream_id, offset, 1)
        out += [bytes(b.payload) for b in result.batches]
        offset = result.next_offset
    return out


Submit = Callable[[StreamStore, int, bytes], object]


@pytest.mark.parametrize(
    "submit",
    [
        lambda s, i, p: s.submit(i, s.next_offset(i), s.next_offset(i), p),
        lambda s, i, p: s.append(i, s.next_offset(i), s.next_offset(i), p),
    ],
    ids=["submit", "append"],
)
def test_an_append_past_a_wal_record_is_refused_and_the_store_serves_on(
    tmp_path: Path, any_store: ObjectStore, submit: Submit
) -> None:
    store = _open(tmp_path, any_store)
    try:
        stream_id = store.create_stream()
        store.open_stream(stream_id, 1)
        limit = store.max_append_bytes
        assert SEGMENT - 256 < limit < SEGMENT
        store.append(stream_id, 0, 0, b"before")
        with pytest.raises(AppendTooLarge) as refused:
            submit(store, stream_id, b"x" * (limit + 1))
        assert (refused.value.size, refused.value.limit) == (limit + 1, limit)
        assert not store.fenced_or_failed()
        assert store.next_offset(stream_id) == store.end_offset(stream_id) == 1
        largest = bytes(range(256)) * (limit // 256) + b"y" * (limit % 256)
        store.append(stream_id, 1, 1, largest)
        store.append(stream_id, 2, 2, b"after")
        assert _read(store, stream_id) == [b"before", largest, b"after"]
    finally:
        store.close(flush=False)
    # From the WAL: the largest record, with its framing, is read back.
    store = _open(tmp_path, any_store)
    try:
        store.open_stream(stream_id, 2)
        assert _read(store, stream_id) == [b"before", largest, b"after"]
        store.flush()
    finally:
        store.close()
    # From objects only: a fresh data directory.
    store = _open(tmp_path, any_store, "fresh")
    try:
        store.open_stream(stream_id, 3)
        assert _read(store, stream_id) == [b"before", largest, b"after"]
    finally:
        store.close(flush=False)
