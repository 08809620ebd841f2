"""How fast a topic becomes an Iceberg table: records/s the table writer
moves from the topic to its table (read the committed records back, build
Arrow, write Parquet, commit to the catalog) beside pyarrow writing the same
Parquet rows straight to the same store, in one run.

    python bench/table_bench.py [--records 200000] [--value-bytes 200] [--quick] [--json]

The records (JSON values of about ``--value-bytes`` with a correlation-id
header, over 4 partitions) are produced and uploaded before timing. The
writer runs as the engine's table thread runs it (engine.tables.writer.
TableWriter, one commit per ``commit_bytes`` of stored batches, until
nothing waits), on a topic without typed columns (``raw``) and on one whose
value subject has a JSON Schema (``typed``: each value also decoded and
checked). The baseline writes the same rows, already as Arrow tables, in as
many Parquet files (zstd, as pyiceberg writes) to the same store directory.
A small topic is written first, untimed: the first commit of a process
imports pyiceberg's write path (Avro manifests, Parquet statistics), a
cost the engine's table thread pays once, not per commit. Each topic is
then written once untimed (its reads cached), and twice timed, to tables
of their own, in turns: ``before`` as the writer was before a commit took
up to 8 reads and pyiceberg's metadata view was computed once per update
(a commit per read, pyiceberg's own Transaction), and as it is. The tables are
partitioned as a new table is by default (by day; the records span one).

- ``writer_records_s`` / ``pyarrow_records_s``: records per second;
- ``writer_vs_pyarrow``: the share of pyarrow's rate the writer keeps;
- ``writer_vs_pyarrow_cpu``: the same share by the process's CPU seconds
  (all its threads) rather than by the clock: on a shared machine, other
  processes' load moves it less;
- ``before_*``: the same of the writer as it was; ``after_vs_before_cpu``:
  the CPU seconds it took over those it takes now (above 1: faster now).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import _harness

import engine
import native
from engine.schemas.types import JSON
from engine.tables.settings import TablesConfig
from native import RecordSpec
from s3stream import StreamStoreConfig

PARTITIONS = 4
WARM_UP_RECORDS = 2000
BATCH_RECORDS = 500
COMMIT_BYTES = 8 * 1024 * 1024
SCHEMA = {
    "type": "object",
    "properties": {
        "action_id": {"type": "string"},
        "type": {"enum": ["tool_call", "approval"]},
        "correlation_id": {"type": "string"},
        "step": {"type": "integer"},
        "score": {"type": "number"},
        "payload": {"type": "string"},
    },
}


def produce(e: engine.Engine, topic: str, records: int, value_bytes: int) -> None:
    pending = []
    for start in range(0, records, BATCH_RECORDS):
        specs = []
        for i in range(start, min(records, start + BATCH_RECORDS)):
            value = {
                "action_id": f"a-{i}",
                "type": "tool_call" if i % 2 else "approval",
                "correlation_id": f"task-{i // 2}",
                "step": i,
                "score": i / 7,
                "payload": "",
            }
            pad = max(0, value_bytes - len(json.dumps(value)))
            value["payload"] = "x" * pad
            specs.append(
                RecordSpec(
                    1_700_000_000_000 + i,
                    b"agent-%d" % (i % 64),
                    json.dumps(value).encode(),
                    (("correlation-id", f"task-{i // 2}".encode()),),
                )
            )
        batch = native.encode_batch(specs)
        pending.append(e.submit(topic, (start // BATCH_RECORDS) % PARTITIONS, bytearray(batch)))
    for future in pending:
        future.result(120)


@contextlib.contextmanager
def as_before() -> Iterator[None]:
    """The writer as it was before a commit took up to CHUNKS_PER_COMMIT
    reads and pyiceberg's metadata view was computed once per update: a
    commit per read, through pyiceberg's own Transaction."""
    from pyiceberg.table import Transaction

    from engine.tables import partitions, writer

    chunks, transaction = writer.CHUNKS_PER_COMMIT, partitions.ViewOnceTransaction
    writer.CHUNKS_PER_COMMIT, partitions.ViewOnceTransaction = 1, Transaction  # type: ignore[misc]
    try:
        yield
    finally:
        writer.CHUNKS_PER_COMMIT, partitions.ViewOnceTransaction = chunks, transaction  # type: ignore[misc]


