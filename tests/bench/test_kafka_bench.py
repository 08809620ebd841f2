"""bench/kafka_bench.py, run as people run it: a quick pass through every phase."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench.run import load_bench, run_bench

BENCH = "kafka_bench.py"
HEADLINE = (
    "produce_mb_s",
    "consume_mb_s",
    "p50_ms",
    "p99_ms",
    "mock_produce_mb_s",
    "disk_mb_s",
    "produce_vs_disk",
    "produce_vs_write_twice_limit",
    "produce_vs_mock",
    "ceiling_mb_s",
    "produce_vs_ceiling",
)


def _load_bench() -> ModuleType:
    return load_bench(BENCH, "kafka_bench")


class QuickRun:
    """One ``--quick`` run of the bench, which both of its slow tests read:
    its JSON report and the directory it was given as scratch."""

    def __init__(self, report: dict[str, Any], data_dir: Path) -> None:
        self.report, self.data_dir = report, data_dir


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuickRun]:
    # One run of every phase serves the report's test and the table's (the
    # table is print_table of the same results, as main() prints it without
    # --json): a run costs a disk test, a mock cluster, five server starts
    # and 12 paced seconds. Two partitions, so a topic of more than one is
    # run too.
    data_dir = tmp_path_factory.mktemp("kafka-bench")
    stdout = run_bench(BENCH, "--quick", "--partitions", "2", "--json", "--data-dir", str(data_dir))
    yield QuickRun(json.loads(stdout), data_dir)


@pytest.mark.parametrize(
    ("mock", "disk", "binds", "ceiling"),
    [
        # Tonight's quiet machine: the client reached 372 MiB/s against a broker
        # that costs nothing, below half the disk's 1086.8: the client binds.
        (372.0, 1086.8, "mock_produce_mb_s", 372.0),
        # A slow disk: the write-twice limit binds.
        (372.0, 500.0, "write_twice_limit_mb_s", 250.0),
    ],
)
def test_the_lower_ceiling_binds_and_produce_is_measured_against_it(
    mock: float, disk: float, binds: str, ceiling: float
) -> None:
    bench = _load_bench()
    results = {
        "produce_mb_s": 281.9,
        "mock_produce_mb_s": mock,
        "write_twice_limit_mb_s": round(disk / 2, 1),
    }
    found = bench.binding_ceiling(results)
    assert found == {
        "ceiling_mb_s": ceiling,
        "ceiling": binds,
        "produce_vs_ceiling": round(281.9 / ceiling, 3),
    }


@pytest.mark.slow
def test_kafka_bench_reports_every_headline_figure_beside_its_ceilings(quick_run: QuickRun) -> None:
    report = quick_run.report
    for key in HEADLINE:
        assert isinstance(report[key], int | float), key
        assert report[key] > 0, key
    assert report["produce_vs_disk"] == pytest.approx(
        report["produce_mb_s"] / report["disk_mb_s"], rel=0.01
    )
    assert report["record_bytes"] == 1024
    assert report["records"] == 32 * 1024
    assert report["produce_bytes"] == 32 * 1024 * 1024
    assert report["latency_records"] > 0
    assert report["p50_ms"] <= report["p99_ms"]
    # What the server logged on tidelog.stalls in the latency phase, laid
    # against each of its worst windows (bench/_stalls.py).
    stalls = report["latency_stalls"]
    assert [start for start, _ in stalls["worst_window_stalls"]] == [
        start for start, _ in report["latency_worst_windows"]
    ]
    assert stalls["loop_late_max_ms"] >= 0 and stalls["wal_sync_max_ms"] >= 0
    # How long the server's threads, and this process's, waited for a CPU.
    for queue in (*report["latency_run_queue"].values(), report["mock_latency_run_queue"]):
        assert queue["ran_ms_per_s"] > 0
        assert 0 <= queue["main_waited_ms_per_s"] <= queue["waited_ms_per_s"]
    # 32 MiB uploads (every 32 MiB) at least: each logs its object's put.
    assert any("object store put" in what for _, what in stalls["stalls"])
    assert report["server_produce_cpu_s"] > 0
    # server_produce_cpu_s is rounded to 10 ms: over 32 MiB, 0.16 ms per MiB.
    assert report["server_produce_ms_per_mib"] == pytest.approx(
        report["server_produce_cpu_s"] * 1000 / 32, abs=0.2
    )
    # Counted on until the backlog left unuploaded is in objects: never
    # less than up to the last delivery.
    assert report["produce_upload_tail_s"] >= 0
    assert report["server_produce_uploaded_ms_per_mib"] >= report["server_produce_ms_per_mib"]
    # The event loop's share (its thread's CPU, rounded alike), its page
    # faults per MiB (at most every page of what it read, and what it
    # allocated besides) and the memory the server holds after the produce.
    assert (
        0 < report["server_loop_produce_ms_per_mib"] <= (report["server_produce_ms_per_mib"] + 0.4)
    )
    assert report["server_loop_faults_per_mib"] >= 0
    # Every group commit blocks the WAL's writer at least once (its fdatasync).
    assert report["server_produce_switches_per_mib"] > 0
    # The loop waits in epoll for each request's bytes and answer at least.
    assert report["server_loop_waits_per_mib"] > 0
    assert report["server_loop_preemptions_per_mib"] >= 0
    assert report["server_rss_after_produce_mib"] > 32
    assert report["server_exit_codes"] == [0, 0]
    assert report["remote_mb_s"] > 0 and report["remote_local_mb_s"] > 0
    assert report["remote_vs_local_mb_s"] == pytest.approx(
        report["remote_mb_s"] / report["remote_local_mb_s"], rel=0.05
    )
    assert 0 < report["remote_p50_ms"] <= report["remote_p99_ms"]
    # The per-record latency CDFs bench/report.py plots: sampled at rising
    # quantiles up to the maximum, latencies never falling, the median p50's.
    for phase in ("", "remote_", "mock_"):
        cdf = report[f"{phase}latency_cdf_ms"]
        quantiles, latencies = [q for q, _ in cdf], [ms for _, ms in cdf]
        assert quantiles == sorted(quantiles) and quantiles[0] == 0 and quantiles[-1] == 1
        assert latencies == sorted(latencies) and latencies[0] > 0
        assert dict(cdf)[0.5] == pytest.approx(report[f"{phase}p50_ms"], abs=0.001)
    assert set(report["targets"]) == {
        "produce_vs_disk >= 0.6",
        "produce_vs_write_twice_limit >= 0.9",
        "produce_vs_mock >= 0.85",
        "consume_mb_s >= 300",
        "p99_ms <= 10",
        "p99_over_mock_ms <= 2",
    }
    # The WAL and a local object store write every byte twice: half the
    # disk's figure is the ceiling.
    assert report["produce_vs_write_twice_limit"] == pytest.approx(
        report["produce_mb_s"] / (report["disk_mb_s"] / 2), rel=0.01
    )
    # The lower ceiling binds: no broker outruns the client or the disk.
    assert report["ceiling_mb_s"] == min(
        report["write_twice_limit_mb_s"], report["mock_produce_mb_s"]
    )
    assert report[report["ceiling"]] == report["ceiling_mb_s"]
    assert report["produce_vs_ceiling"] == pytest.approx(
        report["produce_mb_s"] / report["ceiling_mb_s"], rel=0.01
    )
    assert report["p99_over_mock_ms"] == pytest.approx(
        report["p99_ms"] - report["mock_p99_ms"], abs=0.01
    )
    # Fetch sessions: after the first fetch, requests name only what moved.
    assert report["fs_partitions"] == 1000
    assert report["fs_on_incremental"] == report["fs_fetches"] == 100
    assert report["fs_off_incremental"] == 0
    assert report["fs_request_bytes_on_vs_off"] < 0.05
    assert report["fs_on_server_cpu_ms"] > 0 and report["fs_off_server_cpu_ms"] > 0
    # SASL_SSL beside PLAINTEXT: both listeners of one server carried every record.
    assert report["sasl_ssl_mb"] == 16
    assert report["sasl_ssl_server_exit_code"] == 0
    for what in ("produce", "consume"):
        plaintext, sasl_ssl = report[f"plaintext_{what}_mb_s"], report[f"sasl_ssl_{what}_mb_s"]
        assert plaintext > 0 and sasl_ssl > 0
        assert report[f"sasl_ssl_vs_plaintext_{what}"] == pytest.approx(
            sasl_ssl / plaintext, rel=0.05
        )
        plaintext_cpu = report[f"plaintext_{what}_server_ms_per_mib"]
        sasl_ssl_cpu = report[f"sasl_ssl_{what}_server_ms_per_mib"]
        assert plaintext_cpu >= 0 and sasl_ssl_cpu > 0
        if plaintext_cpu:
            assert report[f"sasl_ssl_vs_plaintext_{what}_server_cpu"] == pytest.approx(
                sasl_ssl_cpu / plaintext_cpu, rel=0.05
            )
    assert report["sasl_ssl_consume_client_ms_per_mib"] > 0
    assert list(quick_run.data_dir.iterdir()) == []


@pytest.mark.slow
def test_kafka_bench_prints_a_table_with_the_targets(
    quick_run: QuickRun, capsys: pytest.CaptureFixture[str]
) -> None:
    _load_bench().print_table(quick_run.report)
    stdout = capsys.readouterr().out
    assert "produce, tidelog server" in stdout
    assert "produce, librdkafka mock cluster" in stdout
    assert "consume from offset 0" in stdout
    assert "produce_vs_disk >= 0.6:" in stdout
    assert "p99_ms <= 10:" in stdout
    assert "produce_vs_write_twice_limit >= 0.9:" in stdout
    assert "binds (write-twice limit" in stdout and "produce_vs_ceiling" in stdout
    assert "fetch sessions, a consumer of 1,000 partitions, 100 fetches" in stdout
    assert "compressed produce, 32 MiB of JSON-like 1 KiB records each:" in stdout
    assert "SASL_SSL (SCRAM-SHA-512) beside PLAINTEXT, one server, 16 MiB:" in stdout
    assert "32,768 records of 1024 B random bytes to a topic of 2 partition(s)" in stdout
    assert list(quick_run.data_dir.iterdir()) == []


class _FirstReportLate:
    """A producer whose first delivery report comes after `steps` flush steps,
    each of which the stall clock sees as `step` seconds."""

    def __init__(self, clock: list[float], steps: int, step: float) -> None:
        self.clock, self.steps, self.step = clock, steps, step

    def flush(self, timeout: float) -> int:
        self.clock[0] += self.step
        self.steps -= 1
        return max(self.steps, 0)


def test_a_flush_waiting_for_its_first_report_is_no_stall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No report yet (Deliveries.last still 0.0) is not a stall since the
    epoch: the wait counts from its own start, and only a wait longer than
    STALL_TIMEOUT with no report fails."""
    bench = _load_bench()
    clock = [1_000.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    bench._flush(_FirstReportLate(clock, steps=3, step=1.0), bench.Deliveries())
    with pytest.raises(RuntimeError, match="still undelivered"):
        bench._flush(
            _FirstReportLate(clock, steps=5, step=bench.STALL_TIMEOUT / 2), bench.Deliveries()
        )
