"""Engines with table topics, and the tables read back as a user's query
engine reads them: pyiceberg's catalog and scan, DuckDB over the scan."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine, EngineConfig
from engine.tables import TablesConfig
from engine.types import ConsumerRecord
from tests.s3stream.conftest import S3Endpoint, s3_endpoint  # noqa: F401

TABLE_ON = {"tidelog.table.enable": "true", "tidelog.table.commit.interval.ms": "3600000"}
"""A table topic whose thread commits once at its first pass, then waits
for the tests' own commit_tables calls."""

SHORT_KEEP = {"keep_snapshots_s": 0.001, "expire_interval_s": 0.0}
"""Every snapshot is old enough to expire, and each commit pass expires."""

Headers = list[tuple[str, bytes | None]]
RowKey = tuple[int, int, int | None, str, bytes | None, bytes | None, Headers]


def open_engine(
    data_dir: Path, store: str | None = None, *, uploads: bool = True, **tables: Any
) -> Engine:
    """An engine on ``data_dir``; without ``uploads``, nothing reaches the
    object store before a flush (an hour or 1 GiB between uploads)."""
    tables.setdefault("poll_interval_s", 0.2)
    config = replace(EngineConfig.small(), tables=TablesConfig(**tables))
    if not uploads:
        config = replace(
            config,
            store=replace(config.store, upload_bytes=1 << 30, upload_interval_s=3600.0),
        )
    return Engine.open(data_dir / "data", store or f"file://{data_dir}/objects", config)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    opened = open_engine(tmp_path)
    yield opened
    opened.close()


def catalog_of(data_dir: Path, **properties: str) -> Any:
    """The engine's SQL catalog, opened as another process would."""
    from pyiceberg.catalog import load_catalog

    uri = f"sqlite:///{data_dir / 'data' / 'tables' / 'catalog.db'}"
    return load_catalog("tidelog", type="sql", uri=uri, **properties)


def committed_records(engine: Engine, topic: str) -> list[ConsumerRecord]:
    """What a read_committed consumer reads of the topic now."""
    with engine.replay(engine.snapshot([topic])) as replay:
        return list(replay)


def commit_rounds(
    engine: Engine, topic: str, first: int, count: int, after: Callable[[], None] | None = None
) -> None:
    """``count`` commits of two records each (one per partition of a
    two-partition table topic), each looked at by ``after``."""
    # A commit first, with nothing new to write: the table thread's own
    # first pass of a new engine is then no longer due (TABLE_ON's interval
    # is an hour), and cannot take the rows of the first round before the
    # call that counts them.
    engine.commit_tables(topic)
    with engine.producer() as producer:
        for i in range(first, first + count):
            for partition in (0, 1):
                producer.send(topic, f"v{i}-{partition}".encode(), partition=partition)
            producer.flush()
            assert engine.flush(30)
            assert engine.commit_tables(topic) == {topic: 2}
            if after is not None:
                after()


def record_rows(records: list[ConsumerRecord]) -> list[RowKey]:
    kinds = ("CreateTime", "LogAppendTime")
    return sorted(
        (
            r.partition,
            r.offset,
            r.timestamp,
            kinds[r.timestamp_type],
            r.key,
            r.value,
            [(k, v) for k, v in r.headers],
        )
        for r in records
    )


def table_rows(arrow: Any) -> list[RowKey]:
    """An Arrow table of the table's columns as record_rows gives records."""
    return sorted(
        (
            row["partition"],
            row["offset"],
            None if row["timestamp"] is None else int(row["timestamp"].timestamp() * 1000),
            row["timestamp_type"],
            row["key"],
            row["value"],
            [(h["key"], h["value"]) for h in row["headers"]],
        )
        for row in arrow.to_pylist()
    )
