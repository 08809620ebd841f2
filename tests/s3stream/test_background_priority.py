"""The stream store's background threads run ``background_nice`` below the
thread that opened it (Linux nice values, per thread): the uploader's work
while no append asks for remote durability, compaction, the manifest's
checkpoints and deletions, the WAL's spare segments. The WAL's writer and
sync threads, the opener's own thread and every upload a remote
acknowledgement waits for keep the opener's priority; 0 leaves every
thread alone, and a sandbox that refuses a lower priority changes nothing
else."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

import wal.log
from native.buffers import BytesLike
from s3stream import REMOTE, StreamStore, StreamStoreConfig
from s3stream.manifest_records import CHECKPOINT_PREFIX, LOG_PREFIX
from s3stream.store import MemoryStore, ObjectStore
from s3stream.store.base import ObjectData, ObjectStoreClosed
from s3stream.uploader import OBJECT_PREFIX
from tests.s3stream.conftest import S3Endpoint
from tests.s3stream.faults import FaultyStore
from tests.s3stream.test_object_store import unfinished_uploads
from tests.s3stream.test_stream_store import expected, fill, new_stream, read_all
from wal.thread_priority import MOST_NICE, ThreadPriority

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)

TIMEOUT = 30.0
OPENER_NICE = 2
"""The opener runs this much below the test's thread, so that "relative to
the opener" is told apart from "relative to the process"."""
MiB = 1024 * 1024
UPLOADS = 4
"""Uploads of about half a MiB each: the 1 MiB WAL segments roll and are
trimmed, and the manifest (a checkpoint every other version) checkpoints
and deletes."""


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class Call(NamedTuple):
    operation: str
    key: str
    thread: str
    nice: int


class PriorityOfCalls(FaultyStore):
    """Records, for every put and delete, the key and the name and nice
    value of the thread that made it."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.made: list[Call] = []
        self._record_lock = threading.Lock()

    def _record(self, operation: str, key: str) -> None:
        call = Call(operation, key, threading.current_thread().name, _own_nice())
        with self._record_lock:
            self.made.append(call)

    def put(self, key: str, data: ObjectData) -> str:
        self._record("put", key)
        return super().put(key, data)

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        self._record("put", key)
        return super().put_if_absent(key, data)

    def delete(self, key: str) -> None:
        self._record("delete", key)
        super().delete(key)

    def of(self, operation: str, prefix: str) -> list[Call]:
        with self._record_lock:
            return [c for c in self.made if c.operation == operation and c.key.startswith(prefix)]


CONFIG = dataclasses.replace(
    StreamStoreConfig.small(),
    wal_segment_bytes=1 * MiB,
    wal_preallocate=True,  # spare segments are made
    upload_interval_s=3600,  # uploads when flushed
    checkpoint_every=2,  # a checkpoint, and deletions, every other commit
    compaction_interval_s=0.1,  # passes while the test runs
)


def _thread_nice(name: str, older: set[threading.Thread]) -> list[int]:
    """The nice values of the live threads called ``name`` (or ``name_N``),
    but those in ``older``: another test's store that was never closed may
    leave threads of the same names in this process."""
    return [
        os.getpriority(os.PRIO_PROCESS, t.native_id)
        for t in threading.enumerate()
        if t.native_id is not None
        and t not in older
        and (t.name == name or t.name.rsplit("_", 1)[0] == name)
    ]


def _on_opener(work: Callable[[], None]) -> int:
    """Runs ``work`` on a thread of its own, first lowered OPENER_NICE below
    the caller; returns that thread's nice value, as it was after the work."""
    seen: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            ThreadPriority.below_caller(OPENER_NICE).apply()
            work()
            seen.append(_own_nice())
        except BaseException as error:  # re-raised on the test's thread
            failed.append(error)

    opener = threading.Thread(target=run, name="opener")
    opener.start()
    opener.join(TIMEOUT * 4)
    assert not opener.is_alive(), "the opener's work did not end"
    if failed:
        raise failed[0]
    return seen[0]


