"""bench/upload_lock_hold.py, run as people run it (``--quick``: 100
streams, 1 MiB blocks, two uploads measured)."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_upload_lock_hold_reports_the_reads_holds_and_the_appends_waits() -> None:
    report = json.loads(run_bench("upload_lock_hold.py", "--quick", "--json"))
    (run,) = report["runs"]
    # The first block's upload and one after it.
    assert (run["streams"], run["block_mib"], run["uploads"]) == (100, 1, 2)
    # The read's holds were found and timed: at least one an upload.
    assert run["read_holds"] >= 1
    assert run["read_longest_ms"] > 0 and run["read_total_ms"] > 0
    assert 0 < run["upload_end_longest_ms"] <= run["upload_end_total_ms"]
    assert 0 < run["append_p50_us"] <= run["append_p99_us"] <= run["append_p999_us"]
    assert run["append_p999_us"] <= run["append_max_us"]
    assert run["appends_per_s"] > 0
    assert isinstance(run["loadavg"], float)
    # The log cache alone: the eviction whole is its holds and the freeing
    # after them, the figure that compares with a tree freeing under the
    # lock; its holds a group each (0157, amended), and the trace's ends.
    (cached,) = report["cache_runs"]
    assert 0 < cached["evict_hold_ms"] <= cached["evict_holds_ms"]
    assert cached["evict_holds"] > 1 and cached["freed_after_ms"] >= 0
    assert cached["evict_total_ms"] == pytest.approx(
        cached["evict_holds_ms"] + cached["freed_after_ms"]
    )
    assert 0 < cached["ends_longest_ms"] <= cached["ends_total_ms"]
