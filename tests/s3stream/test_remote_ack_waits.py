"""What a remote acknowledgement waits on, from the store's own record of
its uploads (s3stream/ack_trace.py): at most the upload in flight when it
asked, then its own, however many appends ask behind a slow PUT.

The object store's PUTs are held on cue here (the one thing a real store
cannot do); the test counts uploads, it never bounds a duration.
"""

from __future__ import annotations

import contextlib
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from s3stream import REMOTE, StreamStore, StreamStoreConfig
from s3stream.ack_trace import Append, UploadTrace, ack_waits, covered
from s3stream.log_cache import CacheBlock
from s3stream.manifest_records import LOG_PREFIX
from s3stream.store import MemoryStore
from s3stream.uploader import OBJECT_PREFIX

TIMEOUT = 30.0


class SlowObjectPuts(MemoryStore):
    """A memory store whose object PUTs wait, once ``hold`` is set, until
    ``release`` is: a PUT that takes as long as the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.release = threading.Event()
        self.held = threading.Event()

    def put(self, key: str, data: object) -> str:
        if key.startswith(OBJECT_PREFIX) and self.hold.is_set():
            self.held.set()
            assert self.release.wait(TIMEOUT), "the PUT was never released"
        return super().put(key, data)  # type: ignore[arg-type]


def test_appends_behind_a_slow_put_wait_for_it_and_their_own_upload_only(tmp_path: Path) -> None:
    store = SlowObjectPuts()
    # An upload interval no test outlives: only the waiting appends start uploads.
    config = StreamStoreConfig(
        upload_interval_s=3600, wal_segment_bytes=1024 * 1024, wal_preallocate=False
    )
    stream_store = StreamStore.open(tmp_path / "data", store, config)
    try:
        streams = [stream_store.create_stream() for _ in range(4)]
        for stream in streams:
            stream_store.open_stream(stream, 1)
        trace = stream_store.trace_uploads()
        appends: list[Append] = []

        def remote(stream: int) -> Future[int]:
            asked = time.monotonic()
            acked = stream_store.submit(stream, 0, 0, b"x", REMOTE)
            acked.add_done_callback(
                lambda _: appends.append(Append(stream, 1, asked, time.monotonic()))
            )
            return acked

        store.hold.set()
        first = remote(streams[0])
        assert store.held.wait(TIMEOUT), "no upload started for a waiting append"
        # Three appends ask, one after another, while the first upload's PUT
        # is slow: were each to start an upload of its own, the last would
        # wait for three uploads after the one in flight.
        behind = [remote(stream) for stream in streams[1:]]
        assert not first.done() and not any(f.done() for f in behind)
        store.release.set()
        assert [f.result(TIMEOUT) for f in [first, *behind]] == [1, 1, 1, 1]
        waits = ack_waits(trace.uploads(), appends)
        assert len(waits) == 4
        assert sorted(w.uploads_waited for w in waits) == [1, 2, 2, 2]
        assert stream_store.stats.uploads == 2
        for wait in waits:
            # Each waited on its uploads' requests, and on nothing longer than itself.
            assert 0 < wait.requests <= wait.latency
            assert wait.wal >= 0 and wait.own_share >= 0 and wait.hand_back >= 0
    finally:
        store.release.set()
        stream_store.close()


def test_an_uploads_requests_are_its_object_puts_and_its_commits(tmp_path: Path) -> None:
    with _one_stream(tmp_path) as (stream_store, stream):
        stream_store.submit(stream, 0, 0, b"x").result(TIMEOUT)
        trace = stream_store.trace_uploads()
        for offset in (1, 2):
            stream_store.submit(stream, offset, offset, b"x", REMOTE).result(TIMEOUT)
        uploads = trace.uploads()
        assert [u.ends for u in uploads] == [{stream: 2}, {stream: 3}]
        for upload in uploads:
            kinds = [(r.operation, r.key.split("/")[0] + "/") for r in upload.requests]
            assert ("put", OBJECT_PREFIX) in kinds
            assert ("put_if_absent", LOG_PREFIX.split("/")[0] + "/") in kinds
            assert all(
                upload.sealed <= r.started <= r.ended <= upload.committed for r in upload.requests
            )
            assert 0 < upload.window_opened <= upload.sealed <= upload.committed <= upload.answered
            # Due at the window's end, or at once if its first ask completes the batch.
            assert upload.window_opened <= upload.due <= upload.window_opened + 0.002
            assert upload.sealed <= upload.wal_wait[0] <= upload.wal_wait[1] <= upload.committed


@contextlib.contextmanager
def _one_stream(
    tmp_path: Path, config: StreamStoreConfig | None = None
) -> Iterator[tuple[StreamStore, int]]:
    """A stream store on a memory store, with one stream opened."""
    stream_store = StreamStore.open(tmp_path / "data", MemoryStore(), config or StreamStoreConfig())
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        yield stream_store, stream
    finally:
        stream_store.close()


spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=12)


@given(spans)
def test_covered_is_the_length_of_the_union(drawn: list[tuple[int, int]]) -> None:
    cells = {cell for start, end in drawn for cell in range(start, end)}
    assert covered((float(s), float(e)) for s, e in drawn) == len(cells)


def test_the_trace_keeps_no_request_that_no_upload_can_claim(tmp_path: Path) -> None:
    # A store traced for a long run serves reads too: each is a request of
    # no upload's, and what the trace holds must not grow with them.
    with _one_stream(tmp_path) as (stream_store, stream):
        trace = stream_store.trace_uploads()
        stream_store.submit(stream, 0, 0, b"x", REMOTE).result(TIMEOUT)
        (upload,) = trace.uploads()
        (key,) = upload.object_keys
        tracemalloc.start()
        try:
            before = _held_by_the_trace()
            for _ in range(20_000):
                stream_store.store.get(key)
            grown = _held_by_the_trace() - before
        finally:
            tracemalloc.stop()
        assert grown < 16 * 1024, f"the trace grew by {grown} bytes over 20,000 GETs"
        # Uploads after them are still told their own requests.
        stream_store.submit(stream, 1, 1, b"x", REMOTE).result(TIMEOUT)
        last = trace.uploads()[-1]
        assert last.ends == {stream: 2}
        assert {r.operation for r in last.requests} >= {"put", "put_if_absent"}


def _held_by_the_trace() -> int:
    """Bytes allocated by s3stream/ack_trace.py and still held."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*/s3stream/ack_trace.py")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_a_batch_complete_at_its_first_ask_is_due_at_once(tmp_path: Path) -> None:
    # One appender: the commit before answered one append, so the next
    # block's first ask completes its batch and the cadence asks for the
    # seal then, not at the end of a window (here an hour) it never holds.
    config = StreamStoreConfig(remote_linger_s=3600.0)
    with _one_stream(tmp_path, config) as (stream_store, stream):
        first = stream_store.submit(stream, 0, 0, b"x", REMOTE)
        assert stream_store.flush(TIMEOUT)
        assert first.result(TIMEOUT) == 1
        trace = stream_store.trace_uploads()
        appends: list[Append] = []
        asked = time.monotonic()
        assert stream_store.submit(stream, 1, 1, b"x", REMOTE).result(TIMEOUT) == 2
        appends.append(Append(stream, 2, asked, time.monotonic()))
        (upload,) = trace.uploads()
        assert upload.window_opened <= upload.due <= upload.sealed
        (wait,) = ack_waits([upload], appends)
        assert wait.seal_late == upload.sealed - upload.due


def test_tracing_turned_on_during_an_upload_records_it_whole_or_not(tmp_path: Path) -> None:
    with _one_stream(tmp_path) as (stream_store, stream):
        uploader = stream_store._uploader
        wait_ready = uploader._wait_ready
        traces: list[UploadTrace] = []

        def turned_on_meanwhile(block: CacheBlock) -> bool:
            # Tracing turned on while an upload waits for the WAL's sync.
            if not traces:
                traces.append(stream_store.trace_uploads())
            return wait_ready(block)

        uploader._wait_ready = turned_on_meanwhile  # type: ignore[method-assign]
        stream_store.submit(stream, 0, 0, b"x", REMOTE).result(TIMEOUT)
        stream_store.submit(stream, 1, 1, b"x", REMOTE).result(TIMEOUT)
        (trace,) = traces
        *begun_before, whole = trace.uploads()
        for upload in begun_before:
            assert upload.wal_wait == (0.0, 0.0) or upload.wal_wait[0] > 0
        assert whole.ends == {stream: 2}
        assert 0 < whole.sealed <= whole.wal_wait[0] <= whole.wal_wait[1] <= whole.committed
