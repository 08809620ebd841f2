"""Instructions one asyncio WAL append costs, by thread and by function,
counted by callgrind at ``wal1k_vs_sqlite``'s shape.

    python bench/wal_append_instructions.py [--tree DIR]... [--appends N]
                                            [--appenders 64] [--top 20]
                                            [--json] [--quick]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), a ``WriteAheadLog`` (durability
``fsync``) in a temporary directory, on a uvloop loop as
``bench/wal_bench.py`` runs it, takes ``--appenders`` asyncio tasks each
awaiting one 1 KiB ``append_async`` at a time, as ``engine/cli/wal_perf.py``
does, under ``valgrind --tool=callgrind --separate-threads=yes`` (a file
per thread). Each task makes a fixed number of appends (not a timed run:
valgrind's slowness would move a deadline's count), a warm-up run of
``--appends`` and a run of twice as many; the difference between the two
runs, per thread, over ``--appends``, is the count per append, with the
start-up (imports, the log's open and close) taken out. With ``--batch
N`` (and ``--appenders 1``: ``wal1k_batch_vs_sqlite``'s shape) each task
awaits ``append_many_async`` of N records instead, and the count is per
record.

Threads are named by a C function only each calls: the event loop's
``epoll_pwait``, the writer's ``pwritev2``; the sync thread, idle at this
shape (every group is synced by the writer itself, ``Syncer.sync_here``),
is the rest. ``appends_per_group`` is read from the log's counters: a
change in how appends fall into groups moves the writer's count per
append, so it is printed beside it. ``--top`` functions per thread are
listed with the difference of their exclusive counts, per append
(Python's frames are one C function, ``_PyEval_EvalFrameDefault``).

Instructions do not move with the machine's load, unlike time: compare
revisions by running this on each, one after the other. What the kernel
does (the write's copy, the fdatasync) is not counted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import _callgrind_costs
import _harness

HERE = Path(__file__).resolve().parents[1]
THREAD_MARKS = (("loop", "epoll_pwait"), ("wal_writer", "pwritev2"))
STATS = re.compile(r"^stats appends=(\d+) groups=(\d+) syncs=(\d+)$", re.M)

RUN = r"""
import asyncio, gc, os, sys
import uvloop
from wal import Append, WriteAheadLog

per_task, tasks, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
payload = os.urandom(1024)
records = [Append(payload)] * batch

async def appender(log):
    for _ in range(per_task):
        if batch > 1:
            await log.append_many_async(records)
        else:
            await log.append_async(payload)

async def run(log):
    await asyncio.gather(*(appender(log) for _ in range(tasks)))

os.makedirs(sys.argv[4])  # in the parent's scratch, removed with it
with WriteAheadLog(sys.argv[4]) as log:
    gc.collect()
    gc.freeze()
    uvloop.run(run(log))
    stats = log.stats
print(f"stats appends={stats.appends} groups={stats.groups} syncs={stats.syncs}")
"""


def _thread_name(path: Path) -> str:
    for name, mark in THREAD_MARKS:
        if _callgrind_costs.calls(path, mark):
            return name
    return "wal_sync"


def _count(
    tree: Path, appends: int, appenders: int, batch: int
) -> tuple[dict[str, Any], dict[str, int]]:
    """Each thread's summary and functions' exclusive counts for a run of
    ``appends`` records (spread evenly over the appenders, ``batch`` a
    call), and the log's counters."""
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "appends.py"
        script.write_text(RUN)
        out = Path(scratch) / "callgrind.out"
        env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(script),
                str(appends // appenders // batch),
                str(appenders),
                str(batch),
                str(Path(scratch) / "wal"),
            ],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        stats = STATS.search(done.stdout)
        if stats is None:
            raise RuntimeError(f"no counters from the run in {tree}:\n{done.stderr[-2000:]}")
        threads: dict[str, Any] = {}
        for path in sorted(Path(scratch).glob("callgrind.out-*")):
            summary, exclusive = _callgrind_costs.costs(path)
            if summary:
                threads[_thread_name(path)] = (summary, exclusive)
    appended, groups, syncs = (int(value) for value in stats.groups())
    return threads, {"appends": appended, "groups": groups, "syncs": syncs}


def measure(tree: Path, appends: int, appenders: int, batch: int, top: int) -> dict[str, Any]:
    short, short_stats = _count(tree, appends, appenders, batch)
    long, long_stats = _count(tree, 2 * appends, appenders, batch)
    counted = long_stats["appends"] - short_stats["appends"]
    groups = long_stats["groups"] - short_stats["groups"]
    per_thread: dict[str, float] = {}
    functions: dict[str, dict[str, float]] = {}
    for name, (summary, exclusive) in long.items():
        before_summary, before = short.get(name, (0, {}))
        per_thread[name] = (summary - before_summary) / counted
        grown: dict[str, int] = defaultdict(int)
        for function, cost in exclusive.items():
            grown[function] = cost - before.get(function, 0)
        ranked = sorted(grown.items(), key=lambda item: -item[1])[:top]
        functions[name] = {function: round(cost / counted, 1) for function, cost in ranked}
    return {
        "appends": counted,
        "appends_per_group": round(counted / groups, 2) if groups else None,
        "ir_per_append": round(sum(per_thread.values())),
        "threads_ir_per_append": {name: round(count) for name, count in per_thread.items()},
        "functions_ir_per_append": functions,
    }


def _print(results: dict[str, Any]) -> None:
    for tree, figures in results["trees"].items():
        print(
            f"{tree}: {figures['ir_per_append']:,} Ir per append"
            f" ({figures['appends']} appends, {figures['appends_per_group']} a group)"
        )
        for thread, count in figures["threads_ir_per_append"].items():
            print(f"  {thread:12} {count:10,}")
        for thread, rows in figures["functions_ir_per_append"].items():
            print(f"  {thread}:")
            for function, count in rows.items():
                print(f"    {count:10,.1f}  {function}")


def main() -> None:
    parser = _harness.parser(__doc__, quick="640 appends a run")
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--appends", type=int, default=6400)
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument(
        "--batch", type=int, default=1, help="records per call (append_many_async) above 1"
    )
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    appends = 640 if args.quick else args.appends
    trees = {
        str(tree): measure(tree.resolve(), appends, args.appenders, args.batch, args.top)
        for tree in args.tree or [HERE]
    }
    _harness.report({"trees": trees}, args.json, _print)


if __name__ == "__main__":
    main()
