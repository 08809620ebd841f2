"""When remote acknowledgements are waited for, uploads follow one another.

An append that asks to be remotely durable while an upload is in flight
waits for that upload, then for the next one, which starts as soon as the
previous one's objects are put (its PUT overlapping the previous commit),
never on the upload interval; every append that asked meanwhile shares it,
and commits stay in order. The object store's
PUTs are held on cue here (the one thing a real store cannot do), and the
test counts uploads and orders acknowledgements; it never measures time.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from s3stream import REMOTE, StreamStore, StreamStoreConfig
from s3stream.chain_verify import verify_stream
from s3stream.manifest import load_state
from s3stream.manifest_records import LOG_PREFIX
from s3stream.store import MemoryStore, ObjectStoreError
from s3stream.store_state import StoreStats
from s3stream.uploader import OBJECT_PREFIX

TIMEOUT = 30.0


def opened(data_dir: Path, store: MemoryStore, *, linger: bool = True) -> StreamStore:
    """A stream store on ``store`` with an upload interval no test outlives
    (only waiting appends start an upload) and, unless ``linger``, no
    remote linger either (only a flush or a complete batch seals)."""
    config = StreamStoreConfig(
        upload_interval_s=3600, wal_segment_bytes=1024 * 1024, wal_preallocate=False
    )
    if not linger:
        config = dataclasses.replace(config, remote_linger_s=3600)
    return StreamStore.open(data_dir, store, config)


class HeldPuts(MemoryStore):
    """A memory store whose object PUTs each wait for a release of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Semaphore(0)
        self.releases = threading.Semaphore(0)
        self.object_puts: list[str] = []

    def put(self, key: str, data: object) -> str:
        if key.startswith(OBJECT_PREFIX):
            self.object_puts.append(key)
            self.started.release()
            assert self.releases.acquire(timeout=TIMEOUT), "the PUT was never released"
        return super().put(key, data)  # type: ignore[arg-type]


def test_appends_asking_during_an_upload_share_the_next_one_which_follows_at_once(
    tmp_path: Path,
) -> None:
    store = HeldPuts()
    stream_store = opened(tmp_path / "data", store)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        first = stream_store.submit(stream, 0, 0, b"a", REMOTE)
        assert store.started.acquire(timeout=TIMEOUT), "no upload started for a waiting append"
        # Upload 1 is in flight (held): these wait for it, then for their own.
        later: list[Future[int]] = [
            stream_store.submit(stream, offset, offset, b"b", REMOTE) for offset in (1, 2, 3)
        ]
        local = stream_store.submit(stream, 4, 4, b"c")
        assert local.result(TIMEOUT) == 5  # the WAL alone acknowledges a local append
        assert not first.done() and not any(f.done() for f in later)
        store.releases.release()
        assert first.result(TIMEOUT) == 1
        # The next upload starts right after the first is committed, without
        # the interval, and carries all three (and the local append).
        assert store.started.acquire(timeout=TIMEOUT), "the next upload did not follow"
        assert not any(f.done() for f in later)
        store.releases.release()
        assert [f.result(TIMEOUT) for f in later] == [2, 3, 4]
        assert len(store.object_puts) == 2
        assert stream_store.stats.uploads == 2
        assert stream_store.remote_end_offset(stream) == 5
    finally:
        for _ in range(4):
            store.releases.release()
        stream_store.close()


def test_a_remote_wait_on_appended_data_starts_its_upload(tmp_path: Path) -> None:
    store = HeldPuts()
    stream_store = opened(tmp_path / "data", store)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        for offset in range(5):
            stream_store.submit(stream, offset, offset, b"x").result(TIMEOUT)
        assert store.object_puts == [] and stream_store.stats.uploads == 0
        # A remote wait on what is already appended starts the upload.
        waiter = stream_store.when_remote(stream, 5)
        assert store.started.acquire(timeout=TIMEOUT)
        store.releases.release()
        assert waiter.result(TIMEOUT) == 5
        assert len(store.object_puts) == 1
    finally:
        for _ in range(2):
            store.releases.release()
        stream_store.close()


