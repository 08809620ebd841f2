"""A table topic's appends merge its manifests, so the manifest list stays
under a bound however many commits the table takes; expiry deletes the
manifests and manifest lists no kept snapshot names; a writer killed in
the middle of a merge leaves a readable table and goes on exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.engine import Engine, EngineConfig
from engine.tables.partitions import append_data_files, write_data_files
from engine.tables.writer import CHUNKS_PER_COMMIT, MANIFEST_MERGE, MERGE_MANIFESTS_AT
from tests.tables.conftest import (
    SHORT_KEEP,
    TABLE_ON,
    catalog_of,
    commit_rounds,
    committed_records,
    open_engine,
    record_rows,
    table_rows,
)

TOPIC = "merging"
TABLE = ("tidelog", "merging")


def _create(engine: Engine) -> None:
    engine.create_topic(TOPIC, 2, TABLE_ON)
    engine.commit_tables()  # the first pass: the table, with nothing in it yet


def _manifests(table: Any) -> list[str]:
    return [m.manifest_path for m in table.current_snapshot().manifests(table.io)]


def _assert_every_row_once(engine: Engine, root: Path) -> None:
    """pyiceberg's scan and DuckDB over it read each committed record once."""
    table = catalog_of(root).load_table(TABLE)
    expected = record_rows(committed_records(engine, TOPIC))
    assert table_rows(table.scan().to_arrow()) == expected
    duck = table.scan().to_duckdb("merging")
    counted = duck.sql('SELECT count(*), count(DISTINCT ("partition", "offset")) FROM merging')
    assert counted.fetchall() == [(len(expected), len(expected))]


def test_the_manifest_list_stays_under_the_merge_count(tmp_path: Path) -> None:
    """Twice the merge count of commits and more: the current snapshot never
    names MERGE_MANIFESTS_AT manifests (a fast append would name one per
    commit), and every row is read once."""
    lengths: list[int] = []
    with open_engine(tmp_path, keep_snapshots_s=0) as engine:
        _create(engine)
        table = catalog_of(tmp_path).load_table(TABLE)
        assert table.properties["commit.manifest-merge.enabled"] == "true"
        assert table.properties["commit.manifest.min-count-to-merge"] == str(MERGE_MANIFESTS_AT)
        commits = 2 * MERGE_MANIFESTS_AT + 3

        def count_manifests() -> None:
            lengths.append(len(_manifests(catalog_of(tmp_path).load_table(TABLE))))

        commit_rounds(engine, TOPIC, 0, commits, count_manifests)
        assert max(lengths) == MERGE_MANIFESTS_AT - 1
        assert lengths.count(1) >= 2  # merged (at least) twice
        _assert_every_row_once(engine, tmp_path)
        assert len(committed_records(engine, TOPIC)) == 2 * commits


def test_a_tables_own_merge_setting_is_kept(tmp_path: Path) -> None:
    """A table whose owner turned merging off keeps fast appends."""
    with open_engine(tmp_path, keep_snapshots_s=0) as engine:
        _create(engine)
        table = catalog_of(tmp_path).load_table(TABLE)
        with table.transaction() as txn:
            txn.set_properties({"commit.manifest-merge.enabled": "false"})
        commit_rounds(engine, TOPIC, 0, 5)
        table = catalog_of(tmp_path).load_table(TABLE)
        assert table.properties["commit.manifest-merge.enabled"] == "false"
        assert len(_manifests(table)) == 5
        _assert_every_row_once(engine, tmp_path)


def test_expiry_deletes_the_manifests_and_lists_no_kept_snapshot_names(tmp_path: Path) -> None:
    """With merges replacing manifests and expiry on: the table's metadata
    directory holds exactly the manifest lists and manifests of the kept
    snapshots, and the table reads every row once."""
    with open_engine(tmp_path, keep_snapshots=3, **SHORT_KEEP) as engine:
        _create(engine)
        commit_rounds(engine, TOPIC, 0, MERGE_MANIFESTS_AT + 4)
        table = catalog_of(tmp_path).load_table(TABLE)
        assert len(table.metadata.snapshots) == 3
        named = set()
        for snapshot in table.metadata.snapshots:
            named.add(snapshot.manifest_list)
            named.update(m.manifest_path for m in snapshot.manifests(table.io))
        metadata = Path(table.location().removeprefix("file://")) / "metadata"
        on_disk = {f"file://{path}" for path in metadata.glob("*.avro")}
        assert on_disk == named
        _assert_every_row_once(engine, tmp_path)


CHILD = """
import os, signal, sys
from dataclasses import replace
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table.update import snapshot as snapshot_update
from engine.engine import Engine, EngineConfig
from engine.tables import TablesConfig

data_dir, when = sys.argv[1], sys.argv[2]
config = replace(EngineConfig.small(), tables=TablesConfig(poll_interval_s=60, keep_snapshots_s=0))
engine = Engine.open(data_dir + "/data", "file://" + data_dir + "/objects", config)
engine.create_topic("merging", 2, {"tidelog.table.enable": "true",
                                   "tidelog.table.commit.interval.ms": "3600000"})
engine.commit_tables()
catalog = SqlCatalog("tidelog", uri="sqlite:///" + data_dir + "/data/tables/catalog.db")
with catalog.load_table(("tidelog", "merging")).transaction() as txn:
    txn.set_properties({"commit.manifest.min-count-to-merge": "3"})
producer = engine.producer()

def commit(round_):
    for i in range(10):
        producer.send("merging", ("%d-%d" % (round_, i)).encode(), partition=i % 2)
    producer.flush()
    assert engine.flush(30)
    engine.commit_tables("merging")

for round_ in range(2):  # two manifests: the third commit merges
    commit(round_)
merge = snapshot_update._ManifestMergeManager._create_manifest
swap = SqlCatalog.commit_table

def create_manifest(self, spec_id, manifest_bin):
    merged = merge(self, spec_id, manifest_bin)
    if when == "mid-merge":  # the merged manifest is written, no manifest list names it
        os.kill(os.getpid(), signal.SIGKILL)
    return merged

def commit_table(self, table, requirements, updates):
    response = swap(self, table, requirements, updates)
    os.kill(os.getpid(), signal.SIGKILL)  # after-swap: the merge is in, nothing after it ran
    return response

snapshot_update._ManifestMergeManager._create_manifest = create_manifest
if when == "after-swap":
    SqlCatalog.commit_table = commit_table
commit(2)
"""


