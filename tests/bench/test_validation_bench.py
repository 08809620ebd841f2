"""bench/validation_bench.py, run as people run it: a quick pass through every phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench

PHASES = ("none", "id", "full_json", "full_avro")


@pytest.mark.slow
def test_validation_bench_reports_each_phase_beside_the_none_topic(tmp_path: Path) -> None:
    report = json.loads(
        run_bench("validation_bench.py", "--quick", "--json", "--data-dir", str(tmp_path))
    )
    for phase in PHASES:
        assert report[f"{phase}_mb_s"] > 0, phase
        assert report[f"{phase}_records_s"] > 0, phase
    for phase in PHASES[1:]:
        assert report[f"{phase}_vs_none"] == pytest.approx(
            report[f"{phase}_records_s"] / report["none_records_s"], abs=0.002
        )
    assert (report["batches"], report["rounds"]) == (200, 1)
    assert list(tmp_path.iterdir()) == []


def test_validation_bench_prints_a_table(tmp_path: Path) -> None:
    stdout = run_bench(
        "validation_bench.py", "--batches", "5", "--rounds", "1", "--data-dir", str(tmp_path)
    )
    assert "vs none" in stdout
    for phase in PHASES:
        assert f"  {phase} " in stdout
