"""bench/small_produce_bench.py, run as people run it, at its smallest."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_small_produce_bench_counts_one_record_requests_and_their_cpu() -> None:
    report = json.loads(
        run_bench("small_produce_bench.py", "--quick", "--json", "--partitions", "50")
    )
    assert report["requests"] >= 1000  # --quick: 0.5 s at 2,000 records a second
    assert report["records_per_request"] == 1.0  # one partition's one record each
    assert report["server_cpu_us_per_request"] >= report["loop_cpu_us_per_request"] > 0
    assert sum(report["threads"].values()) == pytest.approx(
        report["server_cpu_us_per_request"], abs=1.0
    )
    assert report["embedded_loop_cpu_us_per_append"] > 0
