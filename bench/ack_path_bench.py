"""Where a WAL acknowledgement's time goes, stage by stage, from an event loop.

    python bench/ack_path_bench.py [--appends 1000] [--rounds 3] [--quick] [--json] [--dir PATH]

An event loop appends 256 KiB to a WriteAheadLog (``fsync``) every 5 ms, as
the WAL sees a partition produced at 50 MiB/s with linger.ms=5, and awaits
each acknowledgement before the next. The segment's write and sync are
wrapped to note when each begins and ends, and on which thread, so each
append's time splits into:

- ``to_writer``: from submit on the loop to the writer thread's write;
- ``write``: the pwritev into the page cache;
- ``to_sync``: from the write's end to the fdatasync's start (a hand-off to
  the sync thread, or none when the writer syncs itself);
- ``sync``: the fdatasync: the disk's part, the baseline of this run;
- ``to_loop``: from the sync's end to the loop's future resolved (the
  commit hook, the call into the loop, the loop's wake-up).

Reported per stage: p50 and p99 in ms (medians over the rounds), which
thread synced (``synced_by``), and ``ack_vs_sync_p50`` / ``_p99``: the
whole acknowledgement over the fdatasync alone (1 would be the disk only).

Then the same appends into a segment the page cache does not hold, as a
recycled segment is after a restart: its bytes written out beforehand (a
recycled file's or a spare's are; a fresh preallocation's are not, and
reads of them cost nothing), its pages dropped before each append
(``POSIX_FADV_DONTNEED``). Rounds alternate between writes that end on a
page boundary (wal/segment.py pads them with zeros) and writes that do not
(the padding turned off), and ``evicted_write_padded_vs_not_p50`` /
``evicted_ack_padded_vs_not_p50`` are the medians' ratios: a write ending
inside an uncached page makes the kernel read that page first.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _harness

import wal.segment
from wal import WriteAheadLog
from wal.segment import SegmentWriter

PAYLOAD = 256 * 1024
"""Bytes of one group commit at 50 MiB/s with linger.ms=5."""
INTERVAL_S = 0.005
STAGES = ("to_writer", "write", "to_sync", "sync", "to_loop", "ack")


class _Marks:
    """The last write's and sync's start and end, and the syncing thread."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.synced_by = ""

    def install(self) -> None:
        write, sync = SegmentWriter.write, SegmentWriter.sync
        marks = self

        def noted_write(segment: SegmentWriter, buffers: list[bytes | memoryview]) -> None:
            marks.values["write_start"] = time.perf_counter()
            write(segment, buffers)
            marks.values["write_end"] = time.perf_counter()

        def noted_sync(segment: SegmentWriter) -> None:
            marks.values["sync_start"] = time.perf_counter()
            sync(segment)
            marks.values["sync_end"] = time.perf_counter()
            marks.synced_by = threading.current_thread().name

        SegmentWriter.write = noted_write  # type: ignore[method-assign]
        SegmentWriter.sync = noted_sync  # type: ignore[method-assign]


def _write_out(directory: Path) -> None:
    """Writes every segment's bytes past its header, as a recycled file's are."""
    for path in directory.glob("*.wal"):
        fd = os.open(path, os.O_WRONLY)
        try:
            size, chunk = os.fstat(fd).st_size, bytes(1 << 20)
            for offset in range(1 << 20, size, 1 << 20):
                os.pwrite(fd, chunk[: size - offset], offset)
            os.fsync(fd)
        finally:
            os.close(fd)