@pytest.fixture
def spares(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Who prepared each spare WAL segment, at what nice value."""
    made: list[tuple[str, int]] = []
    prepare = wal.log.prepare_segment_file

    def recording(*args: object) -> str:
        made.append((threading.current_thread().name, _own_nice()))
        return prepare(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(wal.log, "prepare_segment_file", recording)
    yield made


class Seen(NamedTuple):
    opener: int
    """The opener's nice value after the work."""
    calls: PriorityOfCalls
    threads: dict[str, list[int]]
    """Nice values of the store's long-lived threads, looked at while open."""


def _run(tmp_path: Path, config: StreamStoreConfig, remote: bool = False) -> Seen:
    """Opens a store on the opener's thread, appends and uploads about 2 MiB
    in UPLOADS uploads (so the WAL rolls and trims, and the manifest
    checkpoints and deletes) while compaction passes run, and reads
    everything back."""
    calls = PriorityOfCalls(MemoryStore())
    threads: dict[str, list[int]] = {}
    older = set(threading.enumerate())

    def work() -> None:
        with StreamStore.open(tmp_path / "data", calls, config) as store:
            stream = new_stream(store)
            for _ in range(UPLOADS):
                if remote:
                    base = store.next_offset(stream)
                    future = store.submit(stream, base, base, b"r" * 100, REMOTE)
                    assert future.result(TIMEOUT) == base + 1
                fill(store, stream, 1700, per_batch=1, size=300)
                assert store.flush(timeout=TIMEOUT)
            got = read_all(store, stream, max_bytes=1 * MiB)
            assert len(got) == UPLOADS * (1700 + remote)
            assert got[-1700:] == expected(stream, got[-1700][0], 1700, per_batch=1, size=300)
            for name in (
                "wal-group-commit",
                "wal-sync",
                "s3stream-upload",
                "s3stream-upload-background",
                "s3stream-compact",
            ):
                threads[name] = _thread_nice(name, older)

    opener = _on_opener(work)
    return Seen(opener, calls, threads)


def test_background_work_runs_background_nice_below_the_opener(
    tmp_path: Path, spares: list[tuple[str, int]]
) -> None:
    base = min(MOST_NICE, _own_nice() + OPENER_NICE)
    lowered = min(MOST_NICE, base + 7)
    seen = _run(tmp_path, dataclasses.replace(CONFIG, background_nice=7))
    assert seen.opener == base  # the opener itself is never lowered

    data_puts = seen.calls.of("put", OBJECT_PREFIX)
    assert data_puts, "nothing was uploaded"
    # Merged objects, if a pass merged any, are put by the compaction thread.
    threads = {c.thread.rsplit("_", 1)[0] for c in data_puts}
    assert "s3stream-upload-background" in threads
    assert threads <= {"s3stream-upload-background", "s3stream-compact"}
    assert {c.nice for c in data_puts} == {lowered}
    checkpoints = seen.calls.of("put", CHECKPOINT_PREFIX)
    assert checkpoints, "no checkpoint was written"
    assert {(c.thread, c.nice) for c in checkpoints} == {("s3stream-manifest-cleanup", lowered)}
    deletions = seen.calls.of("delete", LOG_PREFIX) + seen.calls.of("delete", CHECKPOINT_PREFIX)
    assert deletions, "the checkpoints deleted nothing"
    assert {c.nice for c in deletions} == {lowered}
    assert spares, "no spare WAL segment was made"
    assert set(spares) == {("wal-spare", lowered)}

    # Started by the opener, the upload thread committing (a checkpoint's
    # thread) or the WAL's writer (a spare after a roll): all fixed from the
    # opener's priority, none inherited from their starter.
    assert seen.threads["s3stream-compact"] == [lowered]
    assert seen.threads["s3stream-upload-background"] == [lowered]
    # What an acknowledgement waits for keeps the opener's priority.
    assert seen.threads["wal-group-commit"] == [base]
    assert seen.threads["wal-sync"] == [base]
    assert seen.threads["s3stream-upload"] == [base]
    manifest_puts = seen.calls.of("put", LOG_PREFIX)
    assert {c.nice for c in manifest_puts if c.thread == "s3stream-upload"} == {base}


def test_uploads_a_remote_acknowledgement_waits_for_keep_the_opener_priority(
    tmp_path: Path,
) -> None:
    base = min(MOST_NICE, _own_nice() + OPENER_NICE)
    seen = _run(tmp_path, dataclasses.replace(CONFIG, background_nice=7), remote=True)
    uploads = [c for c in seen.calls.of("put", OBJECT_PREFIX) if c.thread != "s3stream-compact"]
    assert uploads, "nothing was uploaded"
    # The put-ahead worker runs only while remote acknowledgements wait.
    assert {c.thread.rsplit("_", 1)[0] for c in uploads} <= {
        "s3stream-upload",
        "s3stream-upload-ahead",
    }
    assert {c.nice for c in uploads} == {base}
    assert seen.opener == base


def test_background_nice_zero_leaves_every_thread_alone(
    tmp_path: Path, spares: list[tuple[str, int]]
) -> None:
    base = min(MOST_NICE, _own_nice() + OPENER_NICE)
    seen = _run(tmp_path, dataclasses.replace(CONFIG, background_nice=0))
    assert seen.calls.made and {c.nice for c in seen.calls.made} == {base}
    assert spares and {nice for _, nice in spares} == {base}
    # No background worker: the upload thread puts the objects itself.
    assert "s3stream-upload" in {c.thread for c in seen.calls.of("put", OBJECT_PREFIX)}
    assert seen.threads["s3stream-upload-background"] == []
    assert all(nice == [base] for name, nice in seen.threads.items() if nice)


def test_a_sandbox_that_refuses_a_lower_priority_changes_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spares: list[tuple[str, int]]
) -> None:
    base = min(MOST_NICE, _own_nice() + OPENER_NICE)
    real_setpriority = os.setpriority
    opener_lowered = threading.Event()

    def refused(which: int, who: int, priority: int) -> None:
        # The test lowers its opener first; every later call is refused, as
        # a seccomp filter or a container without the call refuses it.
        if not opener_lowered.is_set():
            opener_lowered.set()
            real_setpriority(which, who, priority)
            return
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refused)
    seen = _run(tmp_path, dataclasses.replace(CONFIG, background_nice=7))
    assert seen.calls.of("put", OBJECT_PREFIX) and seen.calls.of("put", CHECKPOINT_PREFIX)
    assert {c.nice for c in seen.calls.made} == {base}
    assert spares and {nice for _, nice in spares} == {base}


