"""bench/topics_bench.py, run as people run it: a quick pass through every phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench

BENCH = "topics_bench.py"
HEADLINE = (
    "create_s",
    "before_p99_ms",
    "during_p99_ms",
    "during_vs_before_p99",
    "last_vs_first_request",
)


@pytest.mark.slow
def test_topics_bench_reports_creation_and_the_canary_beside_its_baseline(
    tmp_path: Path,
) -> None:
    stdout = run_bench(BENCH, "--quick", "--json", "--data-dir", str(tmp_path))
    report = json.loads(stdout)
    for key in HEADLINE:
        assert isinstance(report[key], int | float), key
        assert report[key] > 0, key
    assert report["topics"] == 1000
    assert report["requests"] == 2
    assert report["create_failures"] == 0, report["first_failure"]
    assert report["topics_listed"] == 1000
    assert report["create_s"] == pytest.approx(sum(report["request_s"]), abs=0.01)
    assert report["during_vs_before_p99"] == pytest.approx(
        report["during_p99_ms"] / report["before_p99_ms"], rel=0.02
    )
    assert report["before_records"] > 0 and report["during_records"] > 0
    assert report["before_p50_ms"] <= report["before_p99_ms"]
    assert report["server_exit_codes"] == [0, 0]
    assert set(report["targets"]) == {"create_s <= 20", "during_p99_ms <= 50"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_topics_bench_prints_a_table_with_the_targets(tmp_path: Path) -> None:
    stdout = run_bench(
        BENCH,
        "--topics",
        "1000",
        "--per-request",
        "1000",
        "--baseline-seconds",
        "0.5",
        "--data-dir",
        str(tmp_path),
    )
    assert "1,000 topics of 1 partition in 1 CreateTopics request(s)" in stdout
    assert "canary before" in stdout
    assert "canary during" in stdout
    assert "during_vs_before_p99" in stdout
    assert "create_s <= 20:" in stdout
    assert "during_p99_ms <= 50:" in stdout
    assert list(tmp_path.iterdir()) == []
