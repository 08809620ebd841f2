"""The write-ahead log beside the disk's limits and SQLite, measured in one run.

    tidelog wal-bench --compare [--quick] [--json] [--data-dir PATH]
    python bench/wal_bench.py [--quick] [--json] [--dir PATH]

Every figure is a durable rate (bytes are fdatasync'ed before the write is
acknowledged), on the same disk, in the same run:

- raw: large sequential writes from Python with one fdatasync per 1 MiB and
  per 16 MiB — what the disk can do;
- naive durable log: one write + fdatasync per 1 KiB record — what a log
  without group commit gets;
- SQLite, WAL journal, synchronous=FULL, 100 rows of the same payloads per
  transaction — what a database-first design gets;
- tidelog's WAL, durability=fsync, 1 KiB and 16 KiB payloads, 1 / 8 / 64
  concurrent appenders: asyncio tasks (how the wire server appends) and
  threads (how embedded code may), one record per append;
- tidelog's WAL, batch appends (`append_many`) of 100 1 KiB records per call,
  as SQLite's 100 rows per transaction, from 1 and 8 appenders;
- the disk under that batch's shape: one pwrite of a batch's record bytes
  (headers included) and one fdatasync per call, into a file already
  written (no extent to allocate or convert), counted by payload as the
  batch appender is: what a lone batch appender could get at no cost of
  its own.

`--json` prints one JSON object; its headline keys are raw_mb_s,
wal_mb_s_16k and wal_mb_s_1k (64 asyncio appenders), sqlite_mb_s_1k,
wal_mb_s_1k_batch (one asyncio appender, 100 records per call),
disk_mb_s_1k_batch (the disk under the same calls), and the ratios
wal16k_vs_raw, wal1k_vs_sqlite (per-append), wal1k_batch_vs_sqlite and
wal1k_batch_vs_disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from typing import Any

from engine.cli.wal_perf import MODES, run_wal_perf
from wal.format import RECORD_HEADER_SIZE

SIZES = (1024, 16384)
APPENDERS = (1, 8, 64)
BATCH = 100
"""Records per batch append: SQLite's rows per transaction here."""
BATCH_APPENDERS = (1, 8)
TARGETS = {"wal16k_vs_raw": 0.8, "wal1k_vs_sqlite": 1.5, "wal1k_batch_vs_sqlite": 1.5}


def _timed_loop(seconds: float, step: Callable[[], int]) -> tuple[int, float]:
    """Runs step until the time is up: (bytes it reports, elapsed)."""
    written = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        written += step()
    return written, time.perf_counter() - began


