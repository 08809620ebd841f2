"""What a WAL roll costs the acknowledgements behind it: the log alone, paced.

    python bench/wal_roll_bench.py [--rate-mb 50] [--seconds 10]
                                   [--segment-mb 8] [--quick] [--json] [--dir PATH]

One thread appends 1 KiB records at ``--rate-mb`` MiB/s (a token bucket)
to a WriteAheadLog under the ``fsync`` policy, with ``--segment-mb``
segments so that it rolls many times; it trims behind itself as an
engine's uploads do, so segments are recycled and made ahead as in
service. Each roll's duration comes from the log's own stall line
(``tidelog.stalls``, "WAL rolled into segment ..."), and with it whether
the roll went into a segment made ahead.

Figures: ``roll_p50_ms`` / ``roll_p90_ms`` / ``roll_max_ms``; ``ack_p50_ms``
/ ``ack_p99_ms`` / ``ack_p999_ms``, from an append's submit to its future's
completion; ``acks_held_per_roll``, the appends whose wait overlapped a
roll, per roll; and the ratios ``roll_vs_ack_p50`` and
``held_ack_p50_vs_ack_p50`` (the median wait of those appends beside
everyone's), read against each other in one run. Run it on two checkouts
in turn to compare their rolls (the load average is printed beside).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness

from wal import Position, WriteAheadLog

RECORD_BYTES = 1024
MiB = 1024 * 1024


class RollLines(logging.Handler):
    """Each roll's end (monotonic seconds), duration (ms) and kind."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.rolls: list[tuple[float, float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("WAL rolled") and isinstance(record.args, tuple):
            _, ms, kind = record.args
            self.rolls.append((time.monotonic(), float(ms), str(kind)))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def paced_appends(
    log: WriteAheadLog, rate_mb: float, seconds: float, segment_bytes: int
) -> list[tuple[float, float]]:
    """Appends at the rate for the time; each append's (submitted, acknowledged)."""
    payload = os.urandom(RECORD_BYTES)
    spans: list[tuple[float, float]] = []
    interval = RECORD_BYTES / (rate_mb * MiB)
    started = time.monotonic()
    due = started
    trimmed_at = 0
    count = int(seconds / interval)
    futures: list[Future[Position]] = []
    for index in range(count):
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        due += interval
        submitted = time.monotonic()
        future = log.submit(payload)
        future.add_done_callback(
            lambda _, at=submitted: spans.append((at, time.monotonic()))  # type: ignore[misc]
        )
        futures.append(future)
        if (index + 1) * RECORD_BYTES - trimmed_at >= segment_bytes:
            log.trim(futures[-2].result(timeout=30))  # behind itself, as uploads trim
            trimmed_at = (index + 1) * RECORD_BYTES
    for future in futures:
        future.result(timeout=30)
    return spans


def run(directory: Path, rate_mb: float, seconds: float, segment_mb: float) -> dict[str, Any]:
    lines = RollLines()
    stalls = logging.getLogger("tidelog.stalls")
    stalls.addHandler(lines)
    stalls.setLevel(logging.DEBUG)
    segment_bytes = int(segment_mb * MiB)
    try:
        with WriteAheadLog(directory / "wal", segment_bytes=segment_bytes) as log:
            spans = paced_appends(log, rate_mb, seconds, segment_bytes)
    finally:
        stalls.removeHandler(lines)
    rolls = lines.rolls[1:]  # the first has no segment made ahead yet
    acks = [(done - submitted) * 1000 for submitted, done in spans]
    held = [
        (done - submitted) * 1000
        for submitted, done in spans
        if any(submitted < end and done > end - ms / 1000 for end, ms, _ in rolls)
    ]
    durations = [ms for _, ms, _ in rolls]
    ack_p50 = statistics.median(acks)
    return {
        "rate_mb": rate_mb,
        "seconds": seconds,
        "segment_mb": segment_mb,
        "wal_module": sys.modules["wal"].__file__,
        "load_average": list(os.getloadavg()),
        "appends": len(acks),
        "rolls": len(rolls),
        "rolls_made_ahead": sum(1 for *_, kind in rolls if kind == "prepared"),
        "roll_p50_ms": round(statistics.median(durations), 3) if durations else 0.0,
        "roll_p90_ms": round(quantile(durations, 0.9), 3),
        "roll_max_ms": round(max(durations, default=0.0), 3),
        "ack_p50_ms": round(ack_p50, 3),
        "ack_p99_ms": round(quantile(acks, 0.99), 3),
        "ack_p999_ms": round(quantile(acks, 0.999), 3),
        "acks_held_per_roll": round(len(held) / len(rolls), 1) if rolls else 0.0,
        "roll_vs_ack_p50": round(statistics.median(durations) / ack_p50, 3) if durations else 0.0,
        "held_ack_p50_vs_ack_p50": round(statistics.median(held) / ack_p50, 3) if held else 0.0,
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"WAL rolls at {results['rate_mb']} MiB/s of 1 KiB records, "
        f"{results['segment_mb']} MiB segments, {results['seconds']} s "
        f"(load average {results['load_average'][0]:.2f}; {results['wal_module']})"
    )
    print(f"  rolls: {results['rolls']} ({results['rolls_made_ahead']} into a segment made ahead)")
    print(
        f"  roll ms: p50 {results['roll_p50_ms']}  p90 {results['roll_p90_ms']}  "
        f"max {results['roll_max_ms']}  (x{results['roll_vs_ack_p50']} the ack p50)"
    )
    print(
        f"  ack ms: p50 {results['ack_p50_ms']}  p99 {results['ack_p99_ms']}  "
        f"p99.9 {results['ack_p999_ms']}"
    )
    print(
        f"  acks held per roll: {results['acks_held_per_roll']}  "
        f"(their p50 x{results['held_ack_p50_vs_ack_p50']} everyone's)"
    )


def main() -> None:
    parser = _harness.parser(__doc__, "2 s at 10 MiB/s with 1 MiB segments")
    parser.add_argument("--rate-mb", type=float, default=50.0, help="MiB/s appended (50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (10)")
    parser.add_argument("--segment-mb", type=float, default=8.0, help="segment size (8)")
    parser.add_argument("--dir", default=None, help="scratch parent directory (a temp dir)")
    args = parser.parse_args()
    rate, seconds, segment = args.rate_mb, args.seconds, args.segment_mb
    if args.quick:
        rate, seconds, segment = 10.0, 2.0, 1.0
    with _harness.scratch(args.dir, "tidelog-wal-roll-bench-") as directory:
        results = run(directory, rate, seconds, segment)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
