"""A table topic's table is partitioned by the day (or hour) of the record's
timestamp unless its ``tidelog.table.partition`` says otherwise: each
commit writes one data file per partition it touches, a scan filtered on a
day plans only that day's files, and a kill -9 at the catalog's swap still
leaves every record in the table once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from pyiceberg.transforms import DayTransform, HourTransform
from pyiceberg.types import TimestamptzType

import native
from engine.engine import Engine
from engine.errors import InvalidConfig
from engine.tables.partitions import _transformed
from native.records import NO_TIMESTAMP, RecordSpec
from tests.tables.conftest import TABLE_ON, catalog_of, committed_records, record_rows, table_rows
from tests.tables.swap_kill import (
    SWAP_KILLS,
    kill_at_the_swap,
    log_after_restart,
    table_of,
    table_records,
)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
T0 = 1_700_006_400_000
"""2023-11-15T00:00:00Z: the start of a day."""


def _produce_over_days(engine: Engine, topic: str, days: int = 3, per_day: int = 10) -> None:
    """``per_day`` records on each of ``days`` days, an hour apart, over two partitions."""
    producer = engine.producer()
    for day in range(days):
        for i in range(per_day):
            producer.send(
                topic,
                f"d{day}-{i}".encode(),
                key=b"k",
                headers=[("day", str(day).encode())],
                partition=i % 2,
                timestamp=T0 + day * DAY_MS + i * HOUR_MS,
            )
    producer.flush()
    producer.close()


def _files(table: Any, row_filter: Any = None) -> list[Any]:
    scan = table.scan() if row_filter is None else table.scan(row_filter=row_filter)
    return [task.file for task in scan.plan_files()]


def _day(epoch_day: int) -> datetime:
    return datetime.fromtimestamp(epoch_day * 86_400, UTC)


def test_a_new_table_is_partitioned_by_day_and_a_day_scan_reads_only_its_files(
    engine: Engine, tmp_path: Path
) -> None:
    engine.create_topic("steps", 2, TABLE_ON)
    engine.commit_tables()  # the first pass, with nothing yet: the next waits an hour
    _produce_over_days(engine, "steps")
    assert engine.flush(30)
    engine.commit_tables()

    table = catalog_of(tmp_path).load_table(("tidelog", "steps"))
    spec = table.spec()
    assert [(f.name, f.source_id, f.transform) for f in spec.fields] == [
        ("timestamp_day", 3, DayTransform())
    ]
    assert table_rows(table.scan().to_arrow()) == record_rows(committed_records(engine, "steps"))
    # One commit, one data file per day it touched, each holding that day's rows only.
    first_day = T0 // DAY_MS
    files = _files(table)
    assert sorted(f.partition[0] for f in files) == [first_day, first_day + 1, first_day + 2]
    assert all(f.record_count == 10 for f in files)
    assert all(f"timestamp_day={_day(f.partition[0]):%Y-%m-%d}/" in f.file_path for f in files)

    # A scan of the second day plans that day's file alone, and reads its rows.
    start = _day(first_day + 1)
    second_day = And(
        GreaterThanOrEqual("timestamp", start.isoformat()),
        LessThan("timestamp", _day(first_day + 2).isoformat()),
    )
    planned = _files(table, second_day)
    assert [f.partition[0] for f in planned] == [first_day + 1]
    rows = table.scan(row_filter=second_day).to_arrow().to_pylist()
    assert sorted(r["value"] for r in rows) == sorted(f"d1-{i}".encode() for i in range(10))

    # DuckDB over the same scan: the day's rows, counted per hour.
    connection = table.scan(row_filter=second_day).to_duckdb("steps")
    per_hour = connection.execute(
        "SELECT hour(timestamp AT TIME ZONE 'UTC'), count(*) FROM steps GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert per_hour == [(h, 1) for h in range(10)]


def test_hour_and_none_choose_the_new_tables_spec(engine: Engine, tmp_path: Path) -> None:
    engine.create_topic("hourly", 2, {**TABLE_ON, "tidelog.table.partition": "hour"})
    engine.create_topic("whole", 2, {**TABLE_ON, "tidelog.table.partition": "none"})
    engine.commit_tables()
    for topic in ("hourly", "whole"):
        _produce_over_days(engine, topic, days=2, per_day=3)
    assert engine.flush(30)
    engine.commit_tables()
    catalog = catalog_of(tmp_path)

    hourly = catalog.load_table(("tidelog", "hourly"))
    assert [(f.name, f.transform) for f in hourly.spec().fields] == [
        ("timestamp_hour", HourTransform())
    ]
    hours = sorted(f.partition[0] for f in _files(hourly))
    assert hours == sorted(T0 // HOUR_MS + d * 24 + i for d in range(2) for i in range(3))
    one_hour = EqualTo("timestamp", datetime.fromtimestamp((T0 + HOUR_MS) / 1000, UTC).isoformat())
    assert [f.partition[0] for f in _files(hourly, one_hour)] == [T0 // HOUR_MS + 1]

    whole = catalog.load_table(("tidelog", "whole"))
    assert whole.spec().is_unpartitioned()
    assert [f.record_count for f in _files(whole)] == [6]
    for topic, table in (("hourly", hourly), ("whole", whole)):
        expected = record_rows(committed_records(engine, topic))
        assert table_rows(table.scan().to_arrow()) == expected


def test_an_existing_table_keeps_its_spec(engine: Engine, tmp_path: Path) -> None:
    engine.create_topic("kept", 2, {**TABLE_ON, "tidelog.table.partition": "none"})
    engine.commit_tables()
    _produce_over_days(engine, "kept", days=1, per_day=2)
    assert engine.flush(30)
    engine.commit_tables()
    engine.alter_configs("kept", {**TABLE_ON, "tidelog.table.partition": "day"})
    _produce_over_days(engine, "kept", days=2, per_day=2)
    assert engine.flush(30)
    engine.commit_tables()

    table = catalog_of(tmp_path).load_table(("tidelog", "kept"))
    assert table.spec().is_unpartitioned()
    assert sorted(f.record_count for f in _files(table)) == [2, 4]
    assert table_rows(table.scan().to_arrow()) == record_rows(committed_records(engine, "kept"))


def test_an_unknown_partitioning_is_invalid_config(engine: Engine) -> None:
    with pytest.raises(InvalidConfig):
        engine.create_topic("bad", 1, {**TABLE_ON, "tidelog.table.partition": "week"})
    engine.create_topic("good", 1)
    with pytest.raises(InvalidConfig):
        engine.alter_configs("good", {"tidelog.table.partition": "DAY"})


MICROS = st.integers(-(2**62), 2**62)


@given(st.lists(st.none() | MICROS, max_size=40))
def test_day_and_hour_values_are_icebergs_own(micros: list[int | None]) -> None:
    """The values computed with Arrow are those of pyiceberg's reference
    transforms (whole units since the epoch, rounded down before it)."""
    column = pa.chunked_array([pa.array(micros, pa.int64()).cast(pa.timestamp("us", "UTC"))])
    for transform in (DayTransform(), HourTransform()):
        computed = _transformed(transform, column)
        assert computed is not None
        reference = transform.transform(TimestamptzType())
        assert computed.to_pylist() == [reference(m) for m in micros]


def test_a_transform_not_computed_here_is_left_to_pyiceberg() -> None:
    from pyiceberg.transforms import BucketTransform

    column = pa.chunked_array([pa.array([1, 2], pa.int64()).cast(pa.timestamp("us", "UTC"))])
    assert _transformed(BucketTransform(4), column) is None


@pytest.mark.parametrize("when", SWAP_KILLS)
def test_kill_9_at_the_swap_of_a_partitioned_commit_leaves_each_record_once(
    tmp_path: Path, when: str
) -> None:
    """A commit of three days' files killed before or right after the
    catalog's swap: the next writer adds what the table lacks, once."""
    kill_at_the_swap(
        tmp_path, when, 90, {**TABLE_ON, "tidelog.table.partition": "day"}, first_timestamp=T0
    )
    written = list((tmp_path / "objects" / "tables").rglob("*.parquet"))
    assert {p.parent.name for p in written} == {
        f"timestamp_day={_day(T0 // DAY_MS + d):%Y-%m-%d}" for d in range(3)
    }
    assert table_of(tmp_path).scan().to_arrow().num_rows == (0 if when == "before-swap" else 90)

    in_log = log_after_restart(tmp_path / "data", tmp_path / "objects")
    assert len(in_log) == 90
    table = table_of(tmp_path)
    assert table_records(table) == in_log
    per_day: Counter[int] = Counter()
    for data_file in _files(table):
        per_day[data_file.partition[0]] += data_file.record_count
    assert per_day == {T0 // DAY_MS + d: 30 for d in range(3)}


def test_records_without_a_timestamp_go_to_the_null_partition(
    engine: Engine, tmp_path: Path
) -> None:
    engine.create_topic("untimed", 1, TABLE_ON)
    engine.commit_tables()
    batch = native.encode_batch(
        [RecordSpec(NO_TIMESTAMP, None, b"none"), RecordSpec(T0, None, b"t0")]
    )
    engine.submit("untimed", 0, bytearray(batch)).result(30)
    assert engine.flush(30)
    engine.commit_tables()
    table = catalog_of(tmp_path).load_table(("tidelog", "untimed"))
    by_partition = {f.partition[0]: f.record_count for f in _files(table)}
    assert by_partition == {None: 1, T0 // DAY_MS: 1}
    rows = table.scan().to_arrow().to_pylist()
    assert sorted((r["value"], r["timestamp"] is None) for r in rows) == [
        (b"none", True),
        (b"t0", False),
    ]


def test_a_spec_another_engine_changed_is_written_by(engine: Engine, tmp_path: Path) -> None:
    """A partition field added to the table's spec elsewhere (Spark's ALTER
    TABLE ... ADD PARTITION FIELD): the next commits write by the new spec,
    one file per Kafka partition and day."""
    engine.create_topic("evolved", 2, TABLE_ON)
    engine.commit_tables()
    _produce_over_days(engine, "evolved", days=1, per_day=4)
    assert engine.flush(30)
    engine.commit_tables()
    catalog = catalog_of(tmp_path)
    with catalog.load_table(("tidelog", "evolved")).update_spec() as update:
        update.add_identity("partition")
    _produce_over_days(engine, "evolved", days=2, per_day=4)
    assert engine.flush(30)
    engine.commit_tables()

    table = catalog.load_table(("tidelog", "evolved"))
    first_day = T0 // DAY_MS
    by_file = sorted((tuple(f.partition), f.record_count) for f in _files(table))
    assert by_file == [
        ((first_day,), 4),  # the first commit, by the spec of then
        ((first_day, 0), 2),
        ((first_day, 1), 2),
        ((first_day + 1, 0), 2),
        ((first_day + 1, 1), 2),
    ]
    assert table_rows(table.scan().to_arrow()) == record_rows(committed_records(engine, "evolved"))
