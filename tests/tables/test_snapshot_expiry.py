"""The table thread expires a table's old snapshots after its commits
([tables] keep_snapshots_s, keep_snapshots, expire_interval_s), never the
newest one with the writer's positions nor any after it, and the table
keeps every record exactly once through expiry and restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import clock
from engine.engine import Engine
from engine.server.config import ConfigFileError, load_config_file
from engine.tables import TablesConfig
from engine.tables.expiry import (
    ExpiryPolicy,
    expire_snapshots,
    newest_positions,
    snapshots_to_expire,
)
from engine.tables.writer import OFFSETS as OFFSETS_KEY
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

TOPIC = "expiring"
TABLE = ("tidelog", "expiring")


def _create(engine: Engine, partitions: int = 2) -> None:
    engine.create_topic(TOPIC, partitions, TABLE_ON)
    engine.commit_tables()  # the thread's first pass, with nothing yet: the next waits an hour


def _commit_some(engine: Engine, first: int, count: int) -> None:
    commit_rounds(engine, TOPIC, first, count)


def _snapshot_ids(tmp_path: Path) -> list[int]:
    table = catalog_of(tmp_path).load_table(TABLE)
    return [s.snapshot_id for s in table.metadata.snapshots]


def _assert_rows_exactly_once(engine: Engine, tmp_path: Path) -> None:
    expected = record_rows(committed_records(engine, TOPIC))
    rows = table_rows(catalog_of(tmp_path).load_table(TABLE).scan().to_arrow())
    assert rows == expected


def test_old_snapshots_are_expired_and_every_record_stays_once(tmp_path: Path) -> None:
    with open_engine(tmp_path, keep_snapshots=3, **SHORT_KEEP) as engine:
        _create(engine)
        made = _snapshot_ids(tmp_path)  # the first pass's, positions all 0
        for i in range(8):
            _commit_some(engine, i, 1)
            made.append(_snapshot_ids(tmp_path)[-1])
        assert len(made) == 9
        assert _snapshot_ids(tmp_path) == made[-3:]
        (status,) = engine.table_status()
        assert status.expired_snapshots == 6
        _assert_rows_exactly_once(engine, tmp_path)
        _commit_some(engine, 8, 2)  # commits go on from the kept positions
        _assert_rows_exactly_once(engine, tmp_path)
        assert len(committed_records(engine, TOPIC)) == 20

    with open_engine(tmp_path, keep_snapshots=3, **SHORT_KEEP) as engine:
        engine.commit_tables()
        _commit_some(engine, 10, 2)  # a restart goes on from them too
        assert engine.commit_tables(TOPIC) == {TOPIC: 0}
        _assert_rows_exactly_once(engine, tmp_path)
        assert len(committed_records(engine, TOPIC)) == 24
        assert len(_snapshot_ids(tmp_path)) == 3
        (status,) = engine.table_status()
        assert (status.last_error, status.expired_snapshots) == ("", 2)
        metric = 'tidelog_table_expired_snapshots_total{topic="expiring"} 2.0'
        assert metric in engine.metrics().text()


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param({"keep_snapshots_s": 0}, id="off"),
        pytest.param({"keep_snapshots_s": 3600.0, "expire_interval_s": 0.0}, id="young"),
        pytest.param({"keep_snapshots_s": 0.001, "expire_interval_s": 3600.0}, id="expired-lately"),
    ],
)
def test_snapshots_are_kept_when_expiry_is_off_or_not_due(
    tmp_path: Path, tables: dict[str, Any]
) -> None:
    """Off (0), snapshots younger than keep_snapshots_s, and a table expired
    less than expire_interval_s ago (at its first commit): all are kept."""
    with open_engine(tmp_path, keep_snapshots=1, **tables) as engine:
        _create(engine)
        _commit_some(engine, 0, 4)
        assert len(_snapshot_ids(tmp_path)) == 5  # the first pass's and four commits'
        (status,) = engine.table_status()
        assert status.expired_snapshots == 0
        _assert_rows_exactly_once(engine, tmp_path)


def test_the_newest_positions_and_other_writers_snapshots_after_them_are_kept(
    tmp_path: Path,
) -> None:
    """Two snapshots of another writer (a maintenance job's) on top of
    tidelog's last: an expiry keeping one snapshot keeps all three, and the
    writer goes on from the positions (no PositionsExpired)."""
    with open_engine(tmp_path, keep_snapshots_s=0) as engine:
        _create(engine)
        _commit_some(engine, 0, 3)
        table = catalog_of(tmp_path).load_table(TABLE)
        ours = table.current_snapshot().snapshot_id
        for _ in range(2):
            table.append(table.scan().to_arrow().slice(0, 0))  # no positions in its summary
        table = catalog_of(tmp_path).load_table(TABLE)
        others = [s.snapshot_id for s in table.metadata.snapshots][-2:]
        positions = newest_positions(table)
        assert positions is not None and positions.snapshot_id == ours

        expired = expire_snapshots(table, clock.time_ms() + 1, ExpiryPolicy(0, 1))
        assert expired == 3  # the first pass's and two commits' before ours
        assert _snapshot_ids(tmp_path) == [ours, *others]
        _commit_some(engine, 3, 1)
        (status,) = engine.table_status()
        assert status.last_error == ""
        _assert_rows_exactly_once(engine, tmp_path)
        assert len(committed_records(engine, TOPIC)) == 8


def test_a_failing_expiry_is_logged_and_the_commits_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer's commit in the way (a fault a single engine cannot
    cause on cue): the expiry is tried again later, the rows go in."""
    from pyiceberg.exceptions import CommitFailedException

    from engine.tables import expiry

    def conflict(*args: Any) -> int:
        raise CommitFailedException("the table moved on")

    monkeypatch.setattr(expiry, "expire_snapshots", conflict)
    with open_engine(tmp_path, keep_snapshots=1, **SHORT_KEEP) as engine:
        _create(engine)
        _commit_some(engine, 0, 3)
        (status,) = engine.table_status()
        assert (status.last_error, status.expired_snapshots) == ("", 0)
        assert "expiring snapshots: CommitFailedException: the table moved on" in caplog.text
        _assert_rows_exactly_once(engine, tmp_path)
        assert len(_snapshot_ids(tmp_path)) == 4


def test_a_table_without_the_writers_positions_is_left_alone(tmp_path: Path) -> None:
    """Only other writers' snapshots: nothing tells which are safe to expire."""
    import pyarrow as pa

    (tmp_path / "data" / "tables").mkdir(parents=True)
    catalog = catalog_of(tmp_path, warehouse=f"file://{tmp_path}/warehouse")
    catalog.create_namespace("tidelog")
    table = catalog.create_table(("tidelog", "foreign"), pa.schema([("n", pa.int64())]))
    for n in range(3):
        table.append(pa.table({"n": [n]}))
    assert newest_positions(table) is None
    assert expire_snapshots(table, clock.time_ms() + 1, ExpiryPolicy(0, 1)) == 0
    assert len(catalog.load_table(("tidelog", "foreign")).metadata.snapshots) == 3


def test_the_tables_section_sets_expiry(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(
        "[tables]\nkeep_snapshots_s = 86400\nkeep_snapshots = 5\nexpire_interval_s = 60\n"
    )
    tables = load_config_file(path).engine["tables"]
    assert tables == TablesConfig(keep_snapshots_s=86400, keep_snapshots=5, expire_interval_s=60)
    assert TablesConfig().keep_snapshots_s > 0  # on unless turned off


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        ("keep_snapshots = 0", "keep_snapshots must be a 64-bit integer, 1 or more"),
        ("keep_snapshots_s = -1", "keep_snapshots_s must be a number, from 0 to 1000000000000"),
        ('keep_snapshots_s = "1d"', "must be a number"),
        ("keep_snapshots = 2.5", "must be an integer"),
    ],
)
def test_a_bad_expiry_setting_is_refused(tmp_path: Path, section: str, reason: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(f"[tables]\n{section}\n")
    with pytest.raises(ConfigFileError, match=reason):
        load_config_file(path)


# -- the choice, over any line of snapshots ---------------------------------------------


@st.composite
def _snapshot_lines(draw: st.DrawFn) -> tuple[Any, int, ExpiryPolicy]:
    """A table's metadata with a line of snapshots, some tidelog's (with
    positions), some another writer's, maybe one tagged; a time; a policy."""
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
    from pyiceberg.schema import Schema
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
    from pyiceberg.table.snapshots import Operation, Snapshot, Summary
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

    ours = draw(st.lists(st.booleans(), min_size=1, max_size=30))
    gaps = draw(st.lists(st.integers(0, 5_000), min_size=len(ours), max_size=len(ours)))
    snapshots, timestamp_ms = [], 1_700_000_000_000
    for index, (with_positions, gap) in enumerate(zip(ours, gaps, strict=True)):
        timestamp_ms += gap
        summary = {OFFSETS_KEY: json.dumps({"0": index})} if with_positions else {}
        snapshots.append(
            Snapshot(
                snapshot_id=1000 + index,
                parent_snapshot_id=999 + index if index else None,
                sequence_number=index + 1,
                timestamp_ms=timestamp_ms,
                manifest_list=f"file:///nowhere/snap-{index}.avro",
                summary=Summary(Operation.APPEND, **summary),
            )
        )
    refs = {"main": SnapshotRef(snapshot_id=snapshots[-1].snapshot_id, type=SnapshotRefType.BRANCH)}
    if draw(st.booleans()):
        tagged = draw(st.sampled_from(snapshots)).snapshot_id
        refs["audit"] = SnapshotRef(snapshot_id=tagged, type=SnapshotRefType.TAG)
    base = new_table_metadata(
        Schema(), UNPARTITIONED_PARTITION_SPEC, UNSORTED_SORT_ORDER, "file:///nowhere"
    )
    metadata = base.model_copy(
        update={
            "snapshots": snapshots,
            "refs": refs,
            "current_snapshot_id": snapshots[-1].snapshot_id,
            "last_sequence_number": len(snapshots),
        }
    )
    now_ms = timestamp_ms + draw(st.integers(0, 10_000))
    policy = ExpiryPolicy(draw(st.integers(0, 60_000)), draw(st.integers(1, 5)))
    return metadata, now_ms, policy


@given(_snapshot_lines())
@settings(max_examples=60, deadline=None)
def test_expiry_takes_exactly_the_old_snapshots_before_the_positions(
    line: tuple[Any, int, ExpiryPolicy],
) -> None:
    """Expired: every snapshot older than keep_ms, before the newest with
    positions, not among the newest keep_count and not a ref's head; and
    after pyiceberg removes them, the walk back finds the same positions."""
    from pyiceberg.catalog import load_catalog
    from pyiceberg.io import load_file_io
    from pyiceberg.table import Table
    from pyiceberg.table.update import RemoveSnapshotsUpdate, update_table_metadata

    metadata, now_ms, policy = line
    catalog = load_catalog("expiry", type="sql", uri="sqlite:///:memory:")
    table = Table(("tidelog", "t"), metadata, "file:///nowhere/m.json", load_file_io(), catalog)
    anchor = newest_positions(table)
    expired = snapshots_to_expire(table, now_ms, policy)

    snapshots = metadata.snapshots
    heads = {ref.snapshot_id for ref in metadata.refs.values()}
    newest = {s.snapshot_id for s in snapshots[-policy.keep_count :]}
    wanted = [
        s.snapshot_id
        for s in snapshots
        if anchor is not None
        and s.sequence_number < anchor.sequence_number
        and s.timestamp_ms < now_ms - policy.keep_ms
        and s.snapshot_id not in heads | newest
    ]
    assert expired == wanted
    if anchor is None:
        return
    after = update_table_metadata(metadata, (RemoveSnapshotsUpdate(snapshot_ids=expired),))
    kept = Table(("tidelog", "t"), after, "file:///nowhere/m.json", load_file_io(), catalog)
    found = newest_positions(kept)
    assert found is not None and found.snapshot_id == anchor.snapshot_id


def _every_kept_snapshot_reads(tmp_path: Path) -> None:
    """Every manifest list and manifest that a snapshot still in the table
    names is there (a time-travel read of any of them would need them)."""
    table = catalog_of(tmp_path).load_table(TABLE)
    for snapshot in table.metadata.snapshots:
        for manifest in snapshot.manifests(table.io):  # reads the manifest list
            assert table.io.new_input(manifest.manifest_path).exists(), manifest.manifest_path


def test_an_expiry_whose_answer_is_lost_deletes_nothing_a_kept_snapshot_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The catalog swaps in the expiry and the answer is lost (a timeout
    after the commit): nothing is deleted on the strength of it, the next
    expiries go on from the table as it is, and every record stays once."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.exceptions import CommitStateUnknownException
    from pyiceberg.table.update import RemoveSnapshotsUpdate

    original = SqlCatalog.commit_table
    lost: list[int] = []

    def commit_then_lose_the_answer(self: Any, table: Any, requirements: Any, updates: Any) -> Any:
        response = original(self, table, requirements, updates)
        if not lost and any(isinstance(u, RemoveSnapshotsUpdate) for u in updates):
            lost.append(1)
            raise CommitStateUnknownException("the answer was lost")
        return response

    monkeypatch.setattr(SqlCatalog, "commit_table", commit_then_lose_the_answer)
    with open_engine(tmp_path, keep_snapshots=2, **SHORT_KEEP) as engine:
        _create(engine)
        for i in range(6):
            _commit_some(engine, i, 1)
            _every_kept_snapshot_reads(tmp_path)
            _assert_rows_exactly_once(engine, tmp_path)
        assert lost and "the answer was lost" in caplog.text
        assert len(_snapshot_ids(tmp_path)) == 2
    with open_engine(tmp_path, keep_snapshots=2, **SHORT_KEEP) as engine:
        engine.commit_tables()
        _commit_some(engine, 6, 2)
        _every_kept_snapshot_reads(tmp_path)
        _assert_rows_exactly_once(engine, tmp_path)
