"""Temp files that crashed writers left in a local directory store are
removed once past the grace; a temp file another writer is writing at that
moment is not (docs/design/0041).

Ages come from mtimes set with os.utime, or from the clock handed to the
sweep: nothing sleeps. A live writer is a real put on another thread, held
mid-write; its bounded waits only keep a hang from stopping the run.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import overload

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3stream import StreamStore, StreamStoreConfig
from s3stream.config import STORE_RANGES
from s3stream.store import LocalStore, ObjectStoreError
from s3stream.store.abandoned import (
    TEMP_FILE_GRACE_S,
    TEMP_PREFIX,
    SweepCadence,
    remove_abandoned_temp_files,
)
from tests.s3stream.test_compaction import CONFIG

BOUND_S = 30.0
SECOND_NS = 1_000_000_000
GRACE_NS = TEMP_FILE_GRACE_S * SECOND_NS


class HeldParts(Sequence[bytes]):
    """An object's parts that a put cannot read until ``go`` is set: the put
    has made its temp file by then (``started``), and holds it open."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.started = threading.Event()
        self.go = threading.Event()

    def __len__(self) -> int:
        return len(self.parts)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        return self.parts[index]

    def __iter__(self) -> Iterator[bytes]:
        self.started.set()
        assert self.go.wait(BOUND_S)
        return iter(self.parts)


class HeldPut:
    """A put of ``key`` on a thread of its own, held mid-write."""

    def __init__(self, store: LocalStore, key: str, parts: list[bytes]) -> None:
        self.data = HeldParts(parts)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._put, args=(store, key), daemon=True)
        self._thread.start()
        assert self.data.started.wait(BOUND_S)

    def _put(self, store: LocalStore, key: str) -> None:
        try:
            store.put(key, self.data)
        except BaseException as error:
            self.error = error

    def finish(self) -> None:
        self.data.go.set()
        self._thread.join(BOUND_S)
        assert not self._thread.is_alive(), "the put never returned"


def temp_files(root: Path) -> set[Path]:
    return {path for path in root.rglob(f"{TEMP_PREFIX}*")}


def crash_left(directory: Path, age_s: float) -> Path:
    """A temp file as a put killed mid-write leaves it, last written ``age_s`` ago."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    path.write_bytes(b"half an object")
    written = time.time_ns() - int(age_s * SECOND_NS)
    os.utime(path, ns=(written, written))
    return path


def test_a_crash_left_temp_file_is_removed_and_a_live_writers_is_kept(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    store.put("objects/kept", b"an object")
    objects = tmp_path / "bucket" / "objects"
    crashed = crash_left(objects, TEMP_FILE_GRACE_S + 60)
    crashed_elsewhere = crash_left(tmp_path / "bucket" / "manifest" / "log", 2 * TEMP_FILE_GRACE_S)
    recent = crash_left(objects, TEMP_FILE_GRACE_S - 60)  # may still be a stalled writer's
    live = HeldPut(store, "objects/being-written", [b"first part ", b"second part"])
    (in_flight,) = temp_files(tmp_path / "bucket") - {crashed, crashed_elsewhere, recent}

    assert store.remove_abandoned_writes() == 2
    assert temp_files(tmp_path / "bucket") == {recent, in_flight}

    live.finish()
    assert live.error is None
    assert store.get("objects/being-written") == b"first part second part"
    assert store.get("objects/kept") == b"an object"
    assert temp_files(tmp_path / "bucket") == {recent}


def test_a_put_stalled_past_the_grace_fails_transiently_and_the_object_before_it_stays(
    tmp_path: Path,
) -> None:
    """The worst a wrong guess costs: a writer stopped for longer than the
    grace loses its temp file, and its put fails with a retryable error;
    the object it was replacing is untouched."""
    store = LocalStore(tmp_path / "bucket")
    store.put("objects/key", b"the object before")
    stalled = HeldPut(store, "objects/key", [b"the object after"])
    (in_flight,) = temp_files(tmp_path / "bucket")
    long_ago = time.time_ns() - GRACE_NS - 60 * SECOND_NS
    os.utime(in_flight, ns=(long_ago, long_ago))

    assert store.remove_abandoned_writes() == 1
    stalled.finish()
    assert isinstance(stalled.error, ObjectStoreError) and stalled.error.transient
    assert store.get("objects/key") == b"the object before"
    assert temp_files(tmp_path / "bucket") == set()


def test_a_stream_store_removes_abandoned_writes_on_open_and_in_a_compaction_pass_when_due(
    tmp_path: Path,
) -> None:
    root = tmp_path / "bucket"
    LocalStore(root).put("objects/placeholder", b"")  # the directory, as a crashed run left it
    crash_left(root / "objects", TEMP_FILE_GRACE_S + 60)
    crash_left(root / "manifest" / "log", TEMP_FILE_GRACE_S + 60)
    every_pass = replace(CONFIG, abandoned_writes_sweep_interval_s=0)
    with StreamStore.open(tmp_path / "node", f"file://{root}", every_pass) as store:
        assert store.recovery.abandoned_writes_removed == 2
        assert temp_files(root) == set()
        crash_left(root / "objects", TEMP_FILE_GRACE_S + 60)
        fresh = crash_left(root / "objects", 0)  # another process's put, mid-write
        store.compact()
        assert store.stats.abandoned_writes_removed == 3
        assert temp_files(root) == {fresh}


class CountedSweeps(LocalStore):
    """A local directory store that counts its sweeps (each one walks the
    whole directory tree)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.sweeps = 0

    def remove_abandoned_writes(self) -> int:
        self.sweeps += 1
        return super().remove_abandoned_writes()