def durable_write_mb_s(directory: str, chunk_size: int, seconds: float) -> float:
    """Sequential appends of chunk_size bytes, each followed by fdatasync."""
    path = os.path.join(directory, f"raw-{chunk_size}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    chunk = os.urandom(chunk_size)

    def step() -> int:
        os.write(fd, chunk)
        os.fdatasync(fd)
        return chunk_size

    try:
        written, elapsed = _timed_loop(seconds, step)
    finally:
        os.close(fd)
        os.unlink(path)
    return written / elapsed / 1e6


OVERWRITTEN_FILE_BYTES = 32 << 20
"""The file the batch-shaped writes go round: written once, then overwritten."""


def overwrite_mb_s(directory: str, payload_size: int, records: int, seconds: float) -> float:
    """A batch append's writes at the disk: each call one pwrite of the
    batch's record bytes (RECORD_HEADER_SIZE each, then the payload) into a
    file already written and synced, then fdatasync; payload bytes counted."""
    path = os.path.join(directory, "overwritten")
    chunk = os.urandom((RECORD_HEADER_SIZE + payload_size) * records)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    position = 0

    def step() -> int:
        nonlocal position
        if position + len(chunk) > OVERWRITTEN_FILE_BYTES:
            position = 0
        os.pwrite(fd, chunk, position)
        os.fdatasync(fd)
        position += len(chunk)
        return payload_size * records

    try:
        zeros = bytes(1 << 20)
        for offset in range(0, OVERWRITTEN_FILE_BYTES, len(zeros)):
            os.pwrite(fd, zeros, offset)
        os.fsync(fd)
        written, elapsed = _timed_loop(seconds, step)
    finally:
        os.close(fd)
        os.unlink(path)
    return written / elapsed / 1e6


def sqlite_mb_s(directory: str, record_size: int, seconds: float, per_transaction: int) -> float:
    path = os.path.join(directory, f"sqlite-{record_size}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, stream INTEGER, body BLOB)")
    rows = [(0, os.urandom(record_size))] * per_transaction

    def step() -> int:
        db.execute("BEGIN")
        db.executemany("INSERT INTO events (stream, body) VALUES (?, ?)", rows)
        db.execute("COMMIT")
        return record_size * per_transaction

    try:
        written, elapsed = _timed_loop(seconds, step)
    finally:
        db.close()
    return written / elapsed / 1e6


def wal_rows(root: str, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        for size in SIZES:
            for appenders in APPENDERS:
                directory = tempfile.mkdtemp(dir=root)
                result = run_wal_perf(
                    directory, writers=appenders, record_size=size, seconds=seconds, mode=mode
                )
                shutil.rmtree(directory)
                rows.append(result.summary())
        for appenders in BATCH_APPENDERS:
            directory = tempfile.mkdtemp(dir=root)
            result = run_wal_perf(
                directory,
                writers=appenders,
                record_size=1024,
                seconds=seconds,
                mode=mode,
                batch=BATCH,
            )
            shutil.rmtree(directory)
            rows.append(result.summary())
    return rows


def measure(root: str, seconds: float) -> dict[str, Any]:
    raw = {mib: durable_write_mb_s(root, mib << 20, seconds) for mib in (1, 16)}
    naive = durable_write_mb_s(root, 1024, seconds)
    sqlite = {size: sqlite_mb_s(root, size, seconds, 100) for size in SIZES}
    disk_batch = overwrite_mb_s(root, 1024, BATCH, seconds)
    rows = wal_rows(root, seconds)

    def wal(size: int, appenders: int, mode: str = "asyncio", batch: int = 1) -> float:
        (row,) = [
            r
            for r in rows
            if (r["record_size"], r["writers"], r["mode"], r["batch"])
            == (size, appenders, mode, batch)
        ]
        return float(row["megabytes_per_second"])

    raw_mb_s = max(raw.values())
    report: dict[str, Any] = {
        "raw_mb_s": round(raw_mb_s, 1),
        "raw_mb_s_per_fsync": {f"{mib}MiB": round(v, 1) for mib, v in raw.items()},
        "naive_fsync_per_1k_record_mb_s": round(naive, 2),
        "sqlite_mb_s_1k": round(sqlite[1024], 1),
        "sqlite_mb_s_16k": round(sqlite[16384], 1),
        "wal_mb_s_1k": round(wal(1024, 64), 1),
        "wal_mb_s_16k": round(wal(16384, 64), 1),
        "wal_mb_s_1k_threads": round(wal(1024, 64, "threads"), 1),
        "wal_mb_s_16k_threads": round(wal(16384, 64, "threads"), 1),
        "wal_mb_s_1k_batch": round(wal(1024, 1, "asyncio", BATCH), 1),
        "wal_mb_s_1k_batch_8": round(wal(1024, 8, "asyncio", BATCH), 1),
        "wal_mb_s_1k_batch_threads": round(wal(1024, 1, "threads", BATCH), 1),
        "disk_mb_s_1k_batch": round(disk_batch, 1),
    }
    report["wal16k_vs_raw"] = round(wal(16384, 64) / raw_mb_s, 3)
    report["wal1k_vs_sqlite"] = round(wal(1024, 64) / sqlite[1024], 3)
    report["wal1k_batch_vs_sqlite"] = round(wal(1024, 1, "asyncio", BATCH) / sqlite[1024], 3)
    report["wal1k_batch_vs_disk"] = round(wal(1024, 1, "asyncio", BATCH) / disk_batch, 3)
    report["wal1k_vs_naive"] = round(wal(1024, 64) / naive, 2)
    report["targets"] = {
        f"{key}>={target}": report[key] >= target for key, target in TARGETS.items()
    }
    report["wal"] = rows
    return report


def print_report(report: dict[str, Any]) -> None:
    raw = report["raw_mb_s_per_fsync"]
    print(f"raw disk, fdatasync per 1 MiB / 16 MiB: {raw['1MiB']} / {raw['16MiB']} MB/s")
    print(
        f"naive log, fdatasync per 1 KiB record:  {report['naive_fsync_per_1k_record_mb_s']} MB/s"
    )
    print(
        f"SQLite WAL, synchronous=FULL, 100 rows per commit: {report['sqlite_mb_s_1k']} MB/s "
        f"(1 KiB rows), {report['sqlite_mb_s_16k']} MB/s (16 KiB rows)"
    )
    print(
        f"disk, one batch's bytes + fdatasync per call, written file: "
        f"{report['disk_mb_s_1k_batch']} MB/s of payload\n"
    )
    print("tidelog WAL, durability=fsync")
    print(
        f"{'appenders':>17} {'batch':>5} {'record':>7} {'appends/s':>11} {'MB/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'per sync':>8}"
    )
    for row in report["wal"]:
        print(
            f"{row['writers']:>3} {row['mode']:<13} {row['batch']:>5} {row['record_size']:>7} "
            f"{row['appends_per_second']:>11,.0f} {row['megabytes_per_second']:>8.1f} "
            f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['appends_per_sync']:>8.1f}"
        )
    print("\nHeadline (64 asyncio appenders)")
    for key in (
        "wal_mb_s_16k",
        "wal_mb_s_1k",
        "wal_mb_s_1k_batch",
        "wal16k_vs_raw",
        "wal1k_vs_sqlite",
        "wal1k_batch_vs_sqlite",
        "wal1k_batch_vs_disk",
        "wal1k_vs_naive",
    ):
        print(f"  {key:<18} {report[key]}")
    for name, met in report["targets"].items():
        print(f"  target {name:<22} {'met' if met else 'NOT met'}")


def run(directory: str | None, quick: bool, as_json: bool) -> int:
    """Measures everything in a temporary directory under ``directory``, then prints."""
    if directory is not None:
        os.makedirs(directory, exist_ok=True)
    root = tempfile.mkdtemp(prefix="wal-bench-", dir=directory)
    try:
        report = measure(root, 0.4 if quick else 2.0)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds in all")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args(argv)
    return run(args.dir, args.quick, args.json)
