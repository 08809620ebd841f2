"""bench/object_put_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json
import time

import pytest

from tests.bench.run import load_bench, run_bench


@pytest.mark.slow
def test_object_put_bench_reports_each_way_and_their_ratio() -> None:
    report = json.loads(run_bench("object_put_bench.py", "--quick", "--json"))
    assert report["rounds"] == 2 and report["objects"] == 2 and report["object_mb"] == 32
    for way in ("direct", "buffered"):
        assert report[f"{way}_cpu_ms_per_mib"] > 0, way
        assert report[f"{way}_mb_s"] > 0, way
        assert len(report[f"{way}_cpu_ms_per_mib_runs"]) == 2, way
        assert report[f"{way}_read_ms_per_mib"] > 0, way
        assert len(report[f"{way}_read_ms_per_mib_runs"]) == 2, way
    assert report["direct_vs_buffered_cpu"] == pytest.approx(
        report["direct_cpu_ms_per_mib"] / report["buffered_cpu_ms_per_mib"], rel=0.01
    )
    assert report["direct_vs_buffered_read"] == pytest.approx(
        report["direct_read_ms_per_mib"] / report["buffered_read_ms_per_mib"], rel=0.01
    )


def test_the_putting_threads_cpu_is_counted_finer_than_a_clock_tick() -> None:
    bench = load_bench("object_put_bench.py", "object_put_bench")
    cpu, _, _ = bench._thread_cpu()
    started = time.thread_time()
    while time.thread_time() - started < 0.003:  # a third of a 10 ms clock tick
        pass
    burned = time.thread_time() - started
    cpu_after, _, _ = bench._thread_cpu()
    assert cpu_after - cpu == pytest.approx(burned, abs=0.001)
