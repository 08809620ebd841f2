"""What held acknowledgements back during a phase: the server's
``tidelog.stalls`` lines (docs/operations.md) read back from its log, each
placed in the phase's time, and laid against the phase's worst windows;
and how long a process's threads waited for a CPU (Linux's schedstat), the
share of a stall that no code of the server's can shorten.

A line is written when the thing it names ended, and says how long it
took; it covers [end - duration, end]. A window's records (by send time)
were held back by whatever overlapped the window or the wait after it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG_LEVEL = "INFO,tidelog.stalls=DEBUG"
"""The server's --log-level: its usual lines, and the stalls."""
_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) DEBUG tidelog\.stalls: (.*?([\d.]+) ms.*)$"
)
TOP = 10
"""The phase's longest stalls listed."""


@dataclass(frozen=True)
class Stall:
    start_s: float
    """Seconds into the phase when it began."""
    ms: float
    what: str

    @property
    def end_s(self) -> float:
        return self.start_s + self.ms / 1000


def read_stalls(log: Path, started_unix: float, seconds: float) -> list[Stall]:
    """The stalls in ``log`` that overlap the phase (started_unix, lasting
    seconds), in the order they ended."""
    found = []
    with open(log, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _LINE.match(line.rstrip("\n"))
            if match is None:
                continue
            stamp, millis, what, ms = match.groups()
            # logging's asctime is local time, to the millisecond.
            ended = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
            duration = float(ms)
            stall = Stall(round(ended - started_unix - duration / 1000, 3), duration, what)
            if stall.end_s >= 0 and stall.start_s <= seconds:
                found.append(stall)
    return found


def summarize(
    stalls: list[Stall], worst_windows: list[list[float]], window_s: float
) -> dict[str, Any]:
    """The loop's longest lag, the WAL's slow syncs, the longest stalls, and
    for each worst window [s, max ms] the stalls that overlap it or the
    wait of its slowest record."""
    late = [s.ms for s in stalls if s.what.startswith("event loop")]
    syncs = [s.ms for s in stalls if s.what.startswith("WAL sync")]
    causes = []
    for start, worst_ms in worst_windows:
        end = start + window_s + worst_ms / 1000
        causes.append([start, [_entry(s) for s in stalls if s.start_s < end and s.end_s > start]])
    return {
        "loop_late_max_ms": max(late, default=0.0),
        "loop_late_count": len(late),
        "wal_slow_syncs": len(syncs),
        "wal_sync_max_ms": max(syncs, default=0.0),
        "stalls_top": [_entry(s) for s in sorted(stalls, key=lambda s: -s.ms)[:TOP]],
        "stalls": [_entry(s) for s in stalls],
        "worst_window_stalls": causes,
    }


class RunQueue:
    """Time a process's threads spent running and waiting to run (ready, on
    a CPU's run queue, while other processes had the CPUs), from
    /proc/PID/task/*/schedstat, between ``__init__`` and ``waited``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = _schedstat(pid)
        self._main_cpu = _thread_cpu_ticks(pid)

    def waited(self, seconds: float) -> dict[str, float]:
        """Per second of the phase: ms waited to run, summed over the
        threads alive at both ends, and the main thread's alone (its event
        loop, for the server); ms run, likewise. Beside them, the main
        thread's CPU split into user and system time (the kernel splits it
        by sampled ticks: right over seconds, not over a few ms): a loop
        writing large answers on loopback also runs the receiving socket's
        TCP work, in its own system time (docs/design/0051)."""
        end = _schedstat(self.pid)
        both = self._start.keys() & end.keys()
        ran = sum(end[t][0] - self._start[t][0] for t in both)
        waited = sum(end[t][1] - self._start[t][1] for t in both)
        main = end.get(self.pid, (0, 0))[1] - self._start.get(self.pid, (0, 0))[1]
        user, system = (
            (after - before) * 1000 / os.sysconf("SC_CLK_TCK")
            for before, after in zip(self._main_cpu, _thread_cpu_ticks(self.pid), strict=True)
        )
        per_s = 1e-6 / seconds  # ns -> ms, per second
        return {
            "ran_ms_per_s": round(ran * per_s, 1),
            "waited_ms_per_s": round(waited * per_s, 1),
            "main_waited_ms_per_s": round(main * per_s, 1),
            "main_user_ms_per_s": round(user / seconds, 1),
            "main_system_ms_per_s": round(system / seconds, 1),
        }


def _thread_cpu_ticks(pid: int) -> tuple[int, int]:
    """The main thread's (user, system) CPU in clock ticks; zeros where not Linux."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0, 0
    return int(fields[11]), int(fields[12])  # utime, stime: the stat's 14th and 15th


class MachineCpu:
    """The cores every process of the machine kept busy (user, nice,
    system, interrupts, steal: not idle, not waiting for I/O), from
    /proc/stat, between ``__init__`` and ``busy_cores``: with the cores
    the bench's own processes used, what everyone else on the machine took."""

    def __init__(self) -> None:
        self._start = _busy_seconds()

    def busy_cores(self, seconds: float) -> float:
        return round(self.busy_seconds() / seconds, 2)

    def busy_seconds(self) -> float:
        """CPU seconds the machine spent busy since this was made."""
        return _busy_seconds() - self._start


def _busy_seconds() -> float:
    """CPU seconds the machine spent busy since boot; 0 where not Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _schedstat(pid: int) -> dict[int, tuple[int, int]]:
    """Each thread's (ns run, ns waited to run); empty where not Linux."""
    found = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                ran, waited, _ = stat.read().split()
        except (OSError, ValueError):
            continue  # gone meanwhile, or no schedstats in this kernel
        found[int(task)] = (int(ran), int(waited))
    return found


def _entry(stall: Stall) -> list[Any]:
    return [stall.start_s, stall.what]


def print_stalls(summary: dict[str, Any], run_queues: dict[str, dict[str, float]]) -> None:
    """``run_queues``: RunQueue.waited() by whose it is (server, client)."""
    waits = ", ".join(
        f"{who} {q['waited_ms_per_s']:.0f} ms/s (main thread {q['main_waited_ms_per_s']:.0f})"
        for who, q in run_queues.items()
    )
    print(f"  waiting for a CPU, summed over threads: {waits}")
    print(
        f"  event loop: {summary['loop_late_count']} lags of 10 ms or more, longest "
        f"{summary['loop_late_max_ms']:.1f} ms; WAL syncs of 20 ms or more: "
        f"{summary['wal_slow_syncs']}, longest {summary['wal_sync_max_ms']:.1f} ms"
    )
    print("  what the server logged in each worst window (s into the phase, tidelog.stalls):")
    for start, stalls in summary["worst_window_stalls"]:
        shown = "; ".join(f"{at:.2f} s {what}" for at, what in stalls[:6]) or "nothing"
        print(f"    {start:g} s: {shown}")