def test_compaction_passes_do_not_sweep_a_store_swept_within_the_interval(
    tmp_path: Path,
) -> None:
    """A sweep walks every directory of the store: the one on open is the
    last for an hour, however many compaction passes run meanwhile."""
    bucket = CountedSweeps(tmp_path / "bucket")
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        assert bucket.sweeps == 1
        left = crash_left(tmp_path / "bucket" / "objects", TEMP_FILE_GRACE_S + 60)
        for _ in range(3):
            store.compact()
        assert (bucket.sweeps, store.stats.compactions) == (1, 3)
        assert temp_files(tmp_path / "bucket") == {left}


def test_a_sweep_is_due_once_its_interval_has_passed_since_the_last() -> None:
    now = [1000.0]
    cadence = SweepCadence(TEMP_FILE_GRACE_S, swept_on_open=True, clock=lambda: now[0])
    hour = TEMP_FILE_GRACE_S
    due = []
    for step_s in (60, hour - 61, 1, 60, hour - 60, 5 * hour):
        now[0] += step_s
        due.append(cadence.due())
        if due[-1]:
            cadence.swept()
    assert due == [False, False, True, False, True, True]


def test_a_sweep_that_did_not_finish_leaves_the_next_due_at_once() -> None:
    now = [1000.0]
    cadence = SweepCadence(TEMP_FILE_GRACE_S, swept_on_open=False, clock=lambda: now[0])
    assert cadence.due()  # none on open: the first pass sweeps
    now[0] += 60
    assert cadence.due()  # that one failed (no swept()): so does the next
    cadence.swept()
    now[0] += 60
    assert not cadence.due()


class FailingSweeps(CountedSweeps):
    """Its first ``failures`` sweeps fail, as an unreadable directory makes one."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def remove_abandoned_writes(self) -> int:
        if self.failures > 0:
            self.failures -= 1
            self.sweeps += 1
            raise ObjectStoreError("remove_abandoned_writes", TEMP_PREFIX, "permission denied")
        return super().remove_abandoned_writes()


def test_a_sweep_that_fails_is_tried_again_by_the_next_compaction_pass(
    tmp_path: Path,
) -> None:
    """Neither the failed sweep on open nor a failed one in a pass counts as
    done: the next pass sweeps, rather than one an hour later, so a
    crash's temp files do not stay for an interval more per failure."""
    root = tmp_path / "bucket"
    bucket = FailingSweeps(root, failures=2)
    left = crash_left(root / "objects", TEMP_FILE_GRACE_S + 60)
    with StreamStore.open(tmp_path / "node", bucket, CONFIG) as store:
        assert (bucket.sweeps, store.recovery.abandoned_writes_removed) == (1, 0)
        with pytest.raises(ObjectStoreError):
            store.compact()
        assert bucket.sweeps == 2
        store.compact()
        assert bucket.sweeps == 3
        assert left not in temp_files(root)
        assert store.stats.abandoned_writes_removed == 1
        store.compact()
        assert bucket.sweeps == 3  # done: the next is an interval away


