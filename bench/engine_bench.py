"""The embedded engine's produce and replay rates, beside SQLite on the same records.

    python bench/engine_bench.py [--records 500000] [--quick] [--rounds 2] [--json]

Both sides get the same 1 KiB records (random bytes; no key unless
``--key-bytes``), durably, on the same disk, in the same process:

- engine produce: ``engine.open(dir).producer().send`` to one topic, futures
  awaited in windows of 10,000 (a record counts once its future resolved,
  i.e. once it is fsynced in the WAL); the producer's own defaults;
- engine bulk produce: the same records through ``send_many``, one call per
  window of 10,000 (its list built in the timed loop, as SQLite's rows are),
  each call's future awaited before the next, on an engine of its own;
- engine replay: a Consumer assigned every partition, from the beginning,
  polled until every record is read, on an engine closed (after uploading)
  and opened again, so every batch is read from the object store (a local
  directory under the data directory) rather than from the log cache; the
  same replay on the engine that produced (log cache, then objects) is shown
  beside it;
- SQLite: a table (offset INTEGER PRIMARY KEY, ts, key, value BLOB), WAL
  journal, synchronous=FULL, 100 rows per transaction (executemany, commit);
  replayed with ``SELECT ... ORDER BY offset`` and fetchmany on a new
  connection.

The OS page cache is left alone: both sides read files this run just wrote.
The disk's speed drifts on a shared machine, so the sides alternate, a round
each (engine, SQLite, engine, SQLite, ...), every round in fresh directories;
each figure is the median of its rounds and each ratio one of medians.
``--json`` prints one JSON object; its headline keys are produce_rec_s,
produce_many_rec_s, replay_rec_s, sqlite_insert_rec_s, sqlite_replay_rec_s
and the ratios produce_vs_sqlite, produce_many_vs_sqlite (send_many),
produce_many_vs_send and replay_vs_sqlite. Durability is the same on both
sides: the engine acknowledges a record once its WAL write is fsynced (a
group commit), SQLite commits with synchronous=FULL (an fsync per commit).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness

RECORD_BYTES = 1024
WINDOW = 10_000
"""Sends in flight before the benchmark waits for all of them."""
ROWS_PER_TRANSACTION = 100
FETCH_ROWS = 1000
DISTINCT_VALUES = 4096
"""Values are drawn from a pool (4 MiB), so building them costs nothing timed."""
TOPIC = "bench"
TARGETS = {"produce_vs_sqlite": 1.5, "produce_many_vs_sqlite": 2.0, "replay_vs_sqlite": 1.0}


@dataclass(frozen=True)
class Workload:
    records: int
    values: list[bytes]
    keys: list[bytes] | None
    partitions: int
    batch_size: int | None
    """The producer's batch_size; None: its default."""

    def value(self, i: int) -> bytes:
        return self.values[i % len(self.values)]

    def key(self, i: int) -> bytes | None:
        return None if self.keys is None else self.keys[i % len(self.keys)]


def main() -> None:
    parser = _harness.parser(__doc__, quick="20,000 records per round")
    parser.add_argument("--records", type=int, default=500_000, help="records per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side, alternating")
    parser.add_argument(
        "--key-bytes", type=int, default=0, help="a key of this size per record (0: no key)"
    )
    parser.add_argument("--partitions", type=int, default=1, help="partitions of the topic")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="the producer's batch_size (default: its own)"
    )
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    workload = make_workload(
        20_000 if args.quick else args.records, args.key_bytes, args.partitions, args.batch_size
    )
    with _harness.scratch(args.dir, "tidelog-engine-bench-") as scratch:
        results = run(scratch, workload, args.rounds)
    _harness.report(results, args.json, print_table)


def make_workload(
    records: int, key_bytes: int, partitions: int, batch_size: int | None
) -> Workload:
    values = [os.urandom(RECORD_BYTES) for _ in range(DISTINCT_VALUES)]
    keys = None
    if key_bytes > 0:
        keys = [f"{i:0{key_bytes}d}"[-key_bytes:].encode() for i in range(1024)]
    return Workload(records, values, keys, partitions, batch_size)


