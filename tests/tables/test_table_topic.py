"""A table topic's Iceberg table holds exactly the topic's committed
records, once each, and only once they are in object storage."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.errors import InvalidConfig
from engine.tables import writer as table_writer
from tests.tables.conftest import (
    TABLE_ON,
    catalog_of,
    committed_records,
    open_engine,
    record_rows,
    table_rows,
)

TOPIC = "agent.calls-v1"
TABLE = ("tidelog", "agent_calls_v1")


def _produce_mixed(engine: Engine, topic: str, start: int) -> None:
    """Plain records, a committed transaction and an aborted one, over two partitions."""
    producer = engine.producer()
    for i in range(start, start + 20):
        producer.send(
            topic,
            f"plain-{i}".encode(),
            key=f"k{i}".encode() if i % 3 else None,
            headers=[("trace", f"t{i}".encode()), ("empty", None)] if i % 2 else [],
            partition=i % 2,
            timestamp=1_700_000_000_000 + i,
        )
    producer.flush()
    producer.close()
    txn = engine.producer(transactional_id=f"txn-{topic}-{start}")
    txn.init_transactions()
    txn.begin_transaction()
    for i in range(5):
        txn.send(topic, f"committed-{start}-{i}".encode(), partition=i % 2)
    txn.commit_transaction()
    txn.begin_transaction()
    for i in range(5):
        txn.send(topic, f"aborted-{start}-{i}".encode(), partition=i % 2)
        txn.flush()  # written, so the abort leaves it aborted (unsent, it would fail)
    txn.abort_transaction()
    txn.close()


def test_the_table_holds_the_committed_records_exactly(engine: Engine, tmp_path: Path) -> None:
    engine.create_topic(TOPIC, 2, TABLE_ON)
    _produce_mixed(engine, TOPIC, 0)
    assert engine.flush(30)
    engine.commit_tables()

    expected = record_rows(committed_records(engine, TOPIC))
    assert len(expected) == 25
    table = catalog_of(tmp_path).load_table(TABLE)
    arrow = table.scan().to_arrow()
    assert table_rows(arrow) == expected
    values = {row["value"] for row in arrow.to_pylist()}
    assert not any(v.startswith(b"aborted") for v in values)

    # The same rows through DuckDB, as a user's SQL reads them.
    connection = table.scan().to_duckdb("calls")
    found = connection.execute(
        'SELECT "partition", "offset", epoch_ms(timestamp), timestamp_type, key, value, headers '
        "FROM calls"
    ).fetchall()
    assert (
        sorted(
            (p, o, t, tt, k, v, [(h["key"], h["value"]) for h in hs])
            for p, o, t, tt, k, v, hs in found
        )
        == expected
    )
    # Every partition's next offset is in the snapshot summary, past the markers.
    summary = table.current_snapshot().summary
    positions = json.loads(summary.get(table_writer.OFFSETS))
    assert positions == {str(p): engine.offsets(TOPIC, p)[1] for p in range(2)}


def test_only_records_in_object_storage_reach_the_table(tmp_path: Path) -> None:
    with open_engine(tmp_path, uploads=False) as engine:
        engine.create_topic(TOPIC, 1, TABLE_ON)
        producer = engine.producer()
        for i in range(10):
            producer.send(TOPIC, f"v{i}".encode())
        producer.flush()  # acknowledged: in the fsynced WAL, not in an object yet
        assert engine.offsets(TOPIC, 0)[1] == 10
        assert engine.store.remote_end_offset(engine.partition(TOPIC, 0).stream_id) == 0
        engine.commit_tables()
        table = catalog_of(tmp_path).load_table(TABLE)
        assert table.scan().to_arrow().num_rows == 0
        assert engine.flush(30)
        engine.commit_tables()
        table = catalog_of(tmp_path).load_table(TABLE)
        assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(10))


def test_a_restarted_engine_resumes_where_the_table_stands(tmp_path: Path) -> None:
    with open_engine(tmp_path) as engine:
        engine.create_topic(TOPIC, 2, TABLE_ON)
        _produce_mixed(engine, TOPIC, 0)
        assert engine.flush(30)
        engine.commit_tables()
    with open_engine(tmp_path) as engine:
        _produce_mixed(engine, TOPIC, 100)
        assert engine.flush(30)
        engine.commit_tables()
        engine.commit_tables()  # nothing new: no second copy of anything
        expected = record_rows(committed_records(engine, TOPIC))
    table = catalog_of(tmp_path).load_table(TABLE)
    rows = table_rows(table.scan().to_arrow())
    assert len(expected) == 50
    assert rows == expected


def test_a_conflicting_commit_is_retried_from_the_tables_state(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer commits the same records between our read of the
    table's positions and our append: ours fails, reads again, adds nothing twice."""
    engine.create_topic(TOPIC, 2, TABLE_ON)
    engine.commit_tables()
    _produce_mixed(engine, TOPIC, 0)
    assert engine.flush(30)

    catalog = catalog_of(tmp_path)
    partitions = [engine.partition(TOPIC, p) for p in range(2)]
    topic_id = engine.topic_shape(TOPIC)[0]

    def writer() -> table_writer.TableWriter:
        return table_writer.TableWriter(
            catalog, "tidelog", TOPIC, topic_id, lambda: partitions, engine.schemas, 1 << 20
        )

    ours, theirs = writer(), writer()
    original = table_writer.TableWriter._commit_once
    raced = []

    def commit_once(self, table, positions):  # type: ignore[no-untyped-def]
        if self is ours and not raced:
            raced.append(theirs.commit())  # lands first, from the same positions
        return original(self, table, positions)

    monkeypatch.setattr(table_writer.TableWriter, "_commit_once", commit_once)
    result = ours.commit()
    assert raced[0].records == 25
    assert result.conflicts == 1
    assert result.records == 0
    rows = table_rows(catalog.load_table(TABLE).scan().to_arrow())
    assert rows == record_rows(committed_records(engine, TOPIC))


