"""An S3 object store its owner closes before the stream store over it:
the closed store sends no request, large or small; each background loop
that meets it (compaction, the uploader, its fence check) stops at once
with one line, rather than note an error every interval until the stream
store closes; and what was acknowledged and not uploaded stays in the WAL,
replayed by the next open."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import pytest

from s3stream import StoreFailed, StreamStore, StreamStoreConfig
from s3stream.manifest_entries import ObjectMeta
from s3stream.objects import ObjectKind
from s3stream.store import ObjectStoreClosed
from s3stream.uploader import PreparedObject, put_objects
from tests.s3stream.conftest import S3Endpoint
from tests.s3stream.test_stream_store import expected, fill, new_stream, read_all

WAIT_S = 10.0
"""A bound on each wait of the tests; each step needs an instant."""

CONFIG = StreamStoreConfig(
    upload_interval_s=3600,  # uploads only when flushed
    compaction_interval_s=3600,  # passes only when woken
    small_object_bytes=64 * 1024,
    garbage_grace_s=0,
    wal_preallocate=False,
    wal_segment_bytes=1 << 20,
)

STOPPED = "the object store was closed"


def _stopped_lines(caplog: pytest.LogCaptureFixture, loop: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(loop)]


def _retried_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "will retry" in r.getMessage()]


def _replayed(
    node: Path, s3_endpoint: S3Endpoint, prefix: str, stream: int
) -> list[tuple[int, int, bytes]]:
    """The stream as the next open reads it, from a fresh store over ``prefix``:
    the objects uploaded, and the WAL's replay of the rest."""
    again = s3_endpoint.store(prefix)
    try:
        with StreamStore.open(node, again, CONFIG) as reopened:
            return read_all(reopened, stream)
    finally:
        again.close()


def test_a_closed_s3_store_sends_no_request_small_or_large(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store(f"closed-{uuid.uuid4().hex}/")
    store.put("before", b"data")
    store.close()
    for request in (
        lambda: store.put("small", b"x"),
        lambda: store.get("before"),
        lambda: store.head("before"),
        lambda: store.list(""),
        lambda: store.delete("before"),
        lambda: store.delete_many(["before"]),
    ):
        with pytest.raises(ObjectStoreClosed, match="the store is closed"):
            request()
    reopened = s3_endpoint.store(store.prefix)
    try:
        assert [info.key for info in reopened.list("")] == ["before"]
    finally:
        reopened.close()


def test_put_objects_raises_a_closed_store_rather_than_retrying(s3_endpoint: S3Endpoint) -> None:
    store = s3_endpoint.store(f"closed-put-{uuid.uuid4().hex}/")
    store.close()
    noted: list[Exception] = []
    prepared = PreparedObject(ObjectMeta(1, "o/1", ObjectKind.STREAM_SET, 4, 0, ()), [b"data"])
    with pytest.raises(ObjectStoreClosed):
        put_objects(store, [prepared], threading.Event(), noted.append)
    assert noted == []


def test_loops_over_a_closed_store_stop_with_one_line_and_the_wal_keeps_the_rest(
    tmp_path: Path, s3_endpoint: S3Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"closed-under-{uuid.uuid4().hex}/"
    objects = s3_endpoint.store(prefix)
    opened = StreamStore.open(tmp_path / "node", objects, CONFIG)
    try:
        stream = new_stream(opened)
        for _ in range(3):  # small objects: a compaction pass would merge them
            fill(opened, stream, 2)
            assert opened.flush(timeout=WAIT_S)
        uploaded = len(opened.manifest.state.objects)
        assert uploaded == 3
        objects.close()  # the caller's order, before the stream store's close
        caplog.set_level(logging.WARNING, logger="tidelog.s3stream")

        compactor = opened._compactor
        for _ in range(3):
            compactor.wake()
            compactor._thread.join(WAIT_S / 3)
        assert not compactor._thread.is_alive(), "compaction went on over a closed store"
        stopped = _stopped_lines(caplog, "compaction")
        assert len(stopped) == 1 and STOPPED in stopped[0], stopped

        fill(opened, stream, 4)  # acknowledged: in the fsynced WAL
        with pytest.raises(StoreFailed) as failed:
            opened.flush(timeout=WAIT_S)
        assert isinstance(failed.value.cause, ObjectStoreClosed)
        opened._uploader._thread.join(WAIT_S)
        assert not opened._uploader._thread.is_alive()
        assert len(_stopped_lines(caplog, "uploads stopped")) == 1
        assert STOPPED in _stopped_lines(caplog, "uploads stopped")[0]
        assert _retried_lines(caplog) == []
        assert opened.stats.upload_errors == 0
        assert len(opened.manifest.state.objects) == uploaded
    finally:
        report = opened.close()
    assert report.wal_only_appends == 4
    assert "the store failed" in report.reason

    assert _replayed(tmp_path / "node", s3_endpoint, prefix, stream) == expected(stream, 0, 10)


def test_compaction_ends_once_the_uploader_fails_the_store_over_a_closed_one(
    tmp_path: Path, s3_endpoint: S3Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """The uploader meets the closed store first and fails the stream
    store: compaction's next pass ends its loop, rather than log the
    failure's traceback at every interval until the close."""
    objects = s3_endpoint.store(f"failed-first-{uuid.uuid4().hex}/")
    opened = StreamStore.open(tmp_path / "node", objects, CONFIG)
    try:
        stream = new_stream(opened)
        fill(opened, stream, 2)
        assert opened.flush(timeout=WAIT_S)
        objects.close()
        caplog.set_level(logging.WARNING, logger="tidelog.s3stream")
        fill(opened, stream, 2)
        with pytest.raises(StoreFailed):
            opened.flush(timeout=WAIT_S)
        compactor = opened._compactor
        for _ in range(3):
            compactor.wake()
            compactor._thread.join(WAIT_S / 3)
        assert not compactor._thread.is_alive(), "compaction went on over a failed store"
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        report = opened.close()
    assert report.wal_only_appends == 2


def test_a_remote_waiter_and_the_appends_after_are_answered_at_once_over_a_closed_store(
    tmp_path: Path, s3_endpoint: S3Endpoint
) -> None:
    """An append waiting to be in a committed object is answered with
    StoreFailed, not left waiting for an upload that cannot come, and an
    append after it is refused in the same words; what was acknowledged
    locally is in the WAL for the next open."""
    prefix = f"closed-remote-{uuid.uuid4().hex}/"
    objects = s3_endpoint.store(prefix)
    opened = StreamStore.open(tmp_path / "node", objects, CONFIG)
    try:
        stream = new_stream(opened)
        fill(opened, stream, 2)
        assert opened.flush(timeout=WAIT_S)
        objects.close()
        fill(opened, stream, 2)  # acknowledged: in the fsynced WAL
        waiting = opened.when_remote(stream, opened.next_offset(stream))
        failure = waiting.exception(timeout=WAIT_S)
        assert isinstance(failure, StoreFailed), failure
        assert isinstance(failure.cause, ObjectStoreClosed)
        with pytest.raises(StoreFailed):
            fill(opened, stream, 1)
    finally:
        report = opened.close()
    assert report.wal_only_appends == 2

    assert _replayed(tmp_path / "node", s3_endpoint, prefix, stream) == expected(stream, 0, 4)