class HeldCommits(HeldPuts):
    """Also holds each manifest commit (a create-if-absent PUT of the next
    version) once ``hold_commits`` is set, until released."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_commits = False
        self.commit_started = threading.Semaphore(0)
        self.commit_releases = threading.Semaphore(0)
        self.events: list[str] = []

    def put(self, key: str, data: object) -> str:
        if key.startswith(OBJECT_PREFIX):
            self.events.append("object put")
        return super().put(key, data)

    def put_if_absent(self, key: str, data: object) -> str:
        if self.hold_commits and key.startswith(LOG_PREFIX):
            self.events.append("commit")
            self.commit_started.release()
            assert self.commit_releases.acquire(timeout=TIMEOUT), "the commit was never released"
        return super().put_if_absent(key, data)  # type: ignore[arg-type]


def acknowledged_over_a_held_commit(
    tmp_path: Path, store: HeldCommits, not_put: str
) -> tuple[int, StoreStats]:
    """Appends two records with ``REMOTE`` to a new stream, the second
    once the first's object PUT is in flight; checks that the second's
    object is put while the first's commit is held (``not_put``: the
    failure's words if not) and that each is acknowledged after its own
    commit, in order. Returns the stream and the stream store's stats."""
    stream_store = opened(tmp_path / "data", store)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        store.hold_commits = True
        first = stream_store.submit(stream, 0, 0, b"a", REMOTE)
        assert store.started.acquire(timeout=TIMEOUT)
        second = stream_store.submit(stream, 1, 1, b"b", REMOTE)
        store.releases.release()  # the first object is put; its commit starts, held
        assert store.commit_started.acquire(timeout=TIMEOUT)
        assert store.started.acquire(timeout=TIMEOUT), not_put
        assert not first.done() and not second.done()
        store.releases.release()
        store.commit_releases.release()
        assert first.result(TIMEOUT) == 1
        assert store.commit_started.acquire(timeout=TIMEOUT)
        assert not second.done()  # committed after the first, never before
        store.commit_releases.release()
        assert second.result(TIMEOUT) == 2
        assert stream_store.remote_end_offset(stream) == 2
        return stream, stream_store.stats
    finally:
        store.hold_commits = False
        for _ in range(3):
            store.releases.release()
            store.commit_releases.release()
        stream_store.close()


def test_the_next_upload_is_put_while_the_previous_commit_is_in_flight(tmp_path: Path) -> None:
    store = HeldCommits()
    stream, stats = acknowledged_over_a_held_commit(
        tmp_path, store, "the next PUT waited for the commit"
    )
    # Two uploads; the second object's PUT and the first commit may
    # start in either order (they overlap), the commits in theirs.
    assert sorted(store.events) == ["commit", "commit", "object put", "object put"]
    assert store.events[0] == "object put" and store.events[-1] == "commit"
    assert stats.uploads == 2
    # The second object was laid out against the state the first commit
    # made: the stream's chain runs through both, unbroken from genesis.
    verdict = verify_stream(store, load_state(store), stream)
    assert verdict.ok and verdict.from_genesis
    assert (verdict.start_offset, verdict.end_offset, verdict.batches) == (0, 2, 2)


def test_an_upload_starts_without_the_linger_once_as_many_wait_as_the_last_one_answered(
    tmp_path: Path,
) -> None:
    stream_store = opened(tmp_path / "data", MemoryStore(), linger=False)
    try:
        streams = [stream_store.create_stream() for _ in range(2)]
        for stream in streams:
            stream_store.open_stream(stream, 1)
        # The first upload answers two appends (flushed: no batch is known yet).
        first = [stream_store.submit(stream, 0, 0, b"a", REMOTE) for stream in streams]
        assert stream_store.flush(TIMEOUT)
        assert [f.result(TIMEOUT) for f in first] == [1, 1]
        uploads = stream_store.stats.uploads
        # One of two asks again: the batch is not complete, the linger holds it.
        waiting = stream_store.submit(streams[0], 1, 1, b"b", REMOTE)
        local = stream_store.submit(streams[0], 2, 2, b"c")
        assert local.result(TIMEOUT) == 3  # the WAL has it; the remote wait goes on
        assert not waiting.done() and stream_store.stats.uploads == uploads
        # The second one asks: the batch is complete and goes up at once.
        second = stream_store.submit(streams[1], 1, 1, b"d", REMOTE)
        assert waiting.result(TIMEOUT) == 2 and second.result(TIMEOUT) == 2
        assert stream_store.stats.uploads == uploads + 1
        assert [stream_store.remote_end_offset(s) for s in streams] == [3, 2]
    finally:
        stream_store.close()


class HeldSyncs:
    """fdatasync that waits, once ``hold`` is set, until released: the WAL's
    sync running long, which a real disk does not do on cue."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hold = threading.Event()
        self.release = threading.Event()
        self._sync = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        if self.hold.is_set():
            assert self.release.wait(TIMEOUT), "the sync was never released"
        self._sync(fd)


class NotedPuts(MemoryStore):
    """A memory store that notes its object PUTs and manifest commits, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.object_put = threading.Event()

    def put(self, key: str, data: object) -> str:
        if key.startswith(OBJECT_PREFIX):
            self.events.append("object put")
            self.object_put.set()
        return super().put(key, data)  # type: ignore[arg-type]

    def put_if_absent(self, key: str, data: object) -> str:
        if key.startswith(LOG_PREFIX):
            self.events.append("commit")
        return super().put_if_absent(key, data)  # type: ignore[arg-type]


