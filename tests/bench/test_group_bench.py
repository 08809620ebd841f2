"""bench/group_bench.py, run as people run it: a quick pass through every phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench

BENCH = "group_bench.py"


@pytest.mark.slow
def test_group_bench_reports_each_figure_beside_its_baseline(tmp_path: Path) -> None:
    stdout = run_bench(
        BENCH,
        "--quick",
        "--records",
        "8000",
        "--txn-records",
        "4000",
        "--json",
        "--data-dir",
        str(tmp_path),
    )
    report = json.loads(stdout)
    for key in (
        "group_e2e_mb_s",
        "assign_e2e_mb_s",
        "idempotent_mb_s",
        "transactional_mb_s",
        "mock_idempotent_mb_s",
        "mock_transactional_mb_s",
        "rebalance_leave_s_range",
        "rebalance_join_s_range",
        "rebalance_leave_s_cooperative_sticky",
        "rebalance_join_s_cooperative_sticky",
    ):
        assert isinstance(report[key], int | float), key
        assert report[key] > 0, key
    assert report["group_vs_assign"] == pytest.approx(
        report["group_e2e_mb_s"] / report["assign_e2e_mb_s"], rel=0.01
    )
    assert report["txn_vs_idempotent"] == pytest.approx(
        report["transactional_mb_s"] / report["idempotent_mb_s"], rel=0.01
    )
    assert (report["members"], report["partitions"], report["records"]) == (4, 16, 8000)
    assert report["server_exit_code"] == 0
    assert list(tmp_path.iterdir()) == []
