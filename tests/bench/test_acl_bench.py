"""bench/acl_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_acl_bench_reports_the_authorizer_beside_its_baselines() -> None:
    report = json.loads(run_bench("acl_bench.py", "--quick", "--json"))
    for key in ("allow_all_per_s", "acl_per_s", "scan_per_s", "acl_vs_scan", "allow_all_vs_acl"):
        assert report[key] > 0, key
    assert 0 < report["allowed_share"] < 1
