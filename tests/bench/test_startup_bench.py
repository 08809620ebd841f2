"""bench/startup_bench.py, run as people run it: one process of each."""

from __future__ import annotations

import json

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
def test_startup_bench_reports_each_start_beside_a_bare_interpreter() -> None:
    report = json.loads(run_bench("startup_bench.py", "--quick", "--json"))
    assert report["rounds"] == 1
    for key in (
        "python_pass_s",
        "import_engine_s",
        "serve_listening_s",
        "serve_rss_mib",
        "fixture_import_s",
        "fixture_ready_s",
        "fixture_rss_mib",
    ):
        assert report[key] > 0, key
    base = report["python_pass_s"]
    assert report["serve_listening_vs_pass"] == report["serve_listening_s"] / base