def test_the_default_lowers_the_background_below_the_reads() -> None:
    # Catch-up reads answer a consumer; background work answers nobody.
    assert StreamStoreConfig().background_nice > StreamStoreConfig().read_nice > 0
    assert StreamStoreConfig.small().background_nice == StreamStoreConfig().background_nice


def test_uploads_go_back_to_the_background_an_upload_interval_after_the_last_remote_ask(
    tmp_path: Path,
) -> None:
    base = min(MOST_NICE, _own_nice() + OPENER_NICE)
    lowered = min(MOST_NICE, base + 7)
    interval = 0.5
    # No compaction pass: its merges put objects too, from a thread of its own.
    config = dataclasses.replace(
        CONFIG, background_nice=7, upload_interval_s=interval, compaction_interval_s=3600
    )
    calls = PriorityOfCalls(MemoryStore())
    uploaders: list[set[tuple[str, int]]] = []

    def uploaded_since(before: int) -> set[tuple[str, int]]:
        puts = calls.of("put", OBJECT_PREFIX)[before:]
        return {(c.thread.rsplit("_", 1)[0], c.nice) for c in puts}

    def work() -> None:
        with StreamStore.open(tmp_path / "data", calls, config) as store:
            stream = new_stream(store)
            before = len(calls.of("put", OBJECT_PREFIX))
            assert store.submit(stream, 0, 0, b"r", REMOTE).result(TIMEOUT) == 1
            uploaders.append(uploaded_since(before))
            threading.Event().wait(interval * 2)  # no remote ask for a whole interval
            before = len(calls.of("put", OBJECT_PREFIX))
            fill(store, stream, 10, per_batch=1)
            assert store.flush(timeout=TIMEOUT)
            uploaders.append(uploaded_since(before))

    assert _on_opener(work) == base
    assert uploaders[0] == {("s3stream-upload", base)}
    assert uploaders[1] == {("s3stream-upload-background", lowered)}