def _evict(directory: Path) -> None:
    """Drops the segments' clean pages from the page cache."""
    for path in directory.glob("*.wal"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


async def one_round(
    directory: Path, appends: int, marks: _Marks, evicted: bool = False
) -> dict[str, Any]:
    log = WriteAheadLog(directory, segment_bytes=max(64 << 20, 2 * appends * PAYLOAD))
    if evicted:
        _write_out(directory)
        _evict(directory)
    payload = bytes(PAYLOAD)
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    synced_by: Counter[str] = Counter()
    try:
        for _ in range(appends):
            marks.values.clear()
            submitted = time.perf_counter()
            await log.submit_async(payload)
            acknowledged = time.perf_counter()
            m = marks.values
            spans = {
                "to_writer": m["write_start"] - submitted,
                "write": m["write_end"] - m["write_start"],
                "to_sync": m["sync_start"] - m["write_end"],
                "sync": m["sync_end"] - m["sync_start"],
                "to_loop": acknowledged - m["sync_end"],
                "ack": acknowledged - submitted,
            }
            for stage, seconds in spans.items():
                stages[stage].append(seconds * 1000)
            synced_by[marks.synced_by] += 1
            await asyncio.sleep(INTERVAL_S)
    finally:
        log.close()
    figures: dict[str, Any] = {}
    for stage, values in stages.items():
        values.sort()
        figures[f"{stage}_p50_ms"] = values[len(values) // 2]
        figures[f"{stage}_p99_ms"] = values[min(len(values) - 1, int(0.99 * len(values)))]
    figures["synced_by"] = dict(synced_by)
    return figures


def run(directory: Path, rounds: int, appends: int) -> dict[str, Any]:
    marks = _Marks()
    marks.install()
    runs = []
    for number in range(rounds):
        round_directory = directory / f"round-{number}"
        runs.append(asyncio.run(one_round(round_directory, appends, marks)))
    results: dict[str, Any] = {
        "rounds": rounds,
        "appends": appends,
        "payload_bytes": PAYLOAD,
        "interval_ms": INTERVAL_S * 1000,
        "load_average": round(os.getloadavg()[0], 2),
        **_harness.cpus(),
    }
    for stage in STAGES:
        for q in ("p50", "p99"):
            key = f"{stage}_{q}_ms"
            results[key] = round(statistics.median(r[key] for r in runs), 3)
    synced_by: Counter[str] = Counter()
    for r in runs:
        synced_by.update(r["synced_by"])
    results["synced_by"] = dict(synced_by)
    for q in ("p50", "p99"):
        sync = results[f"sync_{q}_ms"]
        results[f"ack_vs_sync_{q}"] = round(results[f"ack_{q}_ms"] / sync, 3) if sync else None
    results.update(evicted_rounds(directory, rounds, appends, marks))
    return results


def evicted_rounds(directory: Path, rounds: int, appends: int, marks: _Marks) -> dict[str, Any]:
    """Padded and unpadded rounds in turns, into evicted segments."""
    page_bytes = wal.segment.PAGE_BYTES
    runs: dict[str, list[dict[str, Any]]] = {"padded": [], "unpadded": []}
    try:
        for number in range(rounds):
            for kind in ("padded", "unpadded"):
                # A "page" of one byte: every write ends on one, so none is padded.
                wal.segment.PAGE_BYTES = page_bytes if kind == "padded" else 1
                round_directory = directory / f"evicted-{kind}-{number}"
                runs[kind].append(
                    asyncio.run(one_round(round_directory, appends, marks, evicted=True))
                )
    finally:
        wal.segment.PAGE_BYTES = page_bytes
    results: dict[str, Any] = {}
    for kind, kind_runs in runs.items():
        for stage in ("write", "ack"):
            for q in ("p50", "p99"):
                key = f"{stage}_{q}_ms"
                results[f"evicted_{kind}_{key}"] = round(
                    statistics.median(r[key] for r in kind_runs), 3
                )
    for stage in ("write", "ack"):
        unpadded = results[f"evicted_unpadded_{stage}_p50_ms"]
        padded = results[f"evicted_padded_{stage}_p50_ms"]
        results[f"evicted_{stage}_padded_vs_not_p50"] = (
            round(padded / unpadded, 3) if unpadded else None
        )
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"WAL appends of {results['payload_bytes'] // 1024} KiB every "
        f"{results['interval_ms']:g} ms from an event loop, {results['appends']} per round, "
        f"{results['rounds']} rounds, medians (load average {results['load_average']})"
    )
    print(f"{'stage':<12} {'p50 ms':>8} {'p99 ms':>8}")
    for stage in STAGES:
        print(f"{stage:<12} {results[f'{stage}_p50_ms']:8.3f} {results[f'{stage}_p99_ms']:8.3f}")
    print(f"synced by: {results['synced_by']}")
    print(f"ack / sync: p50 {results['ack_vs_sync_p50']}  p99 {results['ack_vs_sync_p99']}")
    print("segment pages evicted before each append, writes padded to a page end or not:")
    for kind in ("padded", "unpadded"):
        cells = "  ".join(
            f"{stage} p50 {results[f'evicted_{kind}_{stage}_p50_ms']:.3f}"
            f" p99 {results[f'evicted_{kind}_{stage}_p99_ms']:.3f}"
            for stage in ("write", "ack")
        )
        print(f"  {kind:<9} {cells}")
    print(
        f"  padded / not, p50: write {results['evicted_write_padded_vs_not_p50']}"
        f"  ack {results['evicted_ack_padded_vs_not_p50']}"
    )


def main() -> None:
    parser = _harness.parser(__doc__, quick="a smoke test: one round of 100 appends")
    parser.add_argument("--appends", type=int, default=1000, help="appends per round (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    rounds, appends = (1, 100) if args.quick else (args.rounds, args.appends)
    with _harness.scratch(args.dir, "tidelog-ack-path-bench-") as directory:
        results = run(directory, rounds, appends)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
