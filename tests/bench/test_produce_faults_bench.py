"""bench/produce_faults_bench.py: its reading of /proc, and a quick pass as
people run it."""

from __future__ import annotations

import json
import mmap
import os
import threading
from types import ModuleType

import pytest

from tests.bench.run import load_bench, run_bench

BENCH = "produce_faults_bench.py"


def _load_bench() -> ModuleType:
    return load_bench(BENCH, "produce_faults_bench")


def test_a_threads_counts_are_read_past_a_name_that_holds_spaces_and_parentheses() -> None:
    bench = _load_bench()
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...: a thread may name itself "a) b (c".
    line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194368 777 0 3 0 11 5 0 0 20 0 9 0\n"
    assert bench.parse_stat(line) == bench.ThreadCounts(minor_faults=777, cpu_ticks=16)


def test_this_threads_faults_grow_as_it_touches_fresh_memory() -> None:
    bench = _load_bench()
    pid, tid = os.getpid(), threading.get_native_id()
    before = bench.thread_counts(pid)[tid].minor_faults
    pages = 64
    memory = mmap.mmap(-1, pages * bench.PAGE)  # fresh anonymous pages, none present
    for page in range(pages):
        memory[page * bench.PAGE] = 1
    after = bench.thread_counts(pid)[tid].minor_faults
    memory.close()
    assert after - before >= pages


@pytest.mark.slow
def test_produce_faults_bench_splits_every_fault_into_new_pages_and_pages_touched_again() -> None:
    report = json.loads(run_bench("produce_faults_bench.py", "--quick", "--json"))
    assert report["produce_mb"] == 64 and report["pairs"] == 1
    assert [run["allocator"] for run in report["runs"]] == ["glibc", "fixed"]
    for run in report["runs"]:
        for phase in ("burst", "steady"):
            figures = run[phase]
            assert figures["all_faults_per_mib"] >= figures["faults_per_mib"] > 0, phase
            assert figures["first_touch_per_mib"] + figures["refaults_per_mib"] == pytest.approx(
                figures["all_faults_per_mib"], abs=0.2
            )
            assert figures["server_ms_per_mib"] > 0 and figures["rss_peak_mib"] > 0
        # The burst stays in the log cache (64 MiB, under its 256 MiB), read
        # from /metrics every 50 ms and once more when the burst has ended
        # (the last periodic sample can come 15 MiB before its end).
        assert run["burst"]["log_cache_peak_mib"] >= 48
        assert run["burst"]["produce_vs_mock"] == pytest.approx(
            run["burst"]["mb_s"] / run["mock_mb_s"], rel=0.01
        )