NAMES = st.sampled_from([TEMP_PREFIX + "0" * 32, TEMP_PREFIX + "f" * 32, "object", ".lock"])
FILES = st.lists(
    st.tuples(
        st.sampled_from(["", "objects", "objects/0000000001", "manifest/log", ".hidden"]),
        NAMES,
        st.integers(min_value=-60, max_value=3 * TEMP_FILE_GRACE_S),  # age in seconds
    ),
    max_size=12,
    unique_by=lambda file: (file[0], file[1]),
)


@settings(max_examples=60, deadline=None)
@given(files=FILES, now_s=st.integers(min_value=10**9, max_value=2 * 10**9))
def test_a_sweep_removes_exactly_the_temp_files_older_than_the_grace(
    files: list[tuple[str, str, int]], now_s: int
) -> None:
    """Against a clock handed to the sweep: temp files last written more
    than the grace before it go; every other file (objects, the lock,
    younger temp files, anything under a directory the store never makes)
    stays."""
    now_ns = now_s * SECOND_NS
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        kept: set[Path] = set()
        removed: dict[Path, int] = {}
        for directory, name, age_s in files:
            path = root / directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            size = max(age_s, 0) % 100
            path.write_bytes(b"x" * size)
            written = now_ns - age_s * SECOND_NS
            os.utime(path, ns=(written, written))
            abandoned = (
                name.startswith(TEMP_PREFIX)
                and not directory.startswith(".")
                and age_s > TEMP_FILE_GRACE_S
            )
            if abandoned:
                removed[path] = size
            else:
                kept.add(path)

        swept = remove_abandoned_temp_files(str(root), now_ns)

        assert swept == (len(removed), sum(removed.values()))
        assert {path for path in root.rglob("*") if path.is_file()} == kept


def test_a_temp_file_that_cannot_be_removed_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "bucket")
    crash_left(tmp_path / "bucket" / "objects", TEMP_FILE_GRACE_S + 60)

    def refused(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "unlink", refused)
    with pytest.raises(ObjectStoreError) as failed:
        store.remove_abandoned_writes()
    assert not failed.value.transient  # permissions: a retry would not help


@pytest.mark.parametrize("name", ["compaction_interval_s", "abandoned_writes_sweep_interval_s"])
@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1.0])
def test_an_interval_that_would_never_come_round_again_is_refused_with_the_config(
    name: str, seconds: float
) -> None:
    with pytest.raises(ValueError, match=name):
        StreamStoreConfig(**{name: seconds})  # type: ignore[arg-type]
    # The least each takes: 0 sweeps at every compaction pass, while the
    # compaction thread's own interval must pass 0, or its loop would spin.
    least = STORE_RANGES[name].least
    assert least == (0 if name == "abandoned_writes_sweep_interval_s" else 0.001)
    assert getattr(StreamStoreConfig(**{name: least}), name) == least  # type: ignore[arg-type]


WRITER = """
import sys
from s3stream.store import LocalStore

store = LocalStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.put(f"objects/child/{i:04d}", bytes([i % 256]) * (64 * 1024 + i))
print("done", flush=True)
"""


def test_a_second_process_writing_into_the_store_loses_no_put_to_the_sweeps(
    tmp_path: Path,
) -> None:
    """Another process's puts into the same directory, while this one sweeps
    again and again: every put lands whole, and only the crash-left file goes."""
    root = tmp_path / "bucket"
    store = LocalStore(root)
    crashed = crash_left(root / "objects" / "child", TEMP_FILE_GRACE_S + 60)
    count = 200
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    swept = 0
    while child.poll() is None:
        swept += store.remove_abandoned_writes()
    out, err = child.communicate(timeout=BOUND_S)
    assert child.returncode == 0 and out.strip() == b"done", err.decode()
    assert swept == 1 and not crashed.exists()
    for i in range(count):
        assert store.get(f"objects/child/{i:04d}") == bytes([i % 256]) * (64 * 1024 + i)
    assert temp_files(root) == set()
