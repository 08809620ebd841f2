"""Who owns the store: the data directory's lock before the bucket, the
writer in every WAL entry, the fence check of an idle writer, and what
close says it left behind.

Stores share one local object-store directory (a real part), each on its
own data directory; "a crash" is a store abandoned without close (its WAL
lock released by closing the WAL alone, as process exit would).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.buffers import BytesLike
from s3stream import CorruptIdentity, Fenced, StreamStore, StreamStoreConfig
from s3stream.manifest_records import LOG_PREFIX
from s3stream.manifest_state import ManifestState
from s3stream.store import ObjectInfo, ObjectStore, open_store
from s3stream.uploader import OBJECT_PREFIX
from s3stream.wal_entries import (
    WAL_OWNED_DATA,
    WAL_OWNED_TRIM,
    WRITER_SIZE,
    Writer,
    encode_writer,
    split_entry,
)
from tests.s3stream.faults import FaultyStore
from wal import LogLocked, Position
from wal.group_commit import PendingAppend

QUIET = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)


def crash(store: StreamStore) -> None:
    """Leaves the store as a killed process would: the WAL as written,
    nothing flushed or uploaded, threads stopped."""
    state = store._state
    state.stop.set()
    with state.lock:
        state.closed = True
        state.changed.notify_all()
    store._compactor.wake()
    store._uploader.join()
    store._compactor.join()
    store._read_pool.shutdown()
    store._fetcher.close()
    store.wal.close()


def open_store_at(data_dir: Path, bucket: str, config: StreamStoreConfig = QUIET) -> StreamStore:
    return StreamStore.open(data_dir, bucket, config)


def append(store: StreamStore, stream_id: int, payload: bytes) -> int:
    start = store.next_offset(stream_id)
    return store.append(stream_id, start, start, payload)


def read_all(store: StreamStore, stream_id: int) -> list[bytes]:
    out: list[bytes] = []
    offset = store.start_offset(stream_id)
    while offset < store.end_offset(stream_id):
        fetched = store.fetch(stream_id, offset)
        out += [bytes(b.payload) for b in fetched.batches]
        offset = fetched.next_offset
    return out


@pytest.fixture
def bucket(tmp_path: Path) -> str:
    return "file://" + str(tmp_path / "bucket")


# -- the WAL entry format (docs/object-format.md, "WAL entries") ------------


def test_wal_entry_writer_is_laid_out_as_the_spec_says() -> None:
    owner = "0123456789abcdef"
    # The spec's table: 8 bytes of identity, then the epoch as u64 little-endian.
    from_doc = bytes.fromhex(owner) + struct.pack("<Q", 7)
    assert encode_writer(owner, 7) == from_doc
    assert WRITER_SIZE == 16
    writer, rest = split_entry(WAL_OWNED_DATA, memoryview(from_doc + b"batch"))
    assert writer == Writer(owner, 7) and bytes(rest) == b"batch"
    writer, rest = split_entry(WAL_OWNED_TRIM, memoryview(from_doc))
    assert writer == Writer(owner, 7) and bytes(rest) == b""
    assert split_entry(1, memoryview(b"old"))[0] is None  # before writers were recorded
    assert split_entry(WAL_OWNED_DATA, memoryview(b"short"))[0] == Writer("", 0)


@given(st.binary(min_size=8, max_size=8), st.integers(0, 2**64 - 1), st.binary(max_size=64))
def test_a_writer_round_trips(owner: bytes, epoch: int, payload: bytes) -> None:
    writer, rest = split_entry(
        WAL_OWNED_DATA, memoryview(encode_writer(owner.hex(), epoch) + payload)
    )
    assert writer == Writer(owner.hex(), epoch) and bytes(rest) == payload


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["a", "b", "c", ""]), min_size=1, max_size=12))
def test_owner_since_is_where_the_current_owners_run_of_fences_began(
    owners: list[str],
) -> None:
    state = ManifestState()
    for epoch, owner in enumerate(owners, 1):
        state.apply(["fence", epoch, owner] if owner else ["fence", epoch])
    run_start = len(owners)
    while run_start > 1 and owners[run_start - 2] == owners[-1] and owners[-1]:
        run_start -= 1
    assert (state.owner, state.owner_since) == (owners[-1], run_start)
    again = ManifestState.from_wire(state.to_wire())
    assert (again.owner, again.owner_since) == (state.owner, state.owner_since)


def test_a_damaged_identity_refuses_to_open(tmp_path: Path, bucket: str) -> None:
    store = open_store_at(tmp_path / "a", bucket)
    store.close()
    (tmp_path / "a" / "identity").write_text("not hex at all\n")
    with pytest.raises(CorruptIdentity, match="identity"):
        open_store_at(tmp_path / "a", bucket)


# -- replay: the owner's own entries, never a superseded ownership's ---------


def test_a_restart_replays_what_it_wrote_across_its_own_reopens(
    tmp_path: Path, bucket: str
) -> None:
    """The epoch rises on every open; entries of earlier opens by the same
    directory, with nobody else in between, are still replayed (the second
    opening cannot upload: the store refuses its objects' puts from the
    start, so not even the first opening's replayed entry is uploaded)."""
    a = open_store_at(tmp_path / "a", bucket)
    stream = a.create_stream()
    a.open_stream(stream, 1)
    append(a, stream, b"first-open")
    crash(a)
    faulty = FaultyStore(open_store(bucket))
    faulty.fail("put", prefix=OBJECT_PREFIX)
    a = StreamStore.open(tmp_path / "a", faulty, QUIET)
    a.open_stream(stream, 1)
    append(a, stream, b"second-open")
    crash(a)
    a = open_store_at(tmp_path / "a", bucket)
    try:
        assert a.recovery.epoch == 3 and a.recovery.replayed_appends == 2
        assert read_all(a, stream) == [b"first-open", b"second-open"]
    finally:
        a.close()


def test_entries_from_before_a_takeover_are_dropped_and_later_ones_replayed(
    tmp_path: Path, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A writes, B takes over and writes other records at those offsets, A
    takes back and writes more, A crashes: A's restart keeps B's records and
    A's new ones, and drops A's old ones, saying how many."""
    a = open_store_at(tmp_path / "a", bucket)
    stream = a.create_stream()
    a.open_stream(stream, 1)
    append(a, stream, b"a0")
    assert a.flush(30)
    for i in range(1, 4):
        append(a, stream, b"a-stale%d" % i)  # offsets 1..3, never uploaded
    b = open_store_at(tmp_path / "b", bucket)
    b.open_stream(stream, 2)
    append(b, stream, b"b1")
    append(b, stream, b"b2")
    assert b.flush(30)
    b.close()
    crash(a)
    a = open_store_at(tmp_path / "a", bucket)  # takes back, replays nothing of before
    a.open_stream(stream, 3)
    assert read_all(a, stream) == [b"a0", b"b1", b"b2"]
    append(a, stream, b"a-new")
    crash(a)
    caplog.clear()
    a = open_store_at(tmp_path / "a", bucket)
    try:
        assert read_all(a, stream) == [b"a0", b"b1", b"b2", b"a-new"]
        assert a.recovery.replayed_appends == 1
        assert a.recovery.superseded_appends == 3
        assert a.recovery.superseded_bytes == 3 * len(b"a-stale1")
        line = [r.getMessage() for r in caplog.records if "were dropped" in r.getMessage()][-1]
        assert f"stream {stream}: 3 WAL appends (24 bytes, 3 records)" in line
        assert "local" in line
    finally:
        a.close()


# -- a refused open writes nothing ---------------------------------------------


def test_a_refused_open_leaves_the_bucket_and_the_running_owner_alone(
    tmp_path: Path, bucket: str
) -> None:
    a = open_store_at(tmp_path / "a", bucket)
    try:
        stream = a.create_stream()
        a.open_stream(stream, 1)
        append(a, stream, b"before")
        objects = open_store(bucket)
        keys_before = [(i.key, i.version) for i in objects.list()]
        with pytest.raises(LogLocked):
            open_store_at(tmp_path / "a", bucket)
        assert [(i.key, i.version) for i in objects.list()] == keys_before
        append(a, stream, b"after")
        assert a.flush(30)
        assert not a.fenced
        assert a.remote_end_offset(stream) == 2
    finally:
        a.close()


# -- an idle writer learns it is fenced ------------------------------------------


def test_an_idle_writer_learns_of_a_takeover_with_one_head_per_interval(
    tmp_path: Path, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    interval = 0.1
    counting = FaultyStore(open_store(bucket))
    a = StreamStore.open(tmp_path / "a", counting, StreamStoreConfig(upload_interval_s=interval))
    try:
        stream = a.create_stream()
        a.open_stream(stream, 1)
        append(a, stream, b"uploaded")
        assert a.flush(30)
        # Idle: every request A makes is one HEAD of the next manifest version.
        calls = dict(counting.calls)
        started = time.monotonic()
        time.sleep(10 * interval)
        idle = {k: v - calls.get(k, 0) for k, v in counting.calls.items() if v != calls.get(k)}
        assert set(idle) == {"head"}, idle
        elapsed_intervals = (time.monotonic() - started) / interval
        assert idle.get("head", 0) <= elapsed_intervals + 1, idle
        assert idle.get("head", 0) >= 1, idle

        caplog.set_level(logging.ERROR)
        b = open_store_at(tmp_path / "b", bucket)
        b.close()
        deadline = time.monotonic() + 30
        while not a.fenced and time.monotonic() < deadline:
            time.sleep(interval / 4)
        assert a.fenced
        with pytest.raises(Fenced):
            append(a, stream, b"refused")
        with pytest.raises(Fenced):
            a.submit(stream, a.next_offset(stream), a.next_offset(stream), b"refused")
        fenced_lines = [r for r in caplog.records if "is fenced" in r.getMessage()]
        assert len(fenced_lines) == 1, [r.getMessage() for r in caplog.records]
    finally:
        report = a.close()
    assert report.uploaded  # all of it was uploaded before B opened


@pytest.mark.parametrize("side", ["thread", "event loop"])
def test_appends_in_flight_when_the_fence_is_found_are_not_acknowledged(
    tmp_path: Path, bucket: str, side: str
) -> None:
    """The WAL write of an append finishes after the store learned it is
    fenced: the append fails instead of being acknowledged, whether it was
    submitted from a thread or from an event loop (submit_async, settled
    by the store's call on the loop)."""
    a = open_store_at(tmp_path / "a", bucket)
    release = threading.Event()
    try:
        stream = a.create_stream()
        a.open_stream(stream, 1)
        original = a.wal._committer._write  # hold the WAL writer mid-commit

        def held(group: list[PendingAppend]) -> list[Position]:
            release.wait(30)
            return original(group)

        a.wal._committer._write = held  # type: ignore[method-assign]

        def fence_meanwhile() -> None:
            b = open_store_at(tmp_path / "b", bucket)
            b.close()
            with pytest.raises(Fenced):
                a._manifest_writer.check_fence()  # what the uploader does once per idle interval
            release.set()

        if side == "thread":
            pending = a.submit(stream, 0, 0, b"in-flight")
            fence_meanwhile()
            with pytest.raises(Fenced):
                pending.result(30)
        else:

            async def main() -> None:
                waiting = a.submit_async(stream, 0, 0, b"in-flight")
                fence_meanwhile()
                with pytest.raises(Fenced):
                    await asyncio.wait_for(waiting, 30)

            asyncio.run(main())
    finally:
        release.set()
        a.close()


# -- what close says ---------------------------------------------------------------


def test_close_says_what_is_still_only_in_the_wal(tmp_path: Path, bucket: str) -> None:
    faulty = FaultyStore(open_store(bucket))
    a = StreamStore.open(tmp_path / "a", faulty, QUIET)
    stream = a.create_stream()
    a.open_stream(stream, 1)
    append(a, stream, b"x" * 100)
    append(a, stream, b"y" * 50)
    faulty.fail("put")
    report = a.close(timeout=0.5)
    assert (report.uploaded, report.wal_only_appends, report.wal_only_bytes) == (False, 2, 150)
    assert "did not take it within 0.5 s" in report.reason and "injected" in report.reason
    faulty.heal()
    again = StreamStore.open(tmp_path / "a", faulty, QUIET)
    try:
        assert read_all(again, stream) == [b"x" * 100, b"y" * 50]
    finally:
        assert again.close().uploaded


class RacedStore(FaultyStore):
    """Lets another writer commit just before this store's first manifest put."""

    def __init__(self, inner: ObjectStore, before_first_put: Callable[[], None]) -> None:
        super().__init__(inner)
        self._before = before_first_put
        self.raced = False
        self.manifest_lists = 0

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self.manifest_lists += prefix.startswith("manifest/")
        return super().list(prefix)

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        if not self.raced and key.startswith(LOG_PREFIX):
            self.raced = True
            self._before()
        return super().put_if_absent(key, data)


def test_an_opener_that_loses_the_race_reads_only_the_new_versions(
    tmp_path: Path, bucket: str
) -> None:
    """A busy writer commits between an opener's load and its fence: the
    opener reads just the versions added since (no second full load, which
    a writer committing faster than a load takes would repeat forever)."""
    a = open_store_at(tmp_path / "a", bucket)
    try:
        stream = a.create_stream()
        a.open_stream(stream, 1)
        append(a, stream, b"before")
        assert a.flush(30)

        def commit_first() -> None:
            a.manifest.commit([["trim", stream, 1]])

        raced = RacedStore(open_store(bucket), commit_first)
        b = StreamStore.open(tmp_path / "b", raced, QUIET)
        try:
            assert raced.raced
            assert raced.manifest_lists == 2  # one load: checkpoints and deltas, once
            assert b.manifest.state.streams[stream].start_offset == 1  # A's raced commit
            assert b.manifest.epoch == a.manifest.epoch + 1
        finally:
            b.close()
    finally:
        a.close()


def test_a_writer_fenced_long_ago_still_finds_the_fence_after_checkpoints(
    tmp_path: Path, bucket: str
) -> None:
    """B takes over and commits long enough for two checkpoints to delete
    the deltas after A's last version. A, unaware all along, must still
    find the fence (at its check, and at a commit) rather than write into a
    deleted version's place, where no reader would ever see it."""
    config = replace(QUIET, checkpoint_every=4)
    a = open_store_at(tmp_path / "a", bucket, config)
    try:
        stream = a.create_stream()
        a.open_stream(stream, 1)
        b = open_store_at(tmp_path / "b", bucket, config)
        try:
            b.open_stream(stream, 2)
            for i in range(12):  # three checkpoints' worth of versions
                append(b, stream, b"b%d" % i)
                assert b.flush(30)
        finally:
            b.close()
        with pytest.raises(Fenced):
            a.manifest.check_fenced()
        with pytest.raises(Fenced):
            a.manifest.commit([["trim", stream, 0]])
    finally:
        a.close()
    c = open_store_at(tmp_path / "c", bucket)
    try:
        assert read_all(c, stream) == [b"b%d" % i for i in range(12)]
    finally:
        c.close()