@pytest.mark.parametrize("nice", [0, 3], ids=["the opener's", "3 below the opener"])
def test_a_started_pool_runs_work_at_its_priority_whoever_submits_it(nice: int) -> None:
    """Every thread of the pool is started by the opener before any work
    comes: work a lowered thread submits first runs at the pool's priority,
    not the submitter's (which a thread could not shed again)."""
    workers = 4
    opener = _own_nice()
    pool = ThreadPriority.below_caller(nice).started_pool(workers, "started-pool", TIMEOUT)
    try:
        started = [t for t in threading.enumerate() if t.name.startswith("started-pool")]
        assert len(started) == workers
        together = threading.Barrier(workers, timeout=TIMEOUT)

        def nice_of_a_worker() -> int:
            together.wait()  # one task per thread: every worker answers
            return _own_nice()

        answers: list[int] = []

        def lowered_submitter() -> None:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), opener + 5)
            futures = [pool.submit(nice_of_a_worker) for _ in range(workers)]
            answers.extend(future.result(timeout=TIMEOUT) for future in futures)

        submitter = threading.Thread(target=lowered_submitter)
        submitter.start()
        submitter.join(TIMEOUT)
        assert answers == [min(MOST_NICE, opener + nice)] * workers
    finally:
        pool.shutdown()


def test_a_multipart_puts_parts_go_up_at_the_priority_of_its_caller(
    s3_endpoint: S3Endpoint,
) -> None:
    """The S3 store's part senders start from the threads that put: a
    lowered caller's first multipart put (the compactor's merge) must not
    leave the senders lowered for a caller at the opener's priority after
    it (an upload a remote acknowledgement waits for), nor the reverse."""
    store = s3_endpoint.store(
        f"parts-{uuid.uuid4().hex}", multipart_threshold=5 * MiB + 1, part_size=5 * MiB
    )
    sent_at: list[int] = []
    send_part = store._client.upload_part

    def noting_nice(**request: object) -> object:
        sent_at.append(_own_nice())
        return send_part(**request)

    store._client.upload_part = noting_nice
    data = os.urandom(11 * MiB)  # parts of 5, 5 and 1 MiB
    try:
        lowered = _on_opener(lambda: store.put("lowered-first", data))
        lowered_parts, sent_at[:] = list(sent_at), []
        store.put("then-the-opener", data)
        assert lowered_parts == [lowered] * 3
        assert sent_at == [_own_nice()] * 3
        assert lowered > _own_nice()
        assert store.get("then-the-opener") == data
    finally:
        store.close()


def test_a_closed_s3_store_refuses_a_multipart_put_and_leaves_no_part_senders(
    s3_endpoint: S3Endpoint,
) -> None:
    """close() ends every priority's part senders; a multipart put after it
    (a late compaction, a hedged copy that lost) must not start new ones
    that nothing would ever end, nor leave an unfinished upload behind."""
    store = s3_endpoint.store(
        f"closed-{uuid.uuid4().hex}", multipart_threshold=5 * MiB + 1, part_size=5 * MiB
    )
    data = os.urandom(11 * MiB)
    _on_opener(lambda: store.put("lowered", data))
    store.put("opener", data)
    senders = {thread for pool in store._parts.values() for thread in pool._threads}
    assert len(store._parts) == 2 and senders
    store.close()
    assert not [thread for thread in senders if thread.is_alive()]
    with pytest.raises(ObjectStoreClosed):
        store.put("after-close", data)
    assert store._parts == {}
    assert unfinished_uploads(s3_endpoint, store) == []


def test_a_multipart_put_that_close_overtakes_fails_as_a_closed_store(
    s3_endpoint: S3Endpoint,
) -> None:
    """A put that took its part senders just before close() ended them gets
    the store's own error, not the pool's RuntimeError, and its upload is
    aborted, not left unfinished in the bucket."""
    store = s3_endpoint.store(
        f"overtaken-{uuid.uuid4().hex}", multipart_threshold=5 * MiB + 1, part_size=5 * MiB
    )
    take_pool = store._part_pool

    def taken_then_closed(key: str) -> ThreadPoolExecutor:
        pool = take_pool(key)
        pool.submit(lambda: None).result()  # a thread started, as a busy store has
        store.close()  # the race's other side, run at the worst moment
        return pool

    store._part_pool = taken_then_closed  # type: ignore[method-assign]
    with pytest.raises(ObjectStoreClosed):
        store.put("overtaken", os.urandom(11 * MiB))
    assert unfinished_uploads(s3_endpoint, store) == []