def test_two_writers_taking_turns_add_every_record_once(engine: Engine, tmp_path: Path) -> None:
    """Each commit starts from the table's state in the catalog, whoever
    made it: writers taking turns (a takeover and back) repeat nothing."""
    engine.create_topic(TOPIC, 2, TABLE_ON)
    engine.commit_tables()  # the engine's own writer: created the table, then waits an hour
    catalog = catalog_of(tmp_path)
    partitions = [engine.partition(TOPIC, p) for p in range(2)]
    topic_id = engine.topic_shape(TOPIC)[0]

    def writer() -> table_writer.TableWriter:
        return table_writer.TableWriter(
            catalog, "tidelog", TOPIC, topic_id, lambda: partitions, engine.schemas, 1 << 20
        )

    ours, theirs = writer(), writer()
    for start, committer in ((0, ours), (100, theirs), (200, ours)):
        _produce_mixed(engine, TOPIC, start)
        assert engine.flush(30)
        result = committer.commit()
        assert (result.records, result.conflicts) == (25, 0)
    rows = table_rows(catalog.load_table(TABLE).scan().to_arrow())
    assert rows == record_rows(committed_records(engine, TOPIC))
    assert len(rows) == 75


def test_table_configs_are_checked_and_can_be_turned_on_later(
    engine: Engine, tmp_path: Path
) -> None:
    with pytest.raises(InvalidConfig):
        engine.create_topic("bad", 1, {"tidelog.table.enable": "yes"})
    with pytest.raises(InvalidConfig):
        engine.create_topic("bad", 1, {"tidelog.table.commit.interval.ms": "10"})
    engine.create_topic("later", 1)
    producer = engine.producer()
    producer.send("later", b"before the table")
    producer.flush()
    with pytest.raises(InvalidConfig):
        engine.alter_configs("later", {"tidelog.table.enable": "2"})
    engine.alter_configs("later", {"tidelog.table.enable": "true"})
    assert engine.flush(30)
    engine.commit_tables()
    table = catalog_of(tmp_path).load_table(("tidelog", "later"))
    assert table.scan().to_arrow().column("value").to_pylist() == [b"before the table"]
    status = {s.topic: s for s in engine.table_status()}
    assert status["later"].records == 1
    assert status["later"].lag == 0
    metrics = engine.metrics().text()
    assert 'tidelog_table_records_total{topic="later"} 1.0' in metrics


