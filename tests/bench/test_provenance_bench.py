"""bench/provenance_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_provenance_bench_reports_the_stamp_topic_beside_a_none_topic() -> None:
    report = json.loads(run_bench("provenance_bench.py", "--quick", "--json"))
    for codec in ("none", "zstd"):
        row = report[codec]
        assert row["none_mb_s"] > 0 and row["stamp_mb_s"] > 0, codec
        assert row["stamp_vs_none"] == pytest.approx(row["stamp_mb_s"] / row["none_mb_s"], abs=0.01)