def test_kill_9_in_a_merge_commit_leaves_a_readable_table_and_the_writer_resumes(
    tmp_path: Path,
) -> None:
    for when, rows_after_kill in (("mid-merge", 20), ("after-swap", 30)):
        root = tmp_path / when
        command = [sys.executable, "-c", CHILD, str(root), when]
        killed_child = subprocess.run(command, check=False, timeout=120)
        assert killed_child.returncode == -signal.SIGKILL, when
        table = catalog_of(root).load_table(TABLE)
        assert table.scan().to_arrow().num_rows == rows_after_kill, when
        merged = 1 if when == "after-swap" else 2  # the merge's, or the two before it
        assert len(_manifests(table)) == merged
        store = f"file://{root / 'objects'}"
        with Engine.open(root / "data", store, EngineConfig.small()) as engine:
            engine.commit_tables()
            commit_rounds(engine, TOPIC, 100, 3)
            _assert_every_row_once(engine, root)
            assert len(committed_records(engine, TOPIC)) == 36
            table = catalog_of(root).load_table(TABLE)
            assert len(_manifests(table)) < 3


def test_a_table_far_behind_commits_once_per_chunks_per_commit_reads(tmp_path: Path) -> None:
    """Reads of commit_bytes each, CHUNKS_PER_COMMIT of them in one snapshot:
    ten reads are two commits (a commit per read before), each record once."""
    with open_engine(tmp_path, keep_snapshots_s=0, commit_bytes=1) as engine:
        engine.create_topic(TOPIC, 1, TABLE_ON)
        engine.commit_tables()
        with engine.producer() as producer:
            for i in range(CHUNKS_PER_COMMIT + 2):  # one stored batch each: one read each
                producer.send(TOPIC, f"v{i}".encode(), partition=0)
                producer.flush()
        assert engine.flush(30)
        before = len(catalog_of(tmp_path).load_table(TABLE).metadata.snapshots)
        assert engine.commit_tables(TOPIC) == {TOPIC: CHUNKS_PER_COMMIT + 2}
        table = catalog_of(tmp_path).load_table(TABLE)
        added = table.metadata.snapshots[before:]
        assert [s.summary["added-records"] for s in added] == [str(CHUNKS_PER_COMMIT), "2"]
        assert [s.summary["added-data-files"] for s in added] == [str(CHUNKS_PER_COMMIT), "2"]
        _assert_every_row_once(engine, tmp_path)


def test_a_table_without_a_merge_setting_gets_tidelogs(tmp_path: Path) -> None:
    """A table made before manifests were merged (no merge property) is
    turned to merging at the writer's next load."""
    with open_engine(tmp_path, keep_snapshots_s=0) as engine:
        _create(engine)
        table = catalog_of(tmp_path).load_table(TABLE)
        with table.transaction() as txn:
            txn.remove_properties(*MANIFEST_MERGE)
    with open_engine(tmp_path, keep_snapshots_s=0) as engine:
        commit_rounds(engine, TOPIC, 0, 1)
        properties = catalog_of(tmp_path).load_table(TABLE).properties
        assert {name: properties.get(name) for name in MANIFEST_MERGE} == MANIFEST_MERGE


@given(
    merge_at=st.integers(2, 6),
    appends=st.lists(st.integers(0, 3), min_size=1, max_size=14),
)
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_merged_appends_stay_bounded_keep_every_row_and_leave_no_unnamed_manifest(
    tmp_path: Path, merge_at: int, appends: list[int]
) -> None:
    """Any run of appends (some of no rows) through the writer's append:
    the list names fewer than the merge count, a scan reads each row once,
    and the metadata directory holds no manifest that no snapshot names."""
    import pyarrow as pa

    root = tmp_path / f"t{uuid.uuid4().hex}"
    (tmp_path / "data" / "tables").mkdir(parents=True, exist_ok=True)
    catalog = catalog_of(tmp_path, warehouse=f"file://{root}")
    catalog.create_namespace_if_not_exists("tidelog")
    table = catalog.create_table(
        ("tidelog", root.name),
        pa.schema([pa.field("n", pa.int64(), nullable=False)]),
        properties={**MANIFEST_MERGE, "commit.manifest.min-count-to-merge": str(merge_at)},
    )
    written = 0
    for count in appends:
        rows = pa.table({"n": pa.array(range(written, written + count), pa.int64())})
        files = write_data_files(table, rows, uuid.uuid4(), 0)
        assert files is not None
        append_data_files(table, files, {"step": str(written)})
        written += count
        assert len(_manifests(table)) < merge_at
    assert sorted(table.scan().to_arrow()["n"].to_pylist()) == list(range(written))
    named = set()
    for snapshot in table.metadata.snapshots:
        named.update(m.manifest_path for m in snapshot.manifests(table.io))
    on_disk = {f"file://{path}" for path in (root / "tidelog").rglob("*-m*.avro")}
    assert on_disk <= named