def test_an_engine_without_table_topics_never_imports_pyiceberg(tmp_path: Path) -> None:
    script = f"""
import sys
from engine.engine import Engine, EngineConfig
with Engine.open({str(tmp_path / "d")!r}, None, EngineConfig.small()) as engine:
    engine.create_topic("plain", 1)
    producer = engine.producer()
    producer.send("plain", b"x")
    producer.flush()
    engine.flush(30)
heavy = sorted(m for m in ("pyiceberg", "pyarrow") if m in sys.modules)
print(",".join(heavy) or "none")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "none"


def test_a_lost_sqlite_catalog_registers_the_table_from_its_files(tmp_path: Path) -> None:
    """A fresh machine with the bucket and no catalog: the table is found in
    the warehouse and goes on, its history kept, no record twice."""
    with open_engine(tmp_path) as engine:
        engine.create_topic(TOPIC, 2, TABLE_ON)
        _produce_mixed(engine, TOPIC, 0)
        assert engine.flush(30)
        engine.commit_tables()
    before = catalog_of(tmp_path).load_table(TABLE)
    (tmp_path / "data" / "tables" / "catalog.db").unlink()
    with open_engine(tmp_path) as engine:
        _produce_mixed(engine, TOPIC, 100)
        assert engine.flush(30)
        engine.commit_tables()
        expected = record_rows(committed_records(engine, TOPIC))
    after = catalog_of(tmp_path).load_table(TABLE)
    assert after.metadata.table_uuid == before.metadata.table_uuid
    assert before.current_snapshot().snapshot_id in {s.snapshot_id for s in after.snapshots()}
    assert table_rows(after.scan().to_arrow()) == expected


def test_a_new_topic_of_a_deleted_ones_name_does_not_write_into_its_table(
    engine: Engine, tmp_path: Path
) -> None:
    engine.create_topic("reborn", 1, TABLE_ON)
    producer = engine.producer()
    producer.send("reborn", b"first life")
    producer.flush()
    assert engine.flush(30)
    engine.commit_tables()
    engine.delete_topic("reborn")
    engine.create_topic("reborn", 1, TABLE_ON)
    producer.send("reborn", b"second life")
    producer.flush()
    assert engine.flush(30)
    with pytest.raises(table_writer.TableNameTaken, match="earlier topic"):
        engine.commit_tables()
    table = catalog_of(tmp_path).load_table(("tidelog", "reborn"))
    assert table.scan().to_arrow().column("value").to_pylist() == [b"first life"]
    catalog_of(tmp_path).drop_table(("tidelog", "reborn"))
    engine.commit_tables()
    table = catalog_of(tmp_path).load_table(("tidelog", "reborn"))
    assert table.scan().to_arrow().column("value").to_pylist() == [b"second life"]


def test_the_thread_commits_once_enough_records_wait(tmp_path: Path) -> None:
    """With an hour's interval, the table thread commits only when
    commit_records settled records wait (the size trigger)."""

    def produce(count: int) -> None:
        producer = engine.producer()
        for i in range(count):
            producer.send("sized", f"v{i}".encode())
        producer.flush()
        assert engine.flush(30)

    def rows() -> int:
        return int(catalog_of(tmp_path).load_table(("tidelog", "sized")).scan().count())

    with open_engine(tmp_path, commit_records=50, poll_interval_s=0.05) as engine:
        engine.create_topic("sized", 1, TABLE_ON)
        produce(10)
        engine.commit_tables()
        produce(20)
        for _ in range(20):  # twenty passes of the thread: 20 records are not enough
            time.sleep(0.05)
        assert rows() == 10
        assert engine.table_status()[0].lag == 20
        produce(40)
        deadline = time.monotonic() + 30
        while rows() < 70 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rows() == 70


def test_a_commit_landing_while_the_schema_grows_is_not_written_over(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer appends the same records between our schema update
    (new typed columns) and our append: ours starts again, adds nothing twice."""
    engine.create_topic("growing", 1, TABLE_ON)
    engine.commit_tables()  # the table, without typed columns
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    engine.schemas.register("growing-value", json.dumps(schema), "JSON")
    producer = engine.producer()
    for i in range(5):
        producer.send("growing", json.dumps({"n": i}).encode())
    producer.flush()
    assert engine.flush(30)

    catalog = catalog_of(tmp_path)
    partitions = [engine.partition("growing", 0)]
    topic_id = engine.topic_shape("growing")[0]

    def writer() -> table_writer.TableWriter:
        return table_writer.TableWriter(
            catalog, "tidelog", "growing", topic_id, lambda: partitions, engine.schemas, 1 << 20
        )

    ours, theirs = writer(), writer()
    original = table_writer.TableWriter._evolve
    raced = []

    def evolve(self, table):  # type: ignore[no-untyped-def]
        grown, typed = original(self, table)
        if self is ours and not raced:
            raced.append(theirs.commit())  # lands after our schema update
            grown = catalog.load_table(self.identifier)
        return grown, typed

    monkeypatch.setattr(table_writer.TableWriter, "_evolve", evolve)
    result = ours.commit()
    assert raced[0].records == 5
    assert (result.records, result.conflicts) == (0, 1)
    rows = catalog.load_table(("tidelog", "growing")).scan().to_arrow().to_pylist()
    assert sorted(row["n"] for row in rows) == [0, 1, 2, 3, 4]


