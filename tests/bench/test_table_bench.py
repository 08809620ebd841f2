"""bench/table_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_table_bench_reports_the_writer_beside_pyarrow_alone() -> None:
    report = json.loads(run_bench("table_bench.py", "--quick", "--json"))
    assert report["records"] == 20_000
    for name in ("raw", "typed"):
        row = report[name]
        assert row["writer_records_s"] > 0 and row["pyarrow_records_s"] > 0, name
        assert row["commits"] >= 1 and row["files"] >= 1, name
        ratio = row["writer_records_s"] / row["pyarrow_records_s"]
        assert row["writer_vs_pyarrow"] == pytest.approx(ratio, rel=0.05), name
