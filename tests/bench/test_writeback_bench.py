"""bench/writeback_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_writeback_bench_reports_the_wal_beside_each_way_of_flushing_objects() -> None:
    report = json.loads(run_bench("writeback_bench.py", "--quick", "--json"))
    assert report["rounds"] == 1 and report["object_mb"] == 8
    for way in ("fdatasync", "write_back"):
        assert report[f"{way}_objects"] > 0, way  # the background writer ran beside the WAL
        figures = [report[f"{way}_{q}_ms"] for q in ("p50", "p99", "p999", "max")]
        assert figures[0] > 0 and figures == sorted(figures), way
    for q in ("p50", "p99", "p999", "max"):
        assert report[f"write_back_vs_fdatasync_{q}"] == pytest.approx(
            report[f"write_back_{q}_ms"] / report[f"fdatasync_{q}_ms"], rel=0.01
        )
