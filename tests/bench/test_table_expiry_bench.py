"""bench/table_expiry_bench.py, run as people run it, at its smallest size
that still shows each mode's effect: past the count at which manifests
merge, fewer snapshots kept than commits made, and two windows, the last
ending at the last commit."""

from __future__ import annotations

import json

import pytest

from engine.tables.writer import MERGE_MANIFESTS_AT
from tests.bench.run import run_bench

COMMITS = MERGE_MANIFESTS_AT + 2
WINDOW = COMMITS // 2
KEEP = 5


@pytest.mark.slow
def test_table_expiry_bench_reports_the_manifest_lists_length_per_mode() -> None:
    report = json.loads(
        run_bench(
            "table_expiry_bench.py",
            "--commits",
            str(COMMITS),
            "--window",
            str(WINDOW),
            "--keep",
            str(KEEP),
            "--json",
        )
    )
    assert report["commits"] == COMMITS
    assert report["fast_manifests"] == COMMITS  # one more per commit
    assert report["on_manifests"] < MERGE_MANIFESTS_AT
    assert report["off_manifests"] < MERGE_MANIFESTS_AT
    assert report["off_snapshots"] == COMMITS + 1 and report["on_snapshots"] == KEEP
    for mode in ("off", "fast", "on"):
        assert [point[0] for point in report[f"{mode}_series"]] == [WINDOW, 2 * WINDOW]
        assert all(point[2] > 0 for point in report[f"{mode}_series"])
    assert report["on_last_vs_fast_last"] > 0
