"""bench/remote_ack_bench.py, run as people run it, at its smallest size
that still runs every phase: one round of appends (ten for each of the
eight appenders), then its PUTs and HEADs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.bench.run import load_bench, run_bench

APPENDS = 80
STREAMS = 40


def _run(directory: Path, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(
        run_bench(
            "remote_ack_bench.py",
            "--appends",
            str(APPENDS),
            "--rounds",
            "1",
            "--json",
            "--dir",
            str(directory),
            *args,
        )
    )
    return report


Run = tuple[dict[str, Any], Path]
"""A run's report and the scratch directory it was given."""


@pytest.fixture(scope="module")
def moto_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    scratch = tmp_path_factory.mktemp("moto")
    return _run(scratch, "--store", "moto"), scratch


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The local store's run, holding ``STREAMS`` streams: both tests below
    check it, each for different things of the one output."""
    scratch = tmp_path_factory.mktemp("local")
    return _run(scratch, "--store", "local", "--streams", str(STREAMS)), scratch


@pytest.mark.slow
@pytest.mark.parametrize("store", ["moto", "local"])
def test_remote_ack_bench_reports_ack_latency_beside_the_puts_it_waits_on(
    request: pytest.FixtureRequest, store: str
) -> None:
    report, scratch = request.getfixturevalue(f"{store}_run")
    assert report["appends"] == APPENDS
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
    assert list(scratch.iterdir()) == []
    assert_acks_traced(report)


def assert_acks_traced(report: dict[str, Any]) -> None:
    """The figures of what each acknowledgement waited on: every append
    traced, none waiting for more than the upload in flight and its own,
    and shares no larger than the waits they are part of."""
    assert report["acks_traced"] == report["appends"]
    assert sum(report["uploads_waited"].values()) == report["appends"]
    assert 1 <= report["uploads_waited_max"] <= 2
    assert report["uploads_waited_max"] == max(map(int, report["uploads_waited"]))
    assert 0 <= report["own_share_p50_ms"] <= report["own_share_p99_ms"]
    assert report["own_share_p99_ms"] <= report["remote_ack_max_ms"]
    assert 0 <= report["wal_wait_p99_ms"] <= report["remote_ack_max_ms"]
    assert report["window_ms"] == 2.0  # the store's remote_linger_s
    assert 0 <= report["window_p99_ms"] <= report["window_max_ms"]
    assert 0 <= report["seal_late_p99_ms"] <= report["seal_late_max_ms"]
    assert 0 <= report["in_flight_left_p99_ms"] <= report["remote_ack_max_ms"]
    assert 0 <= report["hand_back_p50_ms"] <= report["hand_back_p99_ms"]
    # An acknowledgement's latency holds the requests it waited on.
    assert 1 <= report["remote_ack_p50_vs_own_requests"] <= report["remote_ack_p99_vs_own_requests"]


@pytest.mark.slow
def test_remote_ack_bench_holds_as_many_streams_as_asked(local_run: Run) -> None:
    report, scratch = local_run
    assert report["streams"] == STREAMS and report["appenders"] == 8
    assert report["appends"] == APPENDS and report["remote_ack_p99_ms"] > 0
    assert list(scratch.iterdir()) == []
    assert_acks_traced(report)


def test_per_ack_reports_the_request_ratios_absent_when_no_ack_overlapped_a_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Acknowledgements traced, none of them while a store request of its
    uploads was in flight (``requests`` 0 for each): the ratios over the
    requests waited on are absent (None), the other figures stand, and
    the table says why the ratios are missing."""
    from s3stream.ack_trace import AckWait

    bench = load_bench("remote_ack_bench.py", "remote_ack_bench_for_per_ack")
    waits = [
        AckWait(
            latency=0.004,
            uploads_waited=1,
            in_flight_left=0.0,
            window=0.002,
            seal_late=0.0,
            requests=0.0,
            wal=0.001,
            hand_back=0.0002,
        ),
        AckWait(
            latency=0.006,
            uploads_waited=2,
            in_flight_left=0.001,
            window=0.002,
            seal_late=0.0005,
            requests=0.0,
            wal=0.0,
            hand_back=0.0003,
        ),
    ]
    figures = bench._per_ack(waits, 0.002)
    assert figures["acks_traced"] == 2
    assert figures["acks_over_requests"] == 0
    assert figures["remote_ack_p50_vs_own_requests"] is None
    assert figures["remote_ack_p99_vs_own_requests"] is None
    assert figures["uploads_waited_max"] == 2
    assert figures["window_ms"] == 2.0
    line = bench._over_own_requests(figures)
    assert "absent" in line and "no traced acknowledgement overlapped a store request" in line
