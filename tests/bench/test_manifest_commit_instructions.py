"""bench/manifest_commit_instructions.py, run as people run it: its quick
pass by CPU time (the instructions need valgrind, and minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_manifest_commit_bench_reports_a_commits_cost_by_stream_count() -> None:
    tree = str(Path(__file__).resolve().parents[2])
    report = json.loads(
        run_bench("manifest_commit_instructions.py", "--quick", "--cpu", "--json", "--tree", tree)
    )
    assert report["commits"] == 64 and report["measure"] == "cpu"
    small, large = report["s1"][tree], report["s100"][tree]
    assert small["objects"] == 3 + 64 and large["objects"] == 300 + 64
    for row in (small, large):
        assert row["checkpoints"] == 1  # version 128: the set-up wrote 64
        assert row["delta_bytes"] > 0 and row["checkpoint_bytes"] > 0
        assert row["commit_cpu_us"] > 0 and row["process_cpu_us"] > 0
    # An upload of 8 streams' ranges is a larger delta than one of 1 stream's.
    assert large["delta_bytes"] > small["delta_bytes"]
