"""bench/wal_roll_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_wal_roll_bench_times_rolls_into_segments_made_ahead() -> None:
    report = json.loads(run_bench("wal_roll_bench.py", "--quick", "--json"))
    # 2 s at 10 MiB/s into 1 MiB segments: about 20 rolls, the first left out.
    assert report["appends"] == 20480
    assert report["rolls"] >= 10
    assert report["rolls_made_ahead"] >= 1
    assert 0 < report["roll_p50_ms"] <= report["roll_p90_ms"] <= report["roll_max_ms"]
    assert 0 < report["ack_p50_ms"] <= report["ack_p99_ms"] <= report["ack_p999_ms"]
    assert report["roll_vs_ack_p50"] == pytest.approx(
        report["roll_p50_ms"] / report["ack_p50_ms"], rel=0.01, abs=0.002
    )
