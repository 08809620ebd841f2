"""bench/engine_bench.py, run as people run it: a quick round of each side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import native
from tests.bench.run import run_bench

BENCH = "engine_bench.py"


@pytest.mark.slow
def test_engine_bench_reports_every_headline_figure_beside_sqlite(tmp_path: Path) -> None:
    stdout = run_bench(BENCH, "--quick", "--rounds", "1", "--json", "--dir", str(tmp_path))
    report = json.loads(stdout)
    assert report["records"] == 20_000
    assert report["record_bytes"] == 1024
    assert report["durability"] == "fsync"
    assert report["implementation"] == native.IMPLEMENTATION
    for key in (
        "produce_rec_s",
        "produce_many_rec_s",
        "replay_rec_s",
        "replay_warm_rec_s",
        "sqlite_insert_rec_s",
        "sqlite_replay_rec_s",
    ):
        assert report[key] > 0, key
        assert report[f"{key}_rounds"] == [report[key]], key
    assert report["produce_vs_sqlite"] == pytest.approx(
        report["produce_rec_s"] / report["sqlite_insert_rec_s"], rel=0.01
    )
    assert report["produce_many_vs_sqlite"] == pytest.approx(
        report["produce_many_rec_s"] / report["sqlite_insert_rec_s"], rel=0.01
    )
    assert report["produce_many_vs_send"] == pytest.approx(
        report["produce_many_rec_s"] / report["produce_rec_s"], rel=0.01
    )
    assert report["replay_vs_sqlite"] == pytest.approx(
        report["replay_rec_s"] / report["sqlite_replay_rec_s"], rel=0.01
    )
    assert set(report["targets"]) == {
        "produce_vs_sqlite >= 1.5",
        "produce_many_vs_sqlite >= 2.0",
        "replay_vs_sqlite >= 1.0",
    }
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_engine_bench_prints_a_table_with_the_targets(tmp_path: Path) -> None:
    stdout = run_bench(BENCH, "--records", "2000", "--rounds", "1", "--dir", str(tmp_path))
    assert "engine produce" in stdout
    assert "send_many" in stdout
    assert "SQLite insert" in stdout
    assert "produce_vs_sqlite >= 1.5:" in stdout
    assert "produce_many_vs_sqlite >= 2.0:" in stdout
    assert "replay_vs_sqlite >= 1.0:" in stdout
    assert list(tmp_path.iterdir()) == []
