"""bench/lookup_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_lookup_bench_reports_the_lookup_beside_a_full_scan() -> None:
    report = json.loads(run_bench("lookup_bench.py", "--quick", "--json"))
    assert report["found"] == 4
    for key in ("lookup_gets", "lookup_bytes", "scan_bytes", "topic_bytes", "scan_vs_lookup"):
        assert report[key] > 0, key
    assert report["lookup_bytes_share"] > 0
    # Reading the matching batches alone reads less than their whole blocks.
    assert report["blocks_bytes"] > report["lookup_bytes"]
