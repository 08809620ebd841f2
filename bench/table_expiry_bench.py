"""How a table topic's commit time grows with its snapshots, with snapshot
expiry off and on ([tables] keep_snapshots_s), in one run.

    python bench/table_expiry_bench.py [--commits 400] [--keep 20] [--quick] [--json]

Each of ``--commits`` rounds produces 10 records to a one-partition table
topic, uploads them, and times ``Engine.commit_tables`` (load the table,
read the records, write a Parquet file, commit). ``off`` keeps every
snapshot; ``on`` expires after every commit (``expire_interval_s = 0``,
the most often it can: its own commit is inside the time measured) all
but the newest ``--keep`` snapshots. Each mode runs on its own engine and
data directory, one after the other.

- ``<mode>_first_ms`` / ``<mode>_last_ms``: the median commit of the first
  and the last ``--window`` commits;
- ``off_last_vs_off_first``: how much a commit slowed down as snapshots
  added up without expiry; ``on_last_vs_on_first``: the same with it;
- ``on_last_vs_off_last``: a late commit's time with expiry against
  without (below 1: expiry pays).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import _harness
from pyiceberg.catalog import load_catalog

import engine
import native
from engine.tables.settings import TablesConfig
from s3stream import StreamStoreConfig

TOPIC = "expiry-bench"
RECORDS_PER_COMMIT = 10
TABLE_ON = {"tidelog.table.enable": "true", "tidelog.table.commit.interval.ms": "3600000"}
"""The table thread's own passes stay out of the way: commits are the bench's."""


def run(root: Path, commits: int, tables: TablesConfig) -> tuple[list[float], int]:
    """Each commit's seconds, and the snapshots the table holds after."""
    config = replace(
        engine.EngineConfig(),
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
        tables=tables,
    )
    e = engine.open(root / "data", f"file://{root / 'bucket'}", config)
    try:
        e.create_topic(TOPIC, 1, TABLE_ON)
        e.commit_tables()  # creates the table, and imports pyiceberg's write path
        times = []
        with e.producer() as producer:
            for round_ in range(commits):
                for i in range(RECORDS_PER_COMMIT):
                    producer.send(TOPIC, b"step %d.%d" % (round_, i), partition=0)
                producer.flush()
                assert e.flush(60)
                start = time.perf_counter()
                added = e.commit_tables(TOPIC)
                times.append(time.perf_counter() - start)
                assert added == {TOPIC: RECORDS_PER_COMMIT}, added
        snapshots = _snapshots(root)
    finally:
        e.close()
    return times, snapshots


def _snapshots(root: Path) -> int:
    uri = f"sqlite:///{root / 'data' / 'tables' / 'catalog.db'}"
    table = load_catalog("tidelog", type="sql", uri=uri).load_table(("tidelog", "expiry_bench"))
    return len(table.metadata.snapshots)


def main() -> None:
    parser = _harness.parser(__doc__, "100 commits, windows of 25")
    parser.add_argument("--commits", type=int, default=400)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--keep", type=int, default=20, help="snapshots kept with expiry on")
    parser.add_argument("--dir", default=None, help="where the scratch data directories go")
    args = parser.parse_args()
    commits, window = (100, 25) if args.quick else (args.commits, args.window)
    window = min(window, commits)
    results: dict[str, Any] = {
        "implementation": native.IMPLEMENTATION,
        "commits": commits,
        "window": window,
        "keep": args.keep,
        **_harness.cpus(),
    }
    modes = {
        "off": TablesConfig(keep_snapshots_s=0),
        "on": TablesConfig(keep_snapshots_s=0.001, keep_snapshots=args.keep, expire_interval_s=0),
    }
    with _harness.scratch(args.dir, "table-expiry-bench-") as root:
        for mode, tables in modes.items():
            times, snapshots = run(root / mode, commits, tables)
            first = statistics.median(times[:window]) * 1000
            last = statistics.median(times[-window:]) * 1000
            results[f"{mode}_first_ms"] = round(first, 1)
            results[f"{mode}_last_ms"] = round(last, 1)
            results[f"{mode}_last_vs_{mode}_first"] = round(last / first, 2)
            results[f"{mode}_snapshots"] = snapshots
    results["on_last_vs_off_last"] = round(results["on_last_ms"] / results["off_last_ms"], 2)
    _harness.report(results, args.json, _table)


def _table(results: dict[str, Any]) -> None:
    print(
        f"table commits of {RECORDS_PER_COMMIT} records, {results['commits']} in a row, "
        f"medians of the first and last {results['window']}, native: {results['implementation']}"
    )
    for mode in ("off", "on"):
        print(
            f"  expiry {mode:<3}  first {results[f'{mode}_first_ms']:>7.1f} ms   "
            f"last {results[f'{mode}_last_ms']:>7.1f} ms   "
            f"last/first {results[f'{mode}_last_vs_{mode}_first']:.2f}   "
            f"({results[f'{mode}_snapshots']} snapshots after)"
        )
    print(f"  late commit, expiry on / off: {results['on_last_vs_off_last']:.2f}")


if __name__ == "__main__":
    main()
