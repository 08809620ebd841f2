"""The write-ahead log beside the disk's limits and SQLite, measured in one run.

    python bench/wal_bench.py [--quick] [--json] [--dir PATH]

Every figure is a durable append rate (the bytes are fdatasync'ed before the
append returns), so the comparison is like for like:

- tidelog WAL, group commit, at 1 / 16 / 64 concurrent writers;
- naive durable log: one write + fdatasync per record (what a log without
  group commit does) — the floor group commit must beat;
- disk ceiling: 1 MiB writes + fdatasync each — the durable bandwidth limit;
- SQLite, WAL journal, synchronous=FULL, one INSERT + COMMIT per record, the
  same writer counts sharing one connection — what a user would pick instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable

from engine.wal_perf import run_wal_perf


def _timed_loop(seconds: float, step: Callable[[], int]) -> tuple[int, int, float]:
    """Runs step until the time is up: (operations, bytes, elapsed)."""
    operations = written = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        written += step()
        operations += 1
    return operations, written, time.perf_counter() - began


def naive_fsync_per_record(directory: str, record_size: int, seconds: float) -> float:
    fd = os.open(os.path.join(directory, "naive.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    payload = os.urandom(record_size)

    def step() -> int:
        os.write(fd, payload)
        os.fdatasync(fd)
        return record_size

    try:
        operations, _, elapsed = _timed_loop(seconds, step)
    finally:
        os.close(fd)
    return operations / elapsed


def disk_ceiling_mb_per_s(directory: str, seconds: float) -> float:
    fd = os.open(os.path.join(directory, "ceiling.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    chunk = os.urandom(1 << 20)

    def step() -> int:
        os.write(fd, chunk)
        os.fdatasync(fd)
        return len(chunk)

    try:
        _, written, elapsed = _timed_loop(seconds, step)
    finally:
        os.close(fd)
    return written / elapsed / 1e6


def sqlite_appends_per_s(directory: str, writers: int, record_size: int, seconds: float) -> float:
    path = os.path.join(directory, f"sqlite-{writers}.db")
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, stream INTEGER, body BLOB)")
    payload = os.urandom(record_size)
    lock = threading.Lock()
    counts = [0] * writers
    deadline = time.perf_counter() + seconds

    def writer(index: int) -> None:
        while time.perf_counter() < deadline:
            with lock:
                db.execute("BEGIN")
                db.execute("INSERT INTO events (stream, body) VALUES (?, ?)", (index, payload))
                db.execute("COMMIT")
            counts[index] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    db.close()
    return sum(counts) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds in all")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 2.0
    root = tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir)
    rows: list[dict[str, object]] = []
    try:
        ceiling = disk_ceiling_mb_per_s(root, seconds)
        naive = {size: naive_fsync_per_record(root, size, seconds) for size in (1024, 16384)}
        sqlite = {w: sqlite_appends_per_s(root, w, 1024, seconds) for w in (1, 16, 64)}
        for writers, size in ((1, 1024), (16, 1024), (64, 1024), (16, 16384)):
            run_dir = tempfile.mkdtemp(dir=root)
            result = run_wal_perf(run_dir, writers=writers, record_size=size, seconds=seconds)
            shutil.rmtree(run_dir)
            row = result.summary()
            row["x_naive_fsync_per_record"] = round(result.appends_per_second / naive[size], 2)
            if size == 1024:
                row["sqlite_appends_per_second"] = round(sqlite[writers], 1)
                row["x_sqlite"] = round(result.appends_per_second / sqlite[writers], 2)
            row["share_of_disk_ceiling"] = round(result.megabytes_per_second / ceiling, 3)
            rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    report = {
        "disk_ceiling_mb_per_s": round(ceiling, 1),
        "naive_fsync_per_record_appends_per_s": {k: round(v, 1) for k, v in naive.items()},
        "sqlite_appends_per_s": {k: round(v, 1) for k, v in sqlite.items()},
        "tidelog_wal": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"disk ceiling (1 MiB write + fdatasync): {ceiling:.1f} MB/s")
    print(
        "naive durable log (write + fdatasync per record): "
        + ", ".join(f"{v:,.0f}/s at {k} B" for k, v in naive.items())
    )
    print(
        "SQLite WAL, synchronous=FULL, commit per record: "
        + ", ".join(f"{v:,.0f}/s with {k} writers" for k, v in sqlite.items())
    )
    print()
    header = (
        f"{'writers':>7} {'record':>7} {'appends/s':>11} {'MB/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'per sync':>8} {'x naive':>8} {'x SQLite':>8} {'of ceiling':>10}"
    )
    print("tidelog WAL (durability=fsync)")
    print(header)
    for row in rows:
        sqlite_ratio = row.get("x_sqlite", "-")
        print(
            f"{row['writers']:>7} {row['record_size']:>7} {row['appends_per_second']:>11,.0f} "
            f"{row['megabytes_per_second']:>7.1f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['appends_per_sync']:>8.1f} {row['x_naive_fsync_per_record']:>8.2f} "
            f"{sqlite_ratio!s:>8} {row['share_of_disk_ceiling']:>10.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
