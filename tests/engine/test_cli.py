"""The `tidelog` command line, run as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import engine
from tests.engine.helpers_records import child_env, read_partition
from tests.engine.wal_damage import (
    TOPIC,
    acknowledged_then_killed,
    damage_record_holding,
    tree,
    value,
)
from wal import WriteAheadLog


def _tidelog() -> list[str]:
    script = shutil.which("tidelog", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "engine"]


def test_version_is_printed() -> None:
    result = subprocess.run([*_tidelog(), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"tidelog {engine.__version__}"


def test_python_dash_m_engine_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"tidelog {engine.__version__}"


def test_no_command_prints_usage_and_fails() -> None:
    result = subprocess.run(_tidelog(), capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "wal-bench" in result.stderr


def test_wal_bench_reports_durable_appends_and_cleans_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "bench"
    result = subprocess.run(
        [
            *_tidelog(),
            "wal-bench",
            "--seconds",
            "0.3",
            "--writers",
            "4",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        env=child_env(),  # this tree's code, not an installed copy's
        check=True,
    )
    figures = dict(
        line.split(None, 1) for line in result.stdout.splitlines()[1:] if line.startswith("  ")
    )
    assert float(figures["appends_per_second"]) > 0
    assert figures["durability"].strip() == "fsync"
    assert float(figures["appends_per_sync"]) >= 1
    assert list(data_dir.iterdir()) == []


@pytest.mark.slow
def test_wal_bench_compare_reports_every_headline_figure(tmp_path: Path) -> None:
    result = subprocess.run(
        [*_tidelog(), "wal-bench", "--compare", "--quick", "--json", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=child_env(),  # this tree's code, not an installed copy's
        check=True,
    )
    report = json.loads(result.stdout)
    for key in ("raw_mb_s", "wal_mb_s_16k", "wal_mb_s_1k", "sqlite_mb_s_1k", "disk_mb_s_1k_batch"):
        assert report[key] > 0, key
    _is_the_ratio_of_the_figures(
        report, "wal1k_batch_vs_disk", "wal_mb_s_1k_batch", "disk_mb_s_1k_batch"
    )
    _is_the_ratio_of_the_figures(report, "wal16k_vs_raw", "wal_mb_s_16k", "raw_mb_s")
    _is_the_ratio_of_the_figures(report, "wal1k_vs_sqlite", "wal_mb_s_1k", "sqlite_mb_s_1k")
    configurations = {(r["mode"], r["writers"], r["record_size"]) for r in report["wal"]}
    assert configurations == {
        (mode, writers, size)
        for mode in ("asyncio", "threads")
        for writers in (1, 8, 64)
        for size in (1024, 16384)
    }
    assert list(tmp_path.iterdir()) == []


def _is_the_ratio_of_the_figures(
    report: dict[str, Any], ratio: str, numerator: str, denominator: str
) -> None:
    """The ratio is taken before the figures are rounded to 0.1 MB/s (and
    itself to 0.001): within what that rounding allows, which small figures
    from a loaded machine make more than a percent."""
    top, bottom = report[numerator], report[denominator]
    low = (top - 0.05) / (bottom + 0.05) - 0.0005
    high = (top + 0.05) / (bottom - 0.05) + 0.0005
    assert low <= report[ratio] <= high, (ratio, report[ratio], top, bottom)


def _recover(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_tidelog(), "recover", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )


def test_recover_reports_damage_without_changing_anything_then_salvages_on_request(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    acknowledged_then_killed(data_dir, 20)
    path, offset = damage_record_holding(data_dir, value(10))
    before = tree(data_dir)

    dry = _recover(str(data_dir))
    assert dry.returncode == 1
    assert f"damaged: {path} bytes {offset}.." in dry.stdout
    assert f"tidelog recover --accept-data-loss {data_dir}" in dry.stderr
    assert tree(data_dir) == before, "a dry run changed the data directory"

    salvage = _recover("--accept-data-loss", str(data_dir))
    assert salvage.returncode == 0, salvage.stderr
    assert f"dropped: {path} bytes {offset}.." in salvage.stdout
    assert "the log opens normally now" in salvage.stdout

    again = _recover(str(data_dir))
    assert again.returncode == 0 and "no damage" in again.stdout
    with engine.open(data_dir) as e:
        assert [r.value for r in read_partition(e, TOPIC, 0)] == [value(i) for i in range(10)]


def test_recover_refuses_a_directory_without_a_wal_or_in_use(tmp_path: Path) -> None:
    missing = _recover(str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert "no write-ahead log" in missing.stderr
    with WriteAheadLog(tmp_path / "data" / "wal"):
        locked = _recover(str(tmp_path / "data"))
    assert locked.returncode == 2
    assert "in use by another tidelog process" in locked.stderr
    assert "Traceback" not in missing.stderr + locked.stderr
