"""bench/replay_bench.py's replay timeline: a store on a local directory,
written and replayed cold at a tiny size (the whole benchmark runs moto too,
and takes minutes)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.bench.run import load_bench

MiB = 1024 * 1024


def _load() -> ModuleType:
    return load_bench("replay_bench.py", "bench_replay")


def test_a_replay_records_its_progress_over_time(tmp_path: Path) -> None:
    from s3stream.store import LocalStore

    replay = _load()
    bucket = tmp_path / "bucket"
    total = 4 * MiB
    figures = replay.backend_run(
        tmp_path / "run",
        lambda: LocalStore(str(bucket)),
        lambda key: len((bucket / key).read_bytes()),
        total,
    )
    for key in ("replay_timeline", "replay_uncompacted_timeline"):
        timeline = figures[key]
        seconds, mib = [t for t, _ in timeline], [m for _, m in timeline]
        assert timeline[0] == [0.0, 0.0]
        assert mib[-1] == total / MiB  # it ends at the last byte read
        assert seconds == sorted(seconds) and mib == sorted(mib)
        assert len(timeline) > 3  # samples along the way, not only the ends
        assert len(timeline) <= replay.TIMELINE_POINTS + 2
    assert figures["replay_mb_s"] > 0


def test_a_local_directory_run_measures_the_disk_writing_every_byte_twice(tmp_path: Path) -> None:
    from s3stream.store import LocalStore

    replay = _load()
    bucket = tmp_path / "bucket"
    figures = replay.backend_run(
        tmp_path / "run",
        lambda: LocalStore(str(bucket)),
        lambda key: len((bucket / key).read_bytes()),
        4 * MiB,
        local_objects=True,
    )
    # Every byte written twice: half the disk's rate for large writes, or
    # the bare WAL's if that is lower.
    # The figures are reported rounded; the limit is half the unrounded rate.
    assert figures["write_twice_limit_mb_s"] == pytest.approx(figures["objects_mb_s"] / 2, abs=0.1)
    limit = min(figures["wal_mb_s"], figures["write_twice_limit_mb_s"])
    assert figures["ceiling_mb_s"] == limit > 0
    binding = "wal" if limit == figures["wal_mb_s"] else "write_twice_limit"
    assert figures["ceiling"] == binding
    assert figures["append_vs_ceiling"] == pytest.approx(figures["append_mb_s"] / limit, abs=0.01)
    assert not (tmp_path / "run" / "bare-objects").exists()  # cleaned up


def test_a_remote_store_is_bound_by_the_wal_or_by_the_cores_its_server_leaves() -> None:
    replay = _load()
    cores = replay._harness.cpus()["cpus_usable"]
    mib = 100
    # The bare WAL 500 MB/s on 0.5 s of CPU for 100 MiB; the server 0.5 s more.
    busy = replay._ceiling({"wal_mb_s": 500.0, "append_mb_s": 100.0}, mib * MiB, 0, 0.5, 0.5)
    assert busy["wal_cpu_ms_per_mib"] == 5.0 and busy["server_cpu_ms_per_mib"] == 5.0
    assert busy["cpu_limit_mb_s"] == round(cores * mib / 1.0, 1)
    expected = min(500.0, cores * 100.0)
    assert busy["ceiling_mb_s"] == expected
    assert busy["ceiling"] == ("wal" if expected == 500.0 else "cpu_limit")
    assert busy["append_vs_ceiling"] == round(100.0 / expected, 3)
    # A server that costs next to nothing leaves the bare WAL binding.
    idle = replay._ceiling({"wal_mb_s": 500.0, "append_mb_s": 100.0}, mib * MiB, 0, 0.01, 0.01)
    assert idle["ceiling"] == "wal" and idle["ceiling_mb_s"] == 500.0
    assert idle["append_vs_ceiling"] == 0.2
