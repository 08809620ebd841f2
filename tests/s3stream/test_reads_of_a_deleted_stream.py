"""A stream deleted under a read of its objects: the read raises
StreamNotFound, as a read of a stream deleted before it does, never an
empty answer. An empty answer says "no more data yet", on which a long
polling reader of the deleted stream waits for ever instead of learning
it is gone (the engine answers StreamNotFound of a deleted topic's
partition UnknownTopic: engine/store_errors.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from s3stream import StreamNotFound, StreamStore, StreamStoreConfig
from s3stream.fetcher import Fetcher, FetchResult
from s3stream.manifest import Manifest
from s3stream.store import MemoryStore
from tests.s3stream.test_stream_store import expected, fill, new_stream

BATCHES = 10
CONFIG = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    log_cache_bytes=0,  # every read of what was uploaded is an object read
    remote_fetch_max_wait_ms=60_000,  # a slow read on a loaded machine is no empty answer
)


@pytest.fixture
def uploaded(tmp_path: Path) -> Iterator[tuple[StreamStore, int]]:
    """A store and a stream whose batches only objects hold."""
    store = StreamStore.open(tmp_path / "node", MemoryStore(), CONFIG)
    try:
        stream_id = new_stream(store)
        fill(store, stream_id, BATCHES)
        assert store.flush(30)
        yield store, stream_id
    finally:
        store.close(flush=False)


def _fetch(store: StreamStore, stream_id: int) -> FetchResult:
    return store.fetch(stream_id, 0)


def _fetch_bounded(store: StreamStore, stream_id: int) -> FetchResult:
    return store.fetch_bounded(stream_id, 0)


def _fetch_async(store: StreamStore, stream_id: int) -> FetchResult:
    return asyncio.run(store.fetch_async(stream_id, 0))


READS = pytest.mark.parametrize(
    "read", [_fetch, _fetch_bounded, _fetch_async], ids=["fetch", "fetch_bounded", "fetch_async"]
)


def _deleted_before_the_object_read(
    monkeypatch: pytest.MonkeyPatch, store: StreamStore, stream_id: int
) -> list[bool]:
    """The stream deleted once a read has found it and its range (the
    store's look), just before it reads its objects."""
    read_objects = Fetcher._read_objects
    deleted: list[bool] = []

    def deleted_first(self: Fetcher, *args: Any) -> Any:
        if not deleted:
            deleted.append(True)
            store.delete_stream(stream_id)
        return read_objects(self, *args)

    monkeypatch.setattr(Fetcher, "_read_objects", deleted_first)
    return deleted


@READS
def test_a_read_of_a_stream_deleted_under_it_raises_stream_not_found(
    uploaded: tuple[StreamStore, int],
    monkeypatch: pytest.MonkeyPatch,
    read: Callable[[StreamStore, int], FetchResult],
) -> None:
    store, stream_id = uploaded
    deleted = _deleted_before_the_object_read(monkeypatch, store, stream_id)
    with pytest.raises(StreamNotFound):
        read(store, stream_id)
    assert deleted, "the read never reached the objects"


@READS
def test_a_read_between_the_deletions_commit_and_its_forgetting_raises_stream_not_found(
    uploaded: tuple[StreamStore, int],
    monkeypatch: pytest.MonkeyPatch,
    read: Callable[[StreamStore, int], FetchResult],
) -> None:
    """The manifest no longer names the stream, the store's state still
    does: the read's look finds the stream, its objects read finds none."""
    store, stream_id = uploaded
    commit = Manifest.commit
    answers: list[FetchResult | BaseException] = []

    def committed_then_read(self: Manifest, ops: list[Any], **kwargs: Any) -> Any:
        state = commit(self, ops, **kwargs)
        if ops == [["delete_stream", stream_id]]:
            try:
                answers.append(read(store, stream_id))
            except Exception as error:
                answers.append(error)
        return state

    monkeypatch.setattr(Manifest, "commit", committed_then_read)
    store.delete_stream(stream_id)
    (answer,) = answers
    assert isinstance(answer, StreamNotFound), f"the read answered {answer!r}"


@READS
def test_a_live_streams_object_read_still_answers_its_batches(
    uploaded: tuple[StreamStore, int], read: Callable[[StreamStore, int], FetchResult]
) -> None:
    store, stream_id = uploaded
    result = read(store, stream_id)
    found = [(b.base_offset, b.end_offset, bytes(b.payload)) for b in result.batches]
    assert found == expected(stream_id, 0, BATCHES)[: len(found)]
    assert found
