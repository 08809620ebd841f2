"""How a table topic's commit time and manifest list grow with its
commits: snapshot expiry off and on ([tables] keep_snapshots_s), and with
it on, appends that merge manifests (the tables' default) against fast
appends (one more manifest per commit), in one run.

    python bench/table_expiry_bench.py [--commits 400] [--keep 20] [--quick] [--json]

Each of ``--commits`` rounds produces 10 records to a one-partition table
topic, uploads them, and times ``Engine.commit_tables`` (load the table,
read the records, write a Parquet file, commit). ``off`` keeps every
snapshot; ``on`` expires after every commit (``expire_interval_s = 0``,
the most often it can: its own commit is inside the time measured) all
but the newest ``--keep`` snapshots; ``fast`` is ``on`` with the table's
``commit.manifest-merge.enabled=false`` (fast appends, as tables were
written before manifests were merged). Each mode has its own engine and
data directory, all open at once, and they take turns: a commit of each
per round, so that the machine's other load falls on each alike.

- ``<mode>_first_ms`` / ``<mode>_last_ms``: the median commit of the first
  and the last ``--window`` commits;
- ``off_last_vs_off_first``: how much a commit slowed down as snapshots
  added up without expiry; ``on_last_vs_on_first``: the same with it;
- ``on_last_vs_off_last``: a late commit's time with expiry against
  without (below 1: expiry pays); ``on_last_vs_fast_last``: with merged
  manifests against fast appends;
- ``<mode>_manifests``: the manifests the table's manifest list names after
  the last commit; ``<mode>_series``: after every ``--window`` commits, the
  manifests named and the median commit (ms) of that window.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

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


MERGE_OFF = {"commit.manifest-merge.enabled": "false"}


class Run(NamedTuple):
    times: list[float]
    """Each commit's seconds."""
    manifests: list[int]
    """The manifests the manifest list names after each commit."""
    snapshots: int
    """The snapshots the table holds after the last."""


class Mode:
    """One mode's engine and table topic, a commit at a time."""

    def __init__(self, root: Path, tables: TablesConfig, merge: bool) -> None:
        config = replace(
            engine.EngineConfig(),
            store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
            checkpoint_interval_s=3600,
            cleaner_interval_s=3600,
            tables=tables,
        )
        self.root = root
        self.engine = engine.open(root / "data", f"file://{root / 'bucket'}", config)
        self.engine.create_topic(TOPIC, 1, TABLE_ON)
        self.engine.commit_tables()  # creates the table, and imports pyiceberg's write path
        if not merge:
            with _iceberg_table(root).transaction() as txn:
                txn.set_properties(MERGE_OFF)
        self.producer = self.engine.producer()
        self.times: list[float] = []
        self.manifests: list[int] = []

    def commit(self, round_: int) -> None:
        for i in range(RECORDS_PER_COMMIT):
            self.producer.send(TOPIC, b"step %d.%d" % (round_, i), partition=0)
        self.producer.flush()
        assert self.engine.flush(60)
        start = time.perf_counter()
        added = self.engine.commit_tables(TOPIC)
        self.times.append(time.perf_counter() - start)
        assert added == {TOPIC: RECORDS_PER_COMMIT}, added
        table = _iceberg_table(self.root)
        self.manifests.append(len(table.current_snapshot().manifests(table.io)))

    def close(self) -> Run:
        self.producer.close()
        self.engine.close()
        snapshots = len(_iceberg_table(self.root).metadata.snapshots)
        return Run(self.times, self.manifests, snapshots)


def run(root: Path, commits: int, modes: dict[str, tuple[TablesConfig, bool]]) -> dict[str, Run]:
    """Each mode's commits, taking turns (a commit of each mode per round),
    so that the machine's other load falls on every mode alike."""
    opened = {name: Mode(root / name, *how) for name, how in modes.items()}
    try:
        for round_ in range(commits):
            for mode in opened.values():
                mode.commit(round_)
    finally:
        runs = {name: mode.close() for name, mode in opened.items()}
    return runs


def _iceberg_table(root: Path) -> Any:
    uri = f"sqlite:///{root / 'data' / 'tables' / 'catalog.db'}"
    return load_catalog("tidelog", type="sql", uri=uri).load_table(("tidelog", "expiry_bench"))


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
    expiring = TablesConfig(keep_snapshots_s=0.001, keep_snapshots=args.keep, expire_interval_s=0)
    modes = {
        "off": (TablesConfig(keep_snapshots_s=0), True),
        "fast": (expiring, False),
        "on": (expiring, True),
    }
    with _harness.scratch(args.dir, "table-expiry-bench-") as root:
        for mode, done in run(root, commits, modes).items():
            first = statistics.median(done.times[:window]) * 1000
            last = statistics.median(done.times[-window:]) * 1000
            results[f"{mode}_first_ms"] = round(first, 1)
            results[f"{mode}_last_ms"] = round(last, 1)
            results[f"{mode}_last_vs_{mode}_first"] = round(last / first, 2)
            results[f"{mode}_snapshots"] = done.snapshots
            results[f"{mode}_manifests"] = done.manifests[-1]
            results[f"{mode}_series"] = [
                [
                    end,
                    done.manifests[end - 1],
                    round(statistics.median(done.times[end - window : end]) * 1000, 1),
                ]
                for end in range(window, commits + 1, window)
            ]
    results["on_last_vs_off_last"] = round(results["on_last_ms"] / results["off_last_ms"], 2)
    results["on_last_vs_fast_last"] = round(results["on_last_ms"] / results["fast_last_ms"], 2)
    _harness.report(results, args.json, _table)


def _table(results: dict[str, Any]) -> None:
    print(
        f"table commits of {RECORDS_PER_COMMIT} records, {results['commits']} in a row, "
        f"medians of the first and last {results['window']}, native: {results['implementation']}"
    )
    names = {"off": "expiry off", "fast": "on, fast", "on": "on, merged"}
    for mode, name in names.items():
        print(
            f"  {name:<11} first {results[f'{mode}_first_ms']:>7.1f} ms   "
            f"last {results[f'{mode}_last_ms']:>7.1f} ms   "
            f"last/first {results[f'{mode}_last_vs_{mode}_first']:.2f}   "
            f"({results[f'{mode}_snapshots']} snapshots, "
            f"{results[f'{mode}_manifests']} manifests after)"
        )
    print(f"  late commit, expiry on / off: {results['on_last_vs_off_last']:.2f}")
    print(f"  late commit, merged / fast appends: {results['on_last_vs_fast_last']:.2f}")
    print("  commits   manifests (median ms of the window before)")
    print("            " + "".join(f"{name:>20}" for name in names.values()))
    for index, (end, *_) in enumerate(results["off_series"]):
        points = [results[f"{mode}_series"][index] for mode in names]
        cells = "".join(f"{manifests:>10} {ms:>7.1f} ms" for _, manifests, ms in points)
        print(f"  {end:>7}   {cells}")


if __name__ == "__main__":
    main()
