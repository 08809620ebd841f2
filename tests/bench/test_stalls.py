"""bench/_stalls.py: the server's tidelog.stalls lines read back from its
log into the phase's time, and laid against the phase's worst windows."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

from tests.bench.run import load_bench


def _load() -> ModuleType:
    return load_bench("_stalls.py", "bench_stalls")


stalls = _load()
STARTED = time.mktime(time.strptime("2026-12-04 21:48:49", "%Y-%m-%d %H:%M:%S"))
LOG = """\
2026-12-04 21:48:48,900 DEBUG tidelog.stalls: WAL sync of segment 2 took 20.0 ms
2026-12-04 21:48:49,100 INFO tidelog.server: listening on 127.0.0.1:1234
2026-12-04 21:48:50,123 DEBUG tidelog.stalls: WAL sync of segment 3 took 48.4 ms
2026-12-04 21:48:51,000 DEBUG tidelog.stalls: event loop ran 12.0 ms late
2026-12-04 21:48:51,300 DEBUG tidelog.stalls: WAL rolled into segment 4 in 1.5 ms (prepared)
2026-12-04 21:49:10,000 DEBUG tidelog.stalls: object store put took 80.0 ms
"""


def test_lines_in_the_phase_are_placed_by_when_they_began(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(LOG)
    found = stalls.read_stalls(log, STARTED, 10.0)
    # Before the phase (ended before it began) and after it: left out.
    assert [(s.start_s, s.ms, s.what) for s in found] == [
        (1.075, 48.4, "WAL sync of segment 3 took 48.4 ms"),
        (1.988, 12.0, "event loop ran 12.0 ms late"),
        (2.298, 1.5, "WAL rolled into segment 4 in 1.5 ms (prepared)"),
    ]


def test_each_worst_window_gets_what_overlapped_it_or_its_wait(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(LOG)
    found = stalls.read_stalls(log, STARTED, 10.0)
    # Records sent in [1.0, 1.1) waited up to 50 ms: the sync that began at
    # 1.075 held them. Nothing ran in [5.0, 5.12).
    summary = stalls.summarize(found, [[1.0, 50.0], [5.0, 20.0]], 0.1)
    assert summary["worst_window_stalls"] == [
        [1.0, [[1.075, "WAL sync of segment 3 took 48.4 ms"]]],
        [5.0, []],
    ]
    assert summary["loop_late_max_ms"] == 12.0 and summary["loop_late_count"] == 1
    assert summary["wal_slow_syncs"] == 1 and summary["wal_sync_max_ms"] == 48.4
    assert summary["stalls_top"][0] == [1.075, "WAL sync of segment 3 took 48.4 ms"]


def test_the_run_queue_counts_only_what_happened_between_its_two_readings() -> None:
    queue = stalls.RunQueue(os.getpid())
    spun = time.thread_time() + 0.05
    while time.thread_time() < spun:  # 50 ms of this thread's CPU time to count
        pass
    waited = queue.waited(1.0)
    assert set(waited) == {
        "ran_ms_per_s",
        "waited_ms_per_s",
        "main_waited_ms_per_s",
        "main_user_ms_per_s",
        "main_system_ms_per_s",
    }
    assert waited["ran_ms_per_s"] >= 50 - 1  # the 50 ms spun (schedstat and thread_time agree)
    assert 0 <= waited["main_waited_ms_per_s"] <= waited["waited_ms_per_s"]
    # The spin was this (the main) thread's. /proc's stat counts in clock
    # ticks, and the kernel splits the time it ran between user and system
    # by the ticks it sampled in each, since the thread began: over 50 ms
    # only the sum is exact to a tick or two.
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    split = waited["main_user_ms_per_s"], waited["main_system_ms_per_s"]
    assert min(split) >= 0 and sum(split) >= 50 - 2 * tick_ms


def test_lines_with_sizes_and_rates_are_read_by_their_duration(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(
        "2026-12-04 21:48:50,500 DEBUG tidelog.stalls: object store put of 32.00 MiB"
        " (data object) took 275.0 ms, 116.4 MiB/s\n"
        "2026-12-04 21:48:51,500 DEBUG tidelog.stalls: WAL sync of segment 3 took 216.0 ms,"
        " 1024.0 KiB written in 2 groups\n"
        "2026-12-04 21:48:52,500 DEBUG tidelog.stalls: object store delete of a data object"
        " took 30.5 ms\n"
    )
    found = stalls.read_stalls(log, STARTED, 10.0)
    assert [(s.start_s, s.ms) for s in found] == [(1.225, 275.0), (2.284, 216.0), (3.47, 30.5)]
    summary = stalls.summarize(found, [], 0.1)
    assert summary["wal_slow_syncs"] == 1 and summary["wal_sync_max_ms"] == 216.0


def test_the_machine_cpu_counts_this_process_spinning_between_its_two_readings() -> None:
    machine = stalls.MachineCpu()
    spun = time.thread_time() + 0.2
    while time.thread_time() < spun:  # 200 ms of CPU the whole machine counts too
        pass
    # /proc/stat counts in clock ticks (10 ms): the 200 ms, less a tick.
    assert machine.busy_cores(1.0) >= 0.2 - 0.01