def test_records_deleted_before_the_table_got_them_are_counted(
    engine: Engine, tmp_path: Path
) -> None:
    engine.create_topic("trimmed", 1, {**TABLE_ON, "tidelog.table.enable": "false"})
    producer = engine.producer()
    for i in range(10):
        producer.send("trimmed", f"v{i}".encode())
    producer.flush()
    assert engine.flush(30)
    assert engine.delete_records("trimmed", 0, 4) == 4
    engine.alter_configs("trimmed", {"tidelog.table.enable": "true"})
    engine.commit_tables()
    table = catalog_of(tmp_path).load_table(("tidelog", "trimmed"))
    assert sorted(table.scan().to_arrow().column("offset").to_pylist()) == list(range(4, 10))
    (status,) = engine.table_status()
    assert (status.skipped, status.records, status.lag) == (4, 6, 0)
    assert 'tidelog_table_skipped_records_total{topic="trimmed"} 4.0' in engine.metrics().text()


def test_an_expired_snapshot_holding_the_positions_stops_the_writes(
    engine: Engine, tmp_path: Path
) -> None:
    """A maintenance job's snapshot on top and the last one of tidelog's
    expired under it: the positions are gone, and the writer writes nothing
    rather than the whole log again."""
    engine.create_topic("expired", 1, TABLE_ON)
    producer = engine.producer()
    for i in range(5):
        producer.send("expired", f"v{i}".encode())
    producer.flush()
    assert engine.flush(30)
    engine.commit_tables()
    catalog = catalog_of(tmp_path)
    table = catalog.load_table(("tidelog", "expired"))
    ours = table.current_snapshot().snapshot_id
    table.append(table.scan().to_arrow().slice(0, 0))  # another writer's snapshot, no positions
    table.maintenance.expire_snapshots().by_id(ours).commit()
    producer.send("expired", b"later")
    producer.flush()
    producer.close()
    assert engine.flush(30)

    with pytest.raises(table_writer.PositionsExpired, match="positions are lost"):
        engine.commit_tables()
    (status,) = engine.table_status()
    assert "PositionsExpired" in status.last_error
    rows = catalog.load_table(("tidelog", "expired")).scan().to_arrow()
    assert sorted(rows.column("value").to_pylist()) == [f"v{i}".encode() for i in range(5)]
