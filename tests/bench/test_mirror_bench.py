"""bench/mirror_bench.py, run as people run it: a quick pass, every figure
beside its baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_mirror_bench_reports_the_mirror_beside_producing_straight_to_the_target(
    tmp_path: Path,
) -> None:
    stdout = run_bench(
        "mirror_bench.py", "--quick", "--json", "--records", "3000", "--data-dir", str(tmp_path)
    )
    report = json.loads(stdout)
    assert report["copied"] == report["records"] == 3000
    for key in (
        "mirror_records_per_s",
        "direct_records_per_s",
        "mirror_vs_direct",
        "mirror_cpu_s",
        "direct_cpu_s",
    ):
        assert report[key] > 0, key
    assert report["mirror_cpu_vs_direct"] == pytest.approx(
        report["mirror_cpu_s"] / report["direct_cpu_s"], rel=0.01
    )
    assert report["mirror_vs_direct"] == pytest.approx(
        report["mirror_records_per_s"] / report["direct_records_per_s"], rel=0.01
    )
    assert report["server_exit_codes"] == [0, 0]
    assert list(tmp_path.iterdir()) == []