def run(scratch: Path, workload: Workload, rounds: int) -> dict[str, Any]:
    import native

    sides: dict[str, list[dict[str, float]]] = {"engine": [], "bulk": [], "sqlite": []}
    durability = ""
    for round_number in range(rounds):
        directory = scratch / f"engine-{round_number}"
        figures, durability = engine_round(directory, workload)
        sides["engine"].append(figures)
        shutil.rmtree(directory, ignore_errors=True)
        directory = scratch / f"bulk-{round_number}"
        sides["bulk"].append(bulk_round(directory, workload))
        shutil.rmtree(directory, ignore_errors=True)
        directory = scratch / f"sqlite-{round_number}"
        sides["sqlite"].append(sqlite_round(directory, workload))
        shutil.rmtree(directory, ignore_errors=True)

    results: dict[str, Any] = {
        "records": workload.records,
        "record_bytes": RECORD_BYTES,
        "key_bytes": len(workload.keys[0]) if workload.keys else 0,
        "partitions": workload.partitions,
        "batch_size": workload.batch_size,
        "window": min(WINDOW, workload.records),
        "rounds": rounds,
        "durability": durability,
        "implementation": native.IMPLEMENTATION,
        **_harness.cpus(),
    }
    for side in sides.values():
        for key in side[0]:
            digits = 1 if key.endswith("rec_s") else 3
            values = [figures[key] for figures in side]
            results[key] = round(statistics.median(values), digits)
            results[f"{key}_rounds"] = [round(v, digits) for v in values]
    results["produce_vs_sqlite"] = round(
        results["produce_rec_s"] / results["sqlite_insert_rec_s"], 3
    )
    results["produce_many_vs_sqlite"] = round(
        results["produce_many_rec_s"] / results["sqlite_insert_rec_s"], 3
    )
    results["produce_many_vs_send"] = round(
        results["produce_many_rec_s"] / results["produce_rec_s"], 3
    )
    results["replay_vs_sqlite"] = round(results["replay_rec_s"] / results["sqlite_replay_rec_s"], 3)
    results["replay_warm_vs_sqlite"] = round(
        results["replay_warm_rec_s"] / results["sqlite_replay_rec_s"], 3
    )
    results["targets"] = {
        f"{key} >= {target}": results[key] >= target for key, target in TARGETS.items()
    }
    return results


# -- the engine --------------------------------------------------------------------


def engine_round(directory: Path, workload: Workload) -> tuple[dict[str, float], str]:
    """Produces every record, replays it warm, reopens the engine, replays it
    from the object store; returns the figures and the WAL's durability."""
    import engine

    figures: dict[str, float] = {}
    eng = engine.open(directory)
    try:
        durability = str(getattr(eng.store.config.durability, "value", eng.store.config.durability))
        eng.create_topic(TOPIC, workload.partitions)
        options = {} if workload.batch_size is None else {"batch_size": workload.batch_size}
        producer = eng.producer(**options)
        cpu, started = _cpu_seconds(), time.perf_counter()
        _produce(producer, workload)
        elapsed = time.perf_counter() - started
        figures["produce_rec_s"] = workload.records / elapsed
        figures["produce_cores"] = (_cpu_seconds() - cpu) / elapsed
        producer.close()
        # Uploads run behind the appends; let them finish before timing reads,
        # so neither replay competes with them.
        started = time.perf_counter()
        eng.flush()
        figures["upload_tail_s"] = time.perf_counter() - started
        figures["replay_warm_rec_s"] = workload.records / _replay(eng, workload.records)
    finally:
        eng.close()

    started = time.perf_counter()
    eng = engine.open(directory)
    try:
        figures["reopen_s"] = time.perf_counter() - started
        # Everything was uploaded before the close: the reopened engine's log
        # cache starts empty and every read goes to the object store.
        replayed = eng.store.recovery.replayed_bytes
        assert replayed == 0, f"{replayed} bytes came back from the WAL"
        cpu, started = _cpu_seconds(), time.perf_counter()
        elapsed = _replay(eng, workload.records)
        figures["replay_rec_s"] = workload.records / elapsed
        figures["replay_cores"] = (_cpu_seconds() - cpu) / elapsed
    finally:
        eng.close()
    return figures, durability


def bulk_round(directory: Path, workload: Workload) -> dict[str, float]:
    """Produces every record through send_many, a window per call."""
    import engine

    eng = engine.open(directory)
    try:
        eng.create_topic(TOPIC, workload.partitions)
        options = {} if workload.batch_size is None else {"batch_size": workload.batch_size}
        producer = eng.producer(**options)
        cpu, started = _cpu_seconds(), time.perf_counter()
        _produce_many(producer, workload)
        elapsed = time.perf_counter() - started
        figures = {
            "produce_many_rec_s": workload.records / elapsed,
            "produce_many_cores": (_cpu_seconds() - cpu) / elapsed,
        }
        producer.close()
    finally:
        eng.close()
    return figures


def _produce_many(producer: Any, workload: Workload) -> None:
    values, pool = workload.values, len(workload.values)
    for first in range(0, workload.records, WINDOW):
        last = min(first + WINDOW, workload.records)
        window = [values[i % pool] for i in range(first, last)]
        keys = None if workload.keys is None else [workload.key(i) for i in range(first, last)]
        producer.send_many(TOPIC, window, keys).result()


def _produce(producer: Any, workload: Workload) -> None:
    window: list[Any] = []  # send's futures (anything with result())
    send = producer.send
    for i in range(workload.records):
        window.append(send(TOPIC, workload.value(i), workload.key(i)))
        if len(window) == WINDOW:
            for future in window:
                future.result()
            window.clear()
    for future in window:
        future.result()


