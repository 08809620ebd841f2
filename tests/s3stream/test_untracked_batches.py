"""The log cache's batches out of the cyclic collector's way (docs/design/0154).

The server appends each Produce's batch as a memoryview slice of the
request's bytearray. StreamStore keeps it, without a copy, as a ByteSlice
of the same bytes (the C extension's view that the collector does not
track) in a batch it leaves untracked, so that no collection walks the log
cache; the bytearray cannot be resized while the batch holds it, and the
bytes read back, uploaded and recovered are the bytes appended. The pure
twin keeps a read-only memoryview in a tracked batch: the same bytes.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

import native
from s3stream import CallOnDurable, StreamStore, StreamStoreConfig
from s3stream.objects import StoredBatch
from s3stream.store import LocalStore

C = native.IMPLEMENTATION == "c"


@pytest.fixture
def bucket(tmp_path: Path) -> LocalStore:
    return LocalStore(str(tmp_path / "bucket"))


@pytest.fixture
def opened(tmp_path: Path, bucket: LocalStore) -> Iterator[list[StreamStore]]:
    stores: list[StreamStore] = []
    yield stores
    for store in stores:
        store.close(flush=False)


def _open(tmp_path: Path, bucket: LocalStore, opened: list[StreamStore], name: str) -> StreamStore:
    config = StreamStoreConfig(upload_interval_s=3600.0, compaction_interval_s=3600.0)
    store = StreamStore.open(tmp_path / name, bucket, config)
    opened.append(store)
    return store


def _request(offset: int, size: int) -> tuple[bytearray, memoryview]:
    """A request frame of its own and its batch's slice, as the server's
    Produce decoding hands them on: some header bytes, the batch, a tail."""
    frame = bytearray(b"head" + bytes((offset * 31 + i) % 256 for i in range(size)) + b"tail")
    return frame, memoryview(frame)[4 : 4 + size]


def _cached(store: StreamStore, stream_id: int) -> list[StoredBatch]:
    result = store.fetch(stream_id, 0, 1 << 20)
    assert store.reader.gets == 0  # from the log cache: the very batches it keeps
    return result.batches


def test_a_produced_batch_is_kept_untracked_without_a_copy(
    tmp_path: Path, bucket: LocalStore, opened: list[StreamStore]
) -> None:
    store = _open(tmp_path, bucket, opened, "node")
    stream_id = store.create_stream()
    store.open_stream(stream_id, 1)
    frames = []
    for offset in range(0, 40, 2):
        frame, batch = _request(offset, 100 + offset)
        frames.append(frame)
        store.append(stream_id, offset, offset + 1, batch)

    async def appended_on_a_loop() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def then(error: BaseException | None) -> None:
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        frame, batch = _request(40, 300)
        frames.append(frame)
        store.submit_then(CallOnDurable(then), stream_id, 40, 41, batch)
        await done

    asyncio.run(appended_on_a_loop())
    gc.collect()
    cached = _cached(store, stream_id)
    assert [bytes(b.payload) for b in cached] == [bytes(f[4:-4]) for f in frames]
    for batch, frame in zip(cached, frames, strict=True):
        assert batch.payload.obj is frame  # type: ignore[union-attr]  # the request's bytes
        assert batch.payload.readonly  # type: ignore[union-attr]
        assert gc.is_tracked(batch) is not C
        with pytest.raises(BufferError):  # nor can the request's buffer be resized
            frame.extend(b"more")


def test_untracked_batches_are_uploaded_and_recovered_as_appended(
    tmp_path: Path, bucket: LocalStore, opened: list[StreamStore]
) -> None:
    first = _open(tmp_path, bucket, opened, "node")
    stream_id = first.create_stream()
    first.open_stream(stream_id, 1)
    sent = []
    for offset in range(0, 30, 3):
        _, batch = _request(offset, 50 + 7 * offset)
        first.append(stream_id, offset, offset + 2, batch)
        sent.append((offset, offset + 3, bytes(batch)))
        if offset == 12:
            assert first.flush(timeout=30)  # the first five in an object
    first.close(flush=False)  # the rest in the WAL alone
    second = _open(tmp_path, bucket, opened, "node")
    assert second.recovery.replayed_appends == 5
    got = []
    offset = 0
    while offset < second.end_offset(stream_id):
        result = second.fetch(stream_id, offset, 1 << 20)
        got += [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
        offset = result.next_offset
    assert got == sent
    assert second.flush(timeout=30)
    third = _open(tmp_path, bucket, opened, "fresh")  # only the bucket
    result = third.fetch(stream_id, 0, 1 << 20)
    assert [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches] == sent
