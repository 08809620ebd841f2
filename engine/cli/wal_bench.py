"""`tidelog wal-bench`: the command that runs the WAL measurement (wal_perf)
or, with ``--compare``, the measurement beside the disk's limits and SQLite
(wal_compare).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from typing import Any

from engine.cli import wal_compare
from engine.cli.help_format import HelpFormatter
from engine.cli.wal_perf import MODES, run_wal_perf
from wal import Durability


def add_command(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "wal-bench",
        help="measure the write-ahead log's durable append rate on this disk",
        description=(
            "Append records to a write-ahead log in a temporary directory under --data-dir "
            "for a few seconds and print the acknowledged appends per second, bytes per "
            "second, p50 and p99 latency and appends per sync; the directory is removed after. "
            "With --compare: the same beside the disk's raw write + fdatasync limit and "
            "SQLite, for 1, 8 and 64 appenders (docs/benchmarks.md)."
        ),
        epilog="examples:\n  tidelog wal-bench --writers 64 --record-size 16384\n"
        "  tidelog wal-bench --compare --quick",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        default="./tidelog-data/wal-bench",
        help="where the temporary log goes: the disk measured (default ./tidelog-data/wal-bench)",
    )
    parser.add_argument("--writers", type=int, default=16, help="concurrent appenders (default 16)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="asyncio",
        help="appenders as asyncio tasks on one loop or as threads (default asyncio)",
    )
    parser.add_argument(
        "--record-size", type=int, default=1024, help="bytes per record (default 1024)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to append (default 3)")
    parser.add_argument(
        "--durability",
        choices=[d.value for d in Durability],
        default=Durability.FSYNC.value,
        help="when an append is acknowledged: fsync (the default), interval or none",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="the full comparison: the disk's raw limit, SQLite, 1/8/64 appenders",
    )
    parser.add_argument("--quick", action="store_true", help="with --compare: a few seconds")
    parser.add_argument("--json", action="store_true", help="with --compare: one JSON object")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    if args.compare:
        return wal_compare.run(args.data_dir, args.quick, args.json)
    os.makedirs(args.data_dir, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="run-", dir=args.data_dir)
    try:
        result = run_wal_perf(
            directory,
            writers=args.writers,
            record_size=args.record_size,
            seconds=args.seconds,
            durability=Durability(args.durability),
            mode=args.mode,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"wal-bench: {result.writers} {result.mode} appenders, {result.record_size} B records, "
        f"durability={result.durability}, {result.seconds:.1f} s "
        f"in {os.path.abspath(args.data_dir)}"
    )
    for name, value in result.summary().items():
        print(f"  {name:<22} {value}")
    return 0