def _replay(eng: Any, records: int) -> float:
    """Reads every record from offset 0 through a Consumer; returns seconds."""
    consumer = eng.consumer()
    consumer.assign(eng.topic_partitions([TOPIC]))
    started = time.perf_counter()
    consumer.seek_to_beginning()
    read = 0
    while read < records:
        polled = consumer.poll(1.0)
        if not polled:
            raise RuntimeError(f"replay stopped after {read} of {records} records")
        read += len(polled)
    elapsed = time.perf_counter() - started
    consumer.close()
    assert read == records, f"read {read} records of {records}"
    return elapsed


# -- SQLite ------------------------------------------------------------------------


def sqlite_round(directory: Path, workload: Workload) -> dict[str, float]:
    """Inserts every record, 100 rows per durable transaction, then reads
    them all back in offset order on a new connection."""
    directory.mkdir(parents=True)
    path = directory / "records.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE records (offset INTEGER PRIMARY KEY, ts INTEGER, key BLOB, value BLOB)"
    )
    db.commit()
    figures: dict[str, float] = {}
    insert = "INSERT INTO records (offset, ts, key, value) VALUES (?, ?, ?, ?)"
    cpu, started = _cpu_seconds(), time.perf_counter()
    for first in range(0, workload.records, ROWS_PER_TRANSACTION):
        last = min(first + ROWS_PER_TRANSACTION, workload.records)
        ts = int(time.time() * 1000)
        db.executemany(
            insert, [(i, ts, workload.key(i), workload.value(i)) for i in range(first, last)]
        )
        db.commit()
    elapsed = time.perf_counter() - started
    figures["sqlite_insert_rec_s"] = workload.records / elapsed
    figures["sqlite_insert_cores"] = (_cpu_seconds() - cpu) / elapsed
    db.close()

    db = sqlite3.connect(path)
    read = 0
    cpu, started = _cpu_seconds(), time.perf_counter()
    cursor = db.execute("SELECT offset, ts, key, value FROM records ORDER BY offset")
    while rows := cursor.fetchmany(FETCH_ROWS):
        read += len(rows)
    elapsed = time.perf_counter() - started
    db.close()
    assert read == workload.records, f"read {read} rows of {workload.records}"
    figures["sqlite_replay_rec_s"] = workload.records / elapsed
    figures["sqlite_replay_cores"] = (_cpu_seconds() - cpu) / elapsed
    return figures


def _cpu_seconds() -> float:
    """CPU time of this process so far, every thread's (the engine's WAL
    writer, uploader and readers are threads of this process)."""
    times = os.times()
    return times.user + times.system


# -- output ------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    key = f"{results['key_bytes']} B key" if results["key_bytes"] else "no key"
    print(
        f"{results['records']:,} records of {results['record_bytes']} B ({key}), topic of "
        f"{results['partitions']} partition(s), durability {results['durability']}, "
        f"native {results['implementation']}, {results['cpus_usable']} CPUs"
    )
    print(
        f"median of {results['rounds']} rounds per side, engine and SQLite alternating; "
        "OS page cache not dropped\n"
    )
    mib = results["record_bytes"] / (1024 * 1024)
    rows = [
        (f"engine produce (send, {results['window']:,} awaited at a time)", "produce_rec_s"),
        (f"engine produce (send_many, {results['window']:,} per call)", "produce_many_rec_s"),
        ("SQLite insert (WAL, synchronous=FULL, 100 rows/commit)", "sqlite_insert_rec_s"),
        ("engine replay, reopened engine (object store)", "replay_rec_s"),
        ("engine replay, warm (same engine: log cache)", "replay_warm_rec_s"),
        ("SQLite replay (SELECT ... ORDER BY offset)", "sqlite_replay_rec_s"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'':<{width}} {'records/s':>11} {'MiB/s':>7}   rounds")
    for label, figure in rows:
        value = results[figure]
        each = "  ".join(f"{v:,.0f}" for v in results[f"{figure}_rounds"])
        print(f"{label:<{width}} {value:>11,.0f} {value * mib:>7.1f}   {each}")
    print(
        f"\nCPU cores busy: engine produce {results['produce_cores']:.2f} (send_many "
        f"{results['produce_many_cores']:.2f}), SQLite insert "
        f"{results['sqlite_insert_cores']:.2f}, engine replay {results['replay_cores']:.2f}, "
        f"SQLite replay {results['sqlite_replay_cores']:.2f}"
    )
    print(
        f"engine reopen {results['reopen_s']:.2f} s; uploads still running after the last "
        f"produce: {results['upload_tail_s']:.2f} s\n"
    )
    print(
        f"produce_vs_sqlite {results['produce_vs_sqlite']:.2f}   produce_many_vs_sqlite "
        f"{results['produce_many_vs_sqlite']:.2f} (vs send {results['produce_many_vs_send']:.2f})"
        f"   replay_vs_sqlite "
        f"{results['replay_vs_sqlite']:.2f} (warm {results['replay_warm_vs_sqlite']:.2f})"
    )
    _harness.print_targets(results["targets"])


if __name__ == "__main__":
    main()
