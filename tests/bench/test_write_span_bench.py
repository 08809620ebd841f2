"""bench/write_span_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_write_span_bench_reports_each_way_and_their_ratio() -> None:
    report = json.loads(run_bench("write_span_bench.py", "--quick", "--json"))
    assert report["rounds"] == 1 and report["round_mb"] == 64 and report["file_mb"] == 16
    for way in ("whole", "spans"):
        assert report[f"{way}_cpu_ms_per_mib"] > 0, way
        assert report[f"{way}_mb_s"] > 0, way
    assert report["spans_vs_whole_cpu"] == pytest.approx(
        report["spans_cpu_ms_per_mib"] / report["whole_cpu_ms_per_mib"], rel=0.01
    )