def test_an_upload_is_put_while_its_appends_are_synced_and_committed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = NotedPuts()
    syncs = HeldSyncs(monkeypatch)
    stream_store = opened(tmp_path / "data", store)
    try:
        stream = stream_store.create_stream()
        stream_store.open_stream(stream, 1)
        store.events.clear()
        syncs.hold.set()
        waiting = stream_store.submit(stream, 0, 0, b"a", REMOTE)
        # The append is written but not yet synced: its object goes up...
        assert store.object_put.wait(TIMEOUT), "no object was put while the sync ran"
        # ... and waits there: nothing not durable in the WAL is committed.
        assert store.events == ["object put"] and not waiting.done()
        assert stream_store.remote_end_offset(stream) == 0
        syncs.release.set()
        assert waiting.result(TIMEOUT) == 1
        assert store.events == ["object put", "commit"]
        assert load_state(store).streams[stream].end_offset == 1
    finally:
        syncs.release.set()
        stream_store.close()


class HeldManifestCommits(MemoryStore):
    """A memory store whose manifest commits wait, once ``hold`` is set, for
    a release each; object PUTs go through, counted."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.commit_started = threading.Semaphore(0)
        self.commit_releases = threading.Semaphore(0)
        self.object_puts = 0

    def put(self, key: str, data: object) -> str:
        if key.startswith(OBJECT_PREFIX):
            self.object_puts += 1
        return super().put(key, data)  # type: ignore[arg-type]

    def put_if_absent(self, key: str, data: object) -> str:
        if self.hold and key.startswith(LOG_PREFIX):
            self.commit_started.release()
            assert self.commit_releases.acquire(timeout=TIMEOUT), "the commit was never released"
        return super().put_if_absent(key, data)  # type: ignore[arg-type]


def test_appends_waiting_during_a_commit_wait_for_those_it_answers_to_share_one_upload(
    tmp_path: Path,
) -> None:
    store = HeldManifestCommits()
    stream_store = opened(tmp_path / "data", store, linger=False)
    flusher = threading.Thread(target=stream_store.flush, args=(TIMEOUT,))
    try:
        a, b = stream_store.create_stream(), stream_store.create_stream()
        for stream in (a, b):
            stream_store.open_stream(stream, 1)
        # Two appenders, each waiting for its acknowledgement: a batch of two.
        first = [stream_store.submit(s, 0, 0, b"0", REMOTE) for s in (a, b)]
        assert stream_store.flush(TIMEOUT) and [f.result(TIMEOUT) for f in first] == [1, 1]
        uploads, puts = stream_store.stats.uploads, store.object_puts
        store.hold = True
        a1 = stream_store.submit(a, 1, 1, b"1", REMOTE)
        flusher.start()  # a1 goes up alone; its commit is held
        assert store.commit_started.acquire(timeout=TIMEOUT)
        # b asks while a's commit is held: not a complete batch, so it waits
        # for the appends that commit answers rather than going up alone.
        b1 = stream_store.submit(b, 1, 1, b"1", REMOTE)
        assert stream_store.submit(b, 2, 2, b"local").result(TIMEOUT) == 3
        assert store.object_puts == puts + 1 and not b1.done()
        store.hold = False
        store.commit_releases.release()
        assert a1.result(TIMEOUT) == 2
        a2 = stream_store.submit(a, 2, 2, b"2", REMOTE)  # a asks again: complete
        assert a2.result(TIMEOUT) == 3 and b1.result(TIMEOUT) == 2
        # One upload for a's first append, one for the two that waited together.
        assert stream_store.stats.uploads == uploads + 2
        assert store.object_puts == puts + 2
    finally:
        store.hold = False
        store.commit_releases.release()
        if flusher.is_alive():
            flusher.join(TIMEOUT)
        stream_store.close()


class FailsOnePutAhead(HeldCommits):
    """Also fails the first attempt of the second object's PUT (the one put
    while the first commit is held), as a store's 500 would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[str] = []

    def put(self, key: str, data: object) -> str:
        if key.startswith(OBJECT_PREFIX) and len(self.object_puts) == 1 and not self.failed:
            self.failed.append(key)
            raise ObjectStoreError("put", key, "injected 500")
        return super().put(key, data)


def test_a_failed_put_ahead_is_retried_and_acknowledged_after_the_commit_before_it(
    tmp_path: Path,
) -> None:
    store = FailsOnePutAhead()
    # The second object's PUT fails while the first commit is held, and is sent again.
    stream, stats = acknowledged_over_a_held_commit(
        tmp_path, store, "the failed PUT was not retried"
    )
    assert store.failed == [store.object_puts[1]] and stats.upload_errors == 1
    # A machine with only the bucket reads both records, once each, in order.
    with StreamStore.open(tmp_path / "fresh", store, StreamStoreConfig.small()) as fresh:
        fresh.open_stream(stream, 2)
        assert [bytes(b.payload) for b in fresh.fetch(stream, 0).batches] == [b"a", b"b"]
    verdict = verify_stream(store, load_state(store), stream)
    assert verdict.ok and (verdict.start_offset, verdict.end_offset, verdict.batches) == (0, 2, 2)
