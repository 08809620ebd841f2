"""Upload-sized objects put by the local object store past the page cache, beside through it.

    python bench/object_put_bench.py [--rounds 6] [--objects 8] [--object-mb 32]
                                     [--rest 3] [--quick] [--json] [--dir PATH]

Each round puts ``--objects`` objects of ``--object-mb`` (the uploader's
32 MiB), each in parts of about 1,000,000 bytes (as the uploader hands
over a produce request's batches), with a ``LocalStore`` two ways, round
by round in turns (so a machine that slows down part-way slows both):

- ``direct``: as the store puts now, past the page cache (O_DIRECT
  through a bounce buffer, s3stream/store/direct_writes.py);
- ``buffered``: the same store with O_DIRECT off, as it put before
  (writes a MiB at a time, written out and their pages given back:
  docs/design/0023).

A round's objects are deleted at its end; ``--rest`` seconds pass before
each round, so that no round writes into memory the one before has just
freed. Reported per way: the putting thread's CPU per MiB (user and
system, from the thread's run time and ``getrusage``: the kernel's page-cache
work is the thread's system time) and MiB/s, medians over the rounds,
and ``direct_vs_buffered_cpu``, the ratio of the CPU medians. Each
round then reads its objects back a MiB a range (``read_ms_per_mib``,
``direct_vs_buffered_read``): what a catch-up reader past the log cache
pays for an object just uploaded. Where the
filesystem refuses O_DIRECT, ``direct`` is the buffered writer and the
ratio near 1 (``direct_bytes`` 0 says so).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import _harness

from s3stream.store import direct_writes
from s3stream.store.local import LocalStore

MIB = 1 << 20
PART_BYTES = 1_000_000
WAYS = ("direct", "buffered")


def _thread_cpu() -> tuple[float, float, float]:
    """This thread's CPU seconds: in all (its run time, to the nanosecond),
    user and system (``getrusage``, within a scheduler tick). The stat
    file's clock ticks (10 ms) would count a direct round's 70 ms as 60 or
    80."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return time.thread_time(), usage.ru_utime, usage.ru_stime


def _round(root: Path, way: str, objects: int, object_bytes: int) -> dict[str, float]:
    parts = [os.urandom(PART_BYTES) for _ in range(object_bytes // PART_BYTES)]
    store = LocalStore(root)
    saved = direct_writes._O_DIRECT
    if way == "buffered":
        direct_writes._O_DIRECT = 0
    try:
        cpu, user, system = _thread_cpu()
        started = time.perf_counter()
        for index in range(objects):
            store.put(f"objects/{way}-{index}", parts)
        seconds = time.perf_counter() - started
        cpu_after, user_after, system_after = _thread_cpu()
    finally:
        direct_writes._O_DIRECT = saved
    mib = objects * len(parts) * PART_BYTES / MIB
    read_seconds = _read_back(store, [f"objects/{way}-{index}" for index in range(objects)])
    for index in range(objects):
        store.delete(f"objects/{way}-{index}")
    return {
        "user_ms_per_mib": (user_after - user) * 1000 / mib,
        "system_ms_per_mib": (system_after - system) * 1000 / mib,
        "cpu_ms_per_mib": (cpu_after - cpu) * 1000 / mib,
        "mb_s": mib / seconds,
        "read_ms_per_mib": read_seconds * 1000 / mib,
        "direct_bytes": store.bytes_written_direct,
    }


def _read_back(store: LocalStore, keys: list[str]) -> float:
    """Seconds to read ``keys`` back a MiB a range, as a catch-up reader
    past the log cache reads an object just uploaded: from the disk either
    way if the put left none of its pages in the page cache."""
    started = time.perf_counter()
    for key in keys:
        size = store.head(key).size
        for start in range(0, size, MIB):
            store.get(key, start, start + MIB)
    return time.perf_counter() - started


def run(scratch: Path, rounds: int, objects: int, object_mb: int, rest: float) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    for _ in range(rounds):
        for way in WAYS:
            time.sleep(rest)
            runs[way].append(_round(scratch, way, objects, object_mb * MIB))
    results: dict[str, Any] = {
        "rounds": rounds,
        "objects": objects,
        "object_mb": object_mb,
        "load_average": round(os.getloadavg()[0], 2),
        **_harness.cpus(),
    }
    for way in WAYS:
        for key in (
            "cpu_ms_per_mib",
            "user_ms_per_mib",
            "system_ms_per_mib",
            "mb_s",
            "read_ms_per_mib",
        ):
            values = [one[key] for one in runs[way]]
            results[f"{way}_{key}"] = round(statistics.median(values), 3)
            results[f"{way}_{key}_runs"] = [round(v, 3) for v in values]
    results["direct_bytes"] = int(runs["direct"][-1]["direct_bytes"])
    results["direct_vs_buffered_cpu"] = round(
        results["direct_cpu_ms_per_mib"] / results["buffered_cpu_ms_per_mib"], 3
    )
    results["direct_vs_buffered_read"] = round(
        results["direct_read_ms_per_mib"] / results["buffered_read_ms_per_mib"], 3
    )
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['rounds']} rounds of {results['objects']} objects of"
        f" {results['object_mb']} MiB (load {results['load_average']})"
    )
    print(
        f"{'way':10} {'CPU ms/MiB':>11} {'user':>7} {'system':>7} {'MiB/s':>8}"
        f" {'read ms/MiB':>12}  runs (CPU; read)"
    )
    for way in WAYS:
        print(
            f"{way:10} {results[f'{way}_cpu_ms_per_mib']:11.3f}"
            f" {results[f'{way}_user_ms_per_mib']:7.3f}"
            f" {results[f'{way}_system_ms_per_mib']:7.3f}"
            f" {results[f'{way}_mb_s']:8.1f} {results[f'{way}_read_ms_per_mib']:12.3f}"
            f"  {results[f'{way}_cpu_ms_per_mib_runs']}; {results[f'{way}_read_ms_per_mib_runs']}"
        )
    print(
        f"direct_vs_buffered_cpu {results['direct_vs_buffered_cpu']}"
        f", direct_vs_buffered_read {results['direct_vs_buffered_read']}"
        f" (direct bytes in a round: {results['direct_bytes']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each way (6)")
    parser.add_argument("--objects", type=int, default=None, help="objects a round (8)")
    parser.add_argument("--object-mb", type=int, default=32, help="MiB an object (32)")
    parser.add_argument("--rest", type=float, default=None, help="seconds before a round (3)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 objects, 0.5 s rests")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 6)
    objects = args.objects if args.objects is not None else (2 if args.quick else 8)
    rest = args.rest if args.rest is not None else (0.5 if args.quick else 3.0)
    with _harness.scratch(args.dir, "tidelog-object-put-bench-") as scratch:
        results = run(scratch, rounds, objects, args.object_mb, rest)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
