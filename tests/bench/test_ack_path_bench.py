"""bench/ack_path_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench

STAGES = ("to_writer", "write", "to_sync", "sync", "to_loop")


@pytest.mark.slow
def test_ack_path_bench_splits_each_acknowledgement_into_its_stages() -> None:
    report = json.loads(run_bench("ack_path_bench.py", "--quick", "--json"))
    assert report["rounds"] == 1 and report["appends"] == 100
    assert sum(report["synced_by"].values()) == 100
    assert set(report["synced_by"]) <= {"wal-group-commit", "wal-sync"}
    for stage in (*STAGES, "ack"):
        assert 0 <= report[f"{stage}_p50_ms"] <= report[f"{stage}_p99_ms"], stage
    # The stages are consecutive spans of each acknowledgement.
    assert report["ack_p50_ms"] >= report["sync_p50_ms"]
    for q in ("p50", "p99"):
        assert report[f"ack_vs_sync_{q}"] == pytest.approx(
            report[f"ack_{q}_ms"] / report[f"sync_{q}_ms"], rel=0.01
        )
