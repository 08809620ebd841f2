"""How a topic's table is partitioned, and the append that writes one data
file per partition of a commit's rows (docs/tables.md, "Partitions").

A new table is partitioned by the day (or hour) of the record's timestamp
unless the topic's ``tidelog.table.partition`` says otherwise; a table
keeps the spec it was created with. pyiceberg computes partition values with
pyiceberg-core (Rust), which the ``tables`` extra does not carry: the values
of the transforms a table of tidelog's can have (day, hour, identity) are
computed here with Arrow's compute functions, the rows of each are written
as their own data file, and the files are added in one append (a merge
append: it merges the table's manifests as its properties say). A spec
with another transform (added by another engine) goes through pyiceberg's
own append.

Imported by the writer only: it needs pyiceberg and pyarrow.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.pyarrow import write_file
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import (
    PartitionField,
    PartitionFieldValue,
    PartitionKey,
    PartitionSpec,
)
from pyiceberg.schema import Schema
from pyiceberg.table import Table, WriteTask
from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, Transform

from engine.tables import pyiceberg_parts  # noqa: F401  (checks _written_manifests on import)
from engine.tables.transaction import ViewOnceTransaction

TIMESTAMP_FIELD_ID = 3
"""The ``timestamp`` column's Iceberg field id (columns.table_schema)."""

FIRST_PARTITION_FIELD_ID = 1000
"""Where Iceberg's partition field ids start."""

_MICROS = {DayTransform: 86_400_000_000, HourTransform: 3_600_000_000}
"""Microseconds per unit of the time transforms computed here."""


def partition_spec(partition: str) -> PartitionSpec:
    """The spec of a new table for the topic config's value: ``day`` /
    ``hour`` of the timestamp column, or ``none``."""
    if partition == "none":
        return PartitionSpec()
    transform: Transform[Any, Any] = DayTransform() if partition == "day" else HourTransform()
    return PartitionSpec(
        PartitionField(
            source_id=TIMESTAMP_FIELD_ID,
            field_id=FIRST_PARTITION_FIELD_ID,
            transform=transform,
            name=f"timestamp_{partition}",
        )
    )


def write_data_files(
    table: Table, rows: pa.Table, write_uuid: uuid.UUID, first_task_id: int
) -> list[DataFile] | None:
    """Writes ``rows`` (of the table's current schema) as Parquet data files,
    one per partition, named by ``write_uuid`` and task ids from
    ``first_task_id``; None (nothing written) when the table's spec has a
    transform not computed here (append_by_pyiceberg writes those)."""
    if not rows.num_rows:  # the positions moved past markers or aborted records only
        return []
    spec = table.spec()
    schema = table.schema()
    groups = iter([(None, rows)]) if spec.is_unpartitioned() else _partitions(spec, schema, rows)
    if groups is None:
        return None
    tasks = (
        WriteTask(
            write_uuid=write_uuid,
            task_id=first_task_id + index,
            schema=schema,
            record_batches=part.to_batches(),
            partition_key=key,
        )
        for index, (key, part) in enumerate(groups)
    )
    return list(write_file(table.io, table.metadata, tasks))


def append_data_files(
    table: Table, data_files: Sequence[DataFile], snapshot_properties: Mapping[str, str]
) -> None:
    """Adds ``data_files`` to the table in one snapshot with
    ``snapshot_properties`` in its summary: a merge append, which merges the
    table's manifests as its properties say; raises CommitFailedException if
    another writer committed first."""
    with ViewOnceTransaction(table) as txn:
        update = txn.update_snapshot(snapshot_properties=dict(snapshot_properties))
        with update.merge_append() as append_files:
            for data_file in data_files:
                append_files.append_data_file(data_file)
            # The producer's own list: it writes the new files' manifest before
            # merging it into another, and no manifest list ever names it then.
            written = append_files._written_manifests
    _delete_unnamed(table, written)


def append_by_pyiceberg(
    table: Table, rows: pa.Table, snapshot_properties: Mapping[str, str]
) -> None:
    """Appends ``rows`` through pyiceberg's own append (its transforms need
    pyiceberg-core): for a spec with a transform another engine added."""
    table.append(rows, snapshot_properties=dict(snapshot_properties))


def _delete_unnamed(table: Table, written: Sequence[str]) -> None:
    """Deletes the manifests of ``written`` the table's current snapshot does
    not name (the new files' manifest a merge took in). One left by a crash
    before this is an orphan, for Iceberg's orphan-file removal."""
    snapshot = table.current_snapshot()
    if snapshot is None or not written:
        return
    named = {manifest.manifest_path for manifest in snapshot.manifests(table.io)}
    for path in written:
        if path not in named:
            with contextlib.suppress(FileNotFoundError):
                table.io.delete(path)


def _partitions(
    spec: PartitionSpec, schema: Schema, rows: pa.Table
) -> Iterator[tuple[PartitionKey, pa.Table]] | None:
    """Each partition's key and rows (in the order given), or None when a
    field's transform is not one computed here."""
    values = []
    for field in spec.fields:
        column = schema.find_column_name(field.source_id)
        if column is None or column not in rows.column_names:
            return None
        value = _transformed(field.transform, rows.column(column))
        if value is None:
            return None
        values.append(value)
    names = [f"_p{i}" for i in range(len(values))]
    keys = pa.table(dict(zip(names, values, strict=True)))
    combinations = keys.group_by(names, use_threads=False).aggregate([]).to_pylist()
    return _split(spec, schema, rows, keys, names, combinations)


def _split(
    spec: PartitionSpec,
    schema: Schema,
    rows: pa.Table,
    keys: pa.Table,
    names: list[str],
    combinations: list[dict[str, Any]],
) -> Iterator[tuple[PartitionKey, pa.Table]]:
    for combination in combinations:
        if len(combinations) == 1:
            part = rows
        else:
            masks = [
                pc.is_null(keys[name])
                if combination[name] is None
                else pc.equal(keys[name], combination[name])
                for name in names
            ]
            part = rows.filter(functools.reduce(pc.and_, masks))
        key = PartitionKey(
            field_values=[
                PartitionFieldValue(field, combination[name])
                for field, name in zip(spec.fields, names, strict=True)
            ],
            partition_spec=spec,
            schema=schema,
        )
        yield key, part


def _transformed(transform: Transform[Any, Any], column: pa.ChunkedArray) -> pa.Array | None:
    """The partition values of ``column`` by ``transform`` as Iceberg
    defines them (day / hour: whole units since the epoch, rounded down),
    or None for a transform not computed here."""
    if isinstance(transform, IdentityTransform):
        return column.combine_chunks()
    unit = _MICROS.get(type(transform))
    if unit is None or not pa.types.is_timestamp(column.type) or column.type.unit != "us":
        return None
    micros = column.combine_chunks().cast(pa.int64())
    quotient = pc.divide(micros, unit)  # rounds toward zero
    below = pc.less(micros, pc.multiply(quotient, unit))  # a negative one that was not whole
    return pc.subtract(quotient, below.cast(pa.int64())).cast(pa.int32())
