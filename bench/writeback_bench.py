"""The WAL's sync latency beside a background writer of large files on the same disk.

    python bench/writeback_bench.py [--rounds 3] [--seconds 8] [--object-mb 32]
                                    [--quick] [--json] [--dir PATH]

One thread does what the WAL does at 50 MiB/s with linger.ms=5: writes
256 KiB into a preallocated, written file and fdatasyncs it, every 5 ms.
Another does what the local object store does at that rate: writes a new
file of ``--object-mb`` every 0.6 s, a MiB at a time, each MiB flushed
before the next, then fsyncs it. The MiB is flushed in one of two ways,
round by round in turns (so a machine that slows down part-way slows both):

- ``fdatasync``: an fdatasync per MiB, as the store did (on ext4 each
  commits the journal and flushes the disk's cache: a file still growing
  has new blocks and a new size);
- ``write_back``: wal/writeback.py's sync_file_range per MiB (written out,
  no journal commit, no cache flush), as it does now.

Reported per way: the WAL sync's p50, p99, p99.9 and max (medians over the
rounds), and ``write_back_vs_fdatasync_<q>``, the ratio of the medians
(below 1: the WAL waits less beside write_back).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness

from wal.writeback import write_back

MIB = 1 << 20
WAL_WRITE = 256 * 1024
"""Bytes of one group commit at 50 MiB/s with linger.ms=5."""
WAL_INTERVAL_S = 0.005
WAL_FILE = 64 * MIB
OBJECT_INTERVAL_S = 0.6
"""How often a 32 MiB object is due at 50 MiB/s."""
QUANTILES = {"p50": 0.5, "p99": 0.99, "p999": 0.999, "max": 1.0}
WAYS: dict[str, Callable[[int, int, int], None]] = {
    "fdatasync": lambda fd, offset, length: os.fdatasync(fd),
    "write_back": write_back,
}


def write_objects(
    directory: Path, object_mb: int, flush: Callable[[int, int, int], None], stop: threading.Event
) -> int:
    """Writes objects until ``stop``, flushing each MiB with ``flush``; how many."""
    data = memoryview(os.urandom(object_mb * MIB))
    written = 0
    while not stop.is_set():
        path = directory / f"object-{written % 3}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for offset in range(0, len(data), MIB):
                os.pwrite(fd, data[offset : offset + MIB], offset)
                flush(fd, offset, MIB)
            os.fsync(fd)
        finally:
            os.close(fd)
        written += 1
        stop.wait(OBJECT_INTERVAL_S)
    return written


def wal_syncs(directory: Path, seconds: float) -> list[float]:
    """The WAL's part: write + fdatasync every WAL_INTERVAL_S; each one's ms."""
    path = directory / "wal"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies = []
    try:
        os.pwrite(fd, bytes(WAL_FILE), 0)  # written blocks, as a recycled segment's
        os.fsync(fd)
        chunk = os.urandom(WAL_WRITE)
        offset = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            os.pwrite(fd, chunk, offset)
            os.fdatasync(fd)
            latencies.append((time.perf_counter() - started) * 1000)
            offset = (offset + WAL_WRITE) % WAL_FILE
            time.sleep(WAL_INTERVAL_S)
    finally:
        os.close(fd)
        path.unlink()
    return latencies


def one_round(directory: Path, way: str, seconds: float, object_mb: int) -> dict[str, float]:
    stop = threading.Event()
    objects: list[int] = []
    writer = threading.Thread(
        target=lambda: objects.append(write_objects(directory, object_mb, WAYS[way], stop))
    )
    writer.start()
    try:
        latencies = sorted(wal_syncs(directory, seconds))
    finally:
        stop.set()
        writer.join()
    for leftover in directory.glob("object-*"):
        leftover.unlink()
    last = len(latencies) - 1
    figures = {name: latencies[min(last, int(q * len(latencies)))] for name, q in QUANTILES.items()}
    return {**figures, "objects": objects[0], "syncs": len(latencies)}


def run(directory: Path, rounds: int, seconds: float, object_mb: int) -> dict[str, Any]:
    by_way: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        for way in WAYS:  # in turns: a machine that slows down slows both
            by_way[way].append(one_round(directory, way, seconds, object_mb))
    results: dict[str, Any] = {
        "rounds": rounds,
        "seconds": seconds,
        "object_mb": object_mb,
        "load_average": round(os.getloadavg()[0], 2),
        **_harness.cpus(),
    }
    for way, runs in by_way.items():
        for name in QUANTILES:
            results[f"{way}_{name}_ms"] = round(statistics.median(r[name] for r in runs), 3)
        results[f"{way}_objects"] = sum(int(r["objects"]) for r in runs)
    for name in QUANTILES:
        before = results[f"fdatasync_{name}_ms"]
        results[f"write_back_vs_fdatasync_{name}"] = (
            round(results[f"write_back_{name}_ms"] / before, 3) if before else None
        )
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"WAL write of {WAL_WRITE // 1024} KiB + fdatasync every {WAL_INTERVAL_S * 1000:g} ms, "
        f"beside {results['object_mb']} MiB objects every {OBJECT_INTERVAL_S:g} s; "
        f"{results['rounds']} rounds of {results['seconds']:g} s per way, medians "
        f"(load average {results['load_average']})"
    )
    print(f"{'each MiB of an object':<24} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>8}  objects")
    for way in WAYS:
        cells = " ".join(f"{results[f'{way}_{name}_ms']:8.2f}" for name in QUANTILES)
        print(f"{way:<24} {cells}  {results[f'{way}_objects']}")
    ratios = "  ".join(f"{name} {results[f'write_back_vs_fdatasync_{name}']}" for name in QUANTILES)
    print(f"write_back / fdatasync: {ratios}")


def main() -> None:
    parser = _harness.parser(__doc__, quick="a smoke test: one round of 2 s, 8 MiB objects")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per way (3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of a round (8)")
    parser.add_argument("--object-mb", type=int, default=32, help="MiB per object (32)")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    rounds, seconds, object_mb = (
        (1, 2.0, 8) if args.quick else (args.rounds, args.seconds, args.object_mb)
    )
    with _harness.scratch(args.dir, "tidelog-writeback-bench-") as directory:
        results = run(directory, rounds, seconds, object_mb)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
