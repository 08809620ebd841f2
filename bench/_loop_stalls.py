"""The event loop's stalls a server's watchdog wrote (bench/loop_watch/,
``scale_bench.py --watch-loop``), counted by what they were.

A stall is a time the loop's millisecond beat was more than 4 ms late.
Counted in a window: those of 10 ms or more (``stalls``), those of them
with ``READ_AHEAD_CROWD`` or more read-ahead threads (``s3stream-read``)
running or waiting for a CPU (``read_ahead``: the replay's loads the
scheduler weighs each on its own), and the most CPU the loop ran in one
(``loop_cpu_max_ms``: a long callback of the loop's own shows as a stall
whose CPU is near its length).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LONG_MS = 10.0
READ_AHEAD_CROWD = 5
"""Read-ahead threads at work in one stall from which it counts as theirs."""
BUSY_MS = 1.0
"""A thread that ran or waited for a CPU this long in a stall was at work."""


def read(prefix: str, pid: int) -> list[dict[str, Any]]:
    """The stalls the server ``pid`` wrote (none if it wrote no file)."""
    path = Path(f"{prefix}.{pid}.jsonl")
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _read_ahead_threads(stall: dict[str, Any]) -> int:
    return sum(
        1
        for name, (ran, waited) in stall["sched_ms"].items()
        if name.startswith("s3stream-read") and ran + waited >= BUSY_MS
    )


def counted(stalls: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """The stalls that began within [start, end) (wall clock), counted."""
    inside = [s for s in stalls if start <= s["t"] < end]
    long = [s for s in inside if s["ms"] >= LONG_MS]
    return {
        "stalls": len(long),
        "read_ahead": sum(1 for s in long if _read_ahead_threads(s) >= READ_AHEAD_CROWD),
        "longest_ms": max((s["ms"] for s in inside), default=0.0),
        "loop_cpu_max_ms": max((s["cpu_ms"].get(s["loop"], 0.0) for s in inside), default=0.0),
    }
