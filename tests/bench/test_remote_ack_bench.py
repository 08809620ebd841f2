"""bench/remote_ack_bench.py, run as people run it: the quick pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.run import run_bench


@pytest.mark.slow
@pytest.mark.parametrize("store", ["moto", "local"])
def test_remote_ack_bench_reports_ack_latency_beside_the_puts_it_waits_on(
    tmp_path: Path, store: str
) -> None:
    report = json.loads(
        run_bench(
            "remote_ack_bench.py", "--quick", "--json", "--store", store, "--dir", str(tmp_path)
        )
    )
    assert report["appends"] == 600
    assert report["store"] == store
    for key in (
        "remote_ack_p50_ms",
        "remote_ack_p99_ms",
        "put_p50_ms",
        "small_put_p50_ms",
        "head_p50_ms",
    ):
        assert report[key] > 0, key
    assert report["remote_ack_p50_ms"] <= report["remote_ack_p99_ms"] <= report["remote_ack_max_ms"]
    assert report["upload_ms"] == pytest.approx(
        report["put_p50_ms"] + report["small_put_p50_ms"], abs=0.02
    )
    assert report["remote_ack_p99_vs_upload"] == pytest.approx(
        report["remote_ack_p99_ms"] / report["upload_ms"], rel=0.01
    )
    # Acks share uploads: never more uploads than acknowledged appends.
    assert 0 < report["uploads"] <= report["appends"]
    assert set(report["targets"]) == {"remote_ack_p99_vs_upload <= 2.5"}
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_remote_ack_bench_holds_as_many_streams_as_asked(tmp_path: Path) -> None:
    report = json.loads(
        run_bench(
            "remote_ack_bench.py",
            "--quick",
            "--json",
            "--store",
            "local",
            "--streams",
            "40",
            "--dir",
            str(tmp_path),
        )
    )
    assert report["streams"] == 40 and report["appenders"] == 8
    assert report["appends"] == 600 and report["remote_ack_p99_ms"] > 0
    assert list(tmp_path.iterdir()) == []
