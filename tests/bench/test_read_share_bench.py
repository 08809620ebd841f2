"""bench/read_share_bench.py, run as people run it (a pass of one reader
count and one pause, to keep it short)."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_read_share_bench_reports_bytes_fetched_beside_the_objects() -> None:
    report = json.loads(
        run_bench(
            "read_share_bench.py",
            *("--readers", "4", "--shared-readers", "2", "--pauses-ms", "0", "--json"),
        )
    )
    own, shared = report["runs"]
    assert (own["shape"], shared["shape"]) == ("own streams", "one stream")
    assert (shared["readers"], shared["pause_ms"]) == (2, 0)
    assert shared["fetched_bytes"] >= shared["object_bytes"] > 0
    run = own
    assert (run["readers"], run["pause_ms"]) == (4, 0)
    # Every object byte is fetched at least once; the cache counts its
    # unread evictions.
    assert run["fetched_bytes"] >= run["object_bytes"] > 0
    assert run["fetched_vs_objects"] >= 1.0
    assert run["gets"] > 0 and run["gets_per_mib"] > 0
    assert isinstance(run["evicted_unread"], int)  # reported, whatever the run evicted
    assert isinstance(report["load_before"], float) and isinstance(report["load_after"], float)