def run_writer(
    e: engine.Engine, topic: str, root: Path, namespace: str = "tidelog"
) -> tuple[float, float, int, int, list[Any]]:
    """(seconds, CPU seconds, commits, files, the rows of each read as
    Arrow) for the table writer moving the whole topic to its table in
    ``namespace``."""
    from engine.tables import columns
    from engine.tables.catalogs import open_catalog
    from engine.tables.writer import TableWriter

    catalog = open_catalog(
        TablesConfig(commit_bytes=COMMIT_BYTES), str(root / "data"), e.store.store
    )
    partitions = [e.partition(topic, p) for p in range(PARTITIONS)]
    writer = TableWriter(
        catalog,
        namespace,
        topic,
        e.topic_shape(topic)[0],
        lambda: partitions,
        e.schemas,
        COMMIT_BYTES,
    )
    batches: list[Any] = []
    original = columns.arrow_rows

    def keep(*args: Any) -> Any:
        rows = original(*args)
        batches.append(rows)
        return rows

    table = writer.load()  # created before timing
    commits = files = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    import engine.tables.writer as writer_module

    writer_module.arrow_rows = keep  # the same rows, for the baseline (no copy)
    try:
        while True:
            result = writer.commit()
            commits += 1
            files += result.files
            if not result.more:
                break
    finally:
        writer_module.arrow_rows = original
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert table is not None
    return elapsed, cpu, commits, files, batches


def run_pyarrow(batches: list[Any], directory: Path) -> tuple[float, float]:
    """Seconds and CPU seconds for pyarrow to write ``batches`` as Parquet
    files to ``directory``."""
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    for index, rows in enumerate(batches):
        if rows.num_rows:
            pq.write_table(rows, directory / f"part-{index}.parquet", compression="zstd")
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = _harness.parser(__doc__, "20000 records")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--dir", default=None, help="where the scratch data directory goes")
    args = parser.parse_args()
    records = 20_000 if args.quick else args.records
    config = replace(
        engine.EngineConfig(),
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
    )
    results: dict[str, Any] = {
        "implementation": native.IMPLEMENTATION,
        "records": records,
        "value_bytes": args.value_bytes,
        "partitions": PARTITIONS,
        **_harness.cpus(),
    }
    with _harness.scratch(args.dir, "table-bench-") as root:
        e = engine.open(root / "data", f"file://{root / 'bucket'}", config)
        try:
            e.schemas.register("typed-value", json.dumps(SCHEMA), JSON)
            for name, count in (("warm-up", WARM_UP_RECORDS), ("raw", records), ("typed", records)):
                e.create_topic(name, PARTITIONS)
                produce(e, name, count, args.value_bytes)
            assert e.flush(300)
            run_writer(e, "warm-up", root)  # pyiceberg's write path imports itself on first use
            for turn, name in enumerate(("raw", "typed")):
                # Untimed: the topic's reads cached as for the two timed runs,
                # which then go in turns (the same rows, to tables of their own).
                run_writer(e, name, root, "warm")
                for variant in ("before", "after") if turn % 2 == 0 else ("after", "before"):
                    if variant == "before":
                        with as_before():
                            before, before_cpu, before_commits, _, _ = run_writer(
                                e, name, root, "before"
                            )
                    else:
                        seconds, cpu, commits, files, batches = run_writer(e, name, root)
                rows = sum(b.num_rows for b in batches)
                assert rows == records, (name, rows)
                baseline = root / "bucket" / "tables" / "baseline" / name
                direct, direct_cpu = run_pyarrow(batches, baseline)
                results[name] = {
                    "writer_records_s": round(records / seconds),
                    "pyarrow_records_s": round(records / direct),
                    "writer_vs_pyarrow": round(direct / seconds, 3),
                    "writer_vs_pyarrow_cpu": round(direct_cpu / cpu, 3),
                    "commits": commits,
                    "files": files,
                    "before_records_s": round(records / before),
                    "before_vs_pyarrow": round(direct / before, 3),
                    "before_vs_pyarrow_cpu": round(direct_cpu / before_cpu, 3),
                    "before_commits": before_commits,
                    "after_vs_before_cpu": round(before_cpu / cpu, 3),
                }
        finally:
            e.close()
    _harness.report(results, args.json, _table)


def _table(results: dict[str, Any]) -> None:
    print(
        f"topic to Iceberg table, {results['records']} records of ~{results['value_bytes']} "
        f"bytes over {results['partitions']} partitions, native: {results['implementation']}"
    )
    for name in ("raw", "typed"):
        row = results[name]
        print(
            f"  {name:<5} writer {row['writer_records_s']:>9,} rec/s   "
            f"pyarrow alone {row['pyarrow_records_s']:>9,} rec/s   "
            f"writer/pyarrow {row['writer_vs_pyarrow']:.3f} "
            f"(CPU {row['writer_vs_pyarrow_cpu']:.3f})   "
            f"({row['commits']} commits, {row['files']} files)"
        )
        print(
            f"        before  {row['before_records_s']:>9,} rec/s   "
            f"writer/pyarrow {row['before_vs_pyarrow']:.3f} "
            f"(CPU {row['before_vs_pyarrow_cpu']:.3f})   "
            f"({row['before_commits']} commits)   "
            f"after/before by CPU {row['after_vs_before_cpu']:.3f}"
        )


if __name__ == "__main__":
    main()
