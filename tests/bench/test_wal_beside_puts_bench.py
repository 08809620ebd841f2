"""bench/wal_beside_puts_bench.py: the quick pass as people run it, and its
parts (the step a setting puts with, the flush gate, the I/O class)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from s3stream.store import local as local_store
from tests.bench.run import load_bench, run_bench

KIB = 1024
MIB = 1 << 20


def _load() -> ModuleType:
    return load_bench("wal_beside_puts_bench.py", "bench_wal_beside_puts")


@pytest.mark.slow
def test_the_quick_pass_reports_every_setting_beside_the_control(tmp_path: Path) -> None:
    report = json.loads(
        run_bench("wal_beside_puts_bench.py", "--quick", "--json", "--dir", str(tmp_path))
    )
    assert list(tmp_path.iterdir()) == []  # its scratch directory is gone with its files
    settings = ["control", "step_1024", "step_512", "step_256", "step_1024_ordered"]
    if report["scheduler"] in ("bfq", "mq-deadline"):
        settings.append("step_1024_idle")
    assert report["settings"] == settings
    for setting in settings:
        figures = [report[f"{setting}_{q}_ms"] for q in ("p50", "p99", "max")]
        assert figures[0] > 0 and figures == sorted(figures), setting
        assert report[f"{setting}_syncs"] > 0, setting
        # A sync's time off the CPU is its wall time less its run-queue wait
        # (read just outside the timed call: a few us either way).
        assert report[f"{setting}_off_cpu_p99_ms"] <= report[f"{setting}_p99_ms"] + 0.5
        assert report[f"{setting}_run_queue_ms_per_sync"] >= 0
        assert report[f"{setting}_vs_control_p99"] == pytest.approx(
            report[f"{setting}_p99_ms"] / report["control_p99_ms"], abs=0.01
        )
        # Puts ran beside every setting but the control.
        puts = setting != "control"
        assert (f"{setting}_put_mb_s" in report) == puts, setting
        if puts:
            assert report[f"{setting}_put_mb_s"] > 0 and report[f"{setting}_put_cpu_ms_per_mib"] > 0


def test_a_setting_puts_with_its_step_and_leaves_the_stores_step_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()
    writes: list[int] = []
    pwrite_all = bench.direct_writes._pwrite_all

    def counted(fd: int, view: memoryview, offset: int) -> None:
        writes.append(len(view))
        pwrite_all(fd, view, offset)

    monkeypatch.setattr(bench.direct_writes, "_pwrite_all", counted)
    recycled = bench._recycled_file(tmp_path, 4 * MIB)
    # WAL writes long enough for the puts to write whole objects (1 MiB at least).
    figures = bench.one_setting("step_256", tmp_path, 3 * MIB, 1, recycled)
    assert figures["put_mib"] > 0
    if writes:  # where the file system takes O_DIRECT
        assert max(writes) == 256 * KIB
    assert bench.direct_writes.STEP == MIB
    assert os.path.getsize(recycled) == 4 * MIB  # renamed back for the next setting


def test_every_object_is_its_size_and_written_with_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()
    for mib in bench.OBJECT_MIBS:
        parts = bench.object_parts(mib * MIB)
        assert sum(map(len, parts)) == mib * MIB
        assert max(map(len, parts)) <= bench.PART_BYTES
    monkeypatch.setattr(bench, "OBJECT_MIBS", (1,))  # the smallest only
    direct: list[int] = []
    write_direct = bench.direct_writes.write_direct

    def counted(fd: int, parts: Any, size: int) -> bool:
        wrote = write_direct(fd, parts, size)
        direct.append(wrote)
        return wrote

    monkeypatch.setattr(local_store, "write_direct", counted)
    recycled = bench._recycled_file(tmp_path, 4 * MIB)
    figures = bench.one_setting("step_256", tmp_path, 3 * MIB, 1, recycled)
    assert figures["put_mib"] >= 1
    probe = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        takes_direct = bench.direct_writes._set_direct(probe, True)
    finally:
        os.close(probe)
    assert direct
    if takes_direct:  # the file system takes O_DIRECT: every put went past the page cache
        assert all(direct)


def test_a_failed_put_fails_the_setting_and_stops_the_puts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()

    def full_disk(store: Any, key: str, data: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bench.LocalStore, "put", full_disk)
    recycled = bench._recycled_file(tmp_path, 2 * MIB)
    with pytest.raises(RuntimeError, match="puts beside") as raised:
        bench.one_setting("step_1024", tmp_path, MIB, 1, recycled)
    assert isinstance(raised.value.__cause__, OSError)
    assert not [t for t in threading.enumerate() if t.name == "puts-beside"]


def test_a_store_that_cannot_open_leaves_the_step_and_the_recycled_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()

    def unopenable(root: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(root))

    monkeypatch.setattr(bench, "LocalStore", unopenable)
    recycled = bench._recycled_file(tmp_path, 2 * MIB)
    with pytest.raises(PermissionError):
        bench.one_setting("step_256", tmp_path, MIB, 1, recycled)
    assert bench.direct_writes.STEP == MIB
    assert os.path.getsize(recycled) == 2 * MIB  # renamed back for the next setting
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.path.basename(recycled)]


def test_the_flush_gate_holds_a_put_fsync_back_while_the_wal_syncs(tmp_path: Path) -> None:
    bench = _load()
    fsync = os.fsync
    fd = os.open(tmp_path / "object", os.O_WRONLY | os.O_CREAT, 0o600)
    synced = threading.Event()
    try:
        with bench._FlushGate() as gate:
            assert os.fsync == gate.gated_fsync
            with gate.lock:  # a WAL fdatasync in flight
                putting = threading.Thread(target=_synced_then_set, args=(fd, synced))
                putting.start()
                assert not synced.wait(0.2)
            assert synced.wait(30)
            putting.join()
        assert os.fsync is fsync
    finally:
        os.close(fd)


def _synced_then_set(fd: int, synced: threading.Event) -> None:
    os.fsync(fd)
    synced.set()


@pytest.mark.skipif(
    os.uname().machine not in ("x86_64", "aarch64"), reason="ioprio_get's number known"
)
def test_the_putting_thread_is_put_in_the_idle_class() -> None:
    bench = _load()
    ioprio_get = {"x86_64": 252, "aarch64": 31}[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    found: list[int] = []

    def in_idle() -> None:
        bench.set_thread_ioprio(bench.IOPRIO_CLASS_IDLE)
        found.append(libc.syscall(ioprio_get, 1, threading.get_native_id()))

    thread = threading.Thread(target=in_idle)
    thread.start()
    thread.join()
    assert found[0] >> 13 == bench.IOPRIO_CLASS_IDLE
    assert libc.syscall(ioprio_get, 1, threading.get_native_id()) >> 13 != 3  # this one's kept


def test_the_scheduler_is_the_bracketed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load()
    listed = {"/sys/block/vda/queue/scheduler": "none [mq-deadline] kyber\n"}

    def read(path: str, *args: Any, **kwargs: Any) -> Any:
        if path in listed:
            return _Text(listed[path])
        raise FileNotFoundError(path)

    monkeypatch.setattr(bench, "open", read, raising=False)
    assert bench.scheduler_of("vda") == "mq-deadline"
    assert bench.scheduler_of("vda1") == "mq-deadline"  # a partition's queue is its disk's
    assert bench.scheduler_of("sdz") == ""
    assert bench.scheduler_of(None) == ""


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def __enter__(self) -> _Text:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def read(self) -> str:
        return self.text


def test_the_device_counts_are_read_from_their_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """A /proc/diskstats line of kernel 6.18 (iostats.rst's 17 fields)."""
    bench = _load()
    line = (
        "254 0 vda 838178 104957 142413058 483326 11556269 803833 2205462064 2643360"
        " 0 1755324 3914493 1052263 34 3373218120 357196 3644426 430611"
    )
    monkeypatch.setattr(bench, "_diskstats", lambda: [line.split()])
    assert bench.device_counts("vda") == {
        "writes": 11556269,
        "write_ms": 2643360,
        "busy_ms": 1755324,
        "flushes": 3644426,
        "flush_ms": 430611,
    }
    assert bench.device_counts("sda") is None


def test_the_run_queue_clock_counts_the_threads_own_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _load()
    clock = bench._RunQueueClock()
    try:
        first = clock.waited_ns()
        assert first >= 0 and clock.waited_ns() >= first
        if os.path.exists("/proc/thread-self/schedstat"):
            with open("/proc/thread-self/schedstat", encoding="ascii") as stat:
                assert abs(int(stat.read().split()[1]) - clock.waited_ns()) < 1_000_000_000
    finally:
        clock.close()

    def no_proc(path: str, flags: int) -> int:
        raise FileNotFoundError(path)

    monkeypatch.setattr(bench.os, "open", no_proc)
    assert bench._RunQueueClock().waited_ns() == 0  # no schedstat: no wait taken off


class _PreemptedEveryCall:
    """A virtual timeline on which the WAL thread waits 1 ms for a core
    before every call it makes: the clock's reads, the sync, the timer's."""

    def __init__(self) -> None:
        self.now_ns = 0
        self.run_queue_ns = 0

    def preempted(self) -> None:
        self.now_ns += 1_000_000
        self.run_queue_ns += 1_000_000

    def perf_counter(self) -> float:
        self.preempted()
        return self.now_ns / 1e9

    def waited_ns(self) -> int:
        self.preempted()
        return self.run_queue_ns

    def close(self) -> None:
        pass

    def write(self, chunks: Any) -> None:
        pass

    def sync(self) -> None:
        self.preempted()
        self.now_ns += 3_000_000  # the disk's part


def test_a_syncs_run_queue_wait_is_taken_from_inside_its_wall_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = _load()
    timeline = _PreemptedEveryCall()
    monkeypatch.setattr(bench, "_RunQueueClock", lambda: timeline)
    monkeypatch.setattr(bench, "time", timeline)
    latencies, queued = bench._wal_syncs(timeline, 1, None)
    assert len(latencies) == len(queued) == 1
    # Whatever is taken off lies inside the wall time: never more than it,
    # and the disk's 3 ms stay off the CPU.
    assert queued[0] <= latencies[0] - 3.0


def test_the_ordered_setting_never_flushes_a_put_beside_a_wal_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()
    gates: list[Any] = []

    class Recorded(bench._FlushGate):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            gates.append(self)

    wal_syncing = threading.Event()
    put_fsyncs: list[tuple[bool, bool]] = []  # (held the gate, beside a WAL sync)
    wal_sync = bench.SegmentWriter.sync
    fsync = os.fsync

    def put_fsync(fd: Any) -> None:
        if threading.current_thread().name == "puts-beside":  # not the segment's own
            put_fsyncs.append((bool(gates) and gates[0].lock.locked(), wal_syncing.is_set()))
        fsync(fd)

    def synced(segment: Any) -> None:
        wal_syncing.set()
        try:
            wal_sync(segment)
        finally:
            wal_syncing.clear()

    monkeypatch.setattr(bench, "_FlushGate", Recorded)
    monkeypatch.setattr(bench.SegmentWriter, "sync", synced)
    monkeypatch.setattr(os, "fsync", put_fsync)  # the gate wraps what it finds
    recycled = bench._recycled_file(tmp_path, 4 * MIB)
    figures = bench.one_setting("step_1024_ordered", tmp_path, 3 * MIB, 1, recycled)
    assert figures["put_mib"] > 0 and put_fsyncs  # each put fsyncs its object and directory
    assert all(held and not beside for held, beside in put_fsyncs)
    assert os.fsync is put_fsync  # given back when the setting ends
