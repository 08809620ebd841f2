"""bench/wal_extent_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench.run import BENCH, load_bench, run_bench

MIB = 1 << 20
KINDS = ("fallocated", "zero_filled", "recycled", "zero_filled_beside_fill", "recycled_beside_fill")


@pytest.mark.slow
def test_wal_extent_bench_reports_each_kind_of_segment_and_what_its_syncs_convert(
    tmp_path: Path,
) -> None:
    report = json.loads(
        run_bench("wal_extent_bench.py", "--quick", "--json", "--dir", str(tmp_path))
    )
    assert list(tmp_path.iterdir()) == []  # its scratch directory is gone with its files
    assert report["rounds"] == 1 and report["segment_mb"] == 8
    for kind in KINDS:
        figures = [report[f"{kind}_{q}_ms"] for q in ("p50", "p99", "max")]
        assert figures[0] > 0 and figures == sorted(figures), kind
        assert report[f"{kind}_syncs"] > 0, kind
        assert report[f"{kind}_vs_recycled_p99"] == pytest.approx(
            report[f"{kind}_p99_ms"] / report["recycled_p99_ms"], abs=0.01
        )
    for kind in KINDS:  # a fill runs beside the two kinds that name one, and only them
        assert (f"{kind}_fills_beside" in report) == kind.endswith("_beside_fill"), kind
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    if _load().extents_of(str(probe)) is not None:  # where the file system maps extents
        # The kinds are what they say when their writes begin: only the
        # fallocated segment's blocks are unwritten past its header's
        # block, the others are written whole (the zeros, the recycled
        # data), and every kind's bytes are on the disk.
        assert report["fallocated_unwritten_bytes_before_runs"] == [8 * MIB - 4096]
        assert report["fallocated_written_bytes_before_runs"] == [4096]
        for kind in KINDS[1:]:
            assert report[f"{kind}_unwritten_bytes_before_runs"] == [0], kind
            assert report[f"{kind}_written_bytes_before_runs"] == [8 * MIB], kind
        for kind in KINDS:
            assert report[f"{kind}_delayed_bytes_before_runs"] == [0], kind
    # Where perf reads ext4's tracepoints and the files are on ext4 (another
    # file system's fallocate'd blocks never reach ext4's handler).
    if "fallocated_conversions_per_sync" in report and report["ext4_journal"]:
        # Only writes into fallocate'd blocks convert extents; written ones need none.
        assert report["fallocated_conversions_per_sync"] > 0
        for kind in KINDS[1:]:
            assert report[f"{kind}_conversions_per_sync"] == 0, kind


def _load() -> ModuleType:
    return load_bench("wal_extent_bench.py", "bench_wal_extent")


def test_wal_extent_bench_runs_without_perf_proc_or_sys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where perf, /proc/diskstats and /sys/fs/ext4 are out of reach (a
    sandbox, not Linux), the times are still measured and the counts left out."""
    bench = _load()

    def unreadable(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith(("/proc/", "/sys/")):
            raise FileNotFoundError(path)
        return open(path, *args, **kwargs)

    monkeypatch.setattr(bench, "open", unreadable, raising=False)
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    report = bench.run(tmp_path, rounds=1, segment_mb=2, write_mb=1)
    assert report["ext4_journal"] == ""
    for kind in KINDS:
        assert report[f"{kind}_syncs"] > 0, kind
        for name in bench.COUNTS:
            assert f"{kind}_{name}" not in report, (kind, name)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_fill_beside_fails_the_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()
    spare = bench.zero_filled_file

    def full_disk(directory: str, size: int, name: str) -> str:
        if name == "free-beside.wal":
            raise OSError(errno.ENOSPC, "No space left on device")
        return spare(directory, size, name)

    monkeypatch.setattr(bench, "zero_filled_file", full_disk)
    with pytest.raises(RuntimeError, match="zero fill beside") as raised:
        bench.one_kind("zero_filled_beside_fill", tmp_path, MIB, MIB // 2, 1)
    assert isinstance(raised.value.__cause__, OSError)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_stops_the_fill_beside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()

    def failing_sync(writer: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(bench.SegmentWriter, "sync", failing_sync)
    try:
        with pytest.raises(OSError, match="Input/output error"):
            bench.one_kind("recycled_beside_fill", tmp_path, MIB, MIB // 2, 1)
        assert not [t for t in threading.enumerate() if t.name == "zero-fill-beside"]
        assert list(tmp_path.iterdir()) == []
    finally:
        for thread in threading.enumerate():  # without the fix: stop it, or pytest never exits
            if thread.name == "zero-fill-beside":
                shutil.rmtree(tmp_path, ignore_errors=True)
                thread.join(timeout=30)


def test_extents_are_counted_across_more_than_one_fiemap_call(tmp_path: Path) -> None:
    """200 written blocks between holes and 200 fallocate'd ones: more
    extents than one call maps."""
    extents = load_bench("_extents.py", "bench_extents")
    path = tmp_path / "pieces"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        for piece in range(200):
            os.pwrite(fd, b"\x01" * 4096, piece * 4 * 4096)
            os.posix_fallocate(fd, (piece * 4 + 2) * 4096, 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
    found = extents.extents_of(str(path))
    if found is None:
        pytest.skip("this file system maps no extents")
    assert found == extents.Extents(written=200 * 4096, unwritten=200 * 4096, delayed=0)


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        (("--segment-mb", "2", "--write-mb", "2"), "--write-mb must be less than --segment-mb"),
        (
            ("--segment-mb", "2", "--write-mb", "1", "--rounds", "0"),
            "--rounds: 0 is not at least 1",
        ),
        (
            ("--segment-mb", "2", "--write-mb", "1", "--fill-step-kib", "0"),
            "--fill-step-kib: 0 is not at least 1",
        ),
        (("--segment-mb", "2", "--write-mb", "0"), "--write-mb: 0 is not at least 1"),
    ],
)
def test_arguments_the_bench_cannot_measure_are_refused(
    arguments: tuple[str, ...], refusal: str
) -> None:
    """Writes past the segment's end would grow it into blocks no kind
    prepared; no rounds leave no median; a step of 0 never ends a fill."""
    bench = BENCH / "wal_extent_bench.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--rounds", "1", *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert refusal in result.stderr


def _perf_named(directory: Path, script: str) -> str:
    """A ``perf`` in ``directory`` that runs ``script``, put first on PATH."""
    directory.mkdir()
    perf = directory / "perf"
    perf.write_text(f"#!/bin/sh\n{script}\n")
    perf.chmod(0o755)
    return f"{directory}{os.pathsep}{os.environ['PATH']}"


def test_conversions_are_counted_from_the_first_sync_when_perf_starts_slowly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine perf can take longer to open its counters than
    the kind takes to write: the count must start when perf says it does."""
    bench = _load()
    perf = shutil.which("perf")
    if perf is None:
        pytest.skip("no perf")
    probe = subprocess.run(
        [perf, "stat", "-e", bench.CONVERSIONS, "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("perf cannot read ext4's tracepoints here")
    if not bench.journal_of(bench._device_of(tmp_path)):
        pytest.skip("not on ext4: its tracepoints see none of these writes")
    monkeypatch.setenv("PATH", _perf_named(tmp_path / "bin", f'sleep 1\nexec {perf} "$@"'))
    work = tmp_path / "work"
    work.mkdir()
    figures = bench.one_kind("fallocated", work, 8 * MIB, 4 * MIB, 1)
    if figures.get("unwritten_bytes_before") == 0:
        pytest.skip("this file system does not keep fallocate'd blocks unwritten")
    # One split when the write is submitted, one conversion when it completes.
    assert figures["conversions_per_sync"] >= 2


def test_a_perf_that_cannot_count_leaves_the_counts_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()
    monkeypatch.setenv("PATH", _perf_named(tmp_path / "bin", "echo 'No permission' >&2\nexit 1"))
    work = tmp_path / "work"
    work.mkdir()
    figures = bench.one_kind("fallocated", work, 2 * MIB, MIB, 1)
    assert figures["syncs"] > 0
    assert "conversions_per_sync" not in figures and "commits_per_sync" not in figures
    assert list(work.iterdir()) == []


def test_a_perf_that_will_not_stop_is_killed_and_its_counts_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _load()
    monkeypatch.setattr(bench, "PERF_ANSWER_S", 0.5)
    pid_file = tmp_path / "perf.pid"
    script = f"trap '' INT\necho $$ > {pid_file}\nexec sleep 600"
    monkeypatch.setenv("PATH", _perf_named(tmp_path / "bin", script))
    work = tmp_path / "work"
    work.mkdir()
    try:
        figures = bench.one_kind("fallocated", work, 2 * MIB, MIB, 1)
        assert figures["syncs"] > 0 and "conversions_per_sync" not in figures
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)
    finally:
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
