"""The table's columns: the Iceberg schema of a topic's table and the Arrow
table of a commit's records (docs/tables.md, "Columns").

Imported by the writer only: it needs pyiceberg and pyarrow.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
)

from engine.tables.typed_values import TypedField, ValueDecoder
from engine.types import ConsumerRecord
from native.records import NO_TIMESTAMP

TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
"""The ``timestamp_type`` column's values, by the batch's timestamp type bit."""

_KIND_TYPES: dict[str, IcebergType] = {
    "string": StringType(),
    "json": StringType(),
    "long": LongType(),
    "int": IntegerType(),
    "double": DoubleType(),
    "float": FloatType(),
    "boolean": BooleanType(),
    "binary": BinaryType(),
    "timestamp": TimestamptzType(),
}


def table_schema(decoder: ValueDecoder | None) -> Schema:
    """The Iceberg schema of a topic's table: the record's own columns, and
    with a decoder, ``value_error`` and the typed columns."""
    fields = [
        NestedField(1, "partition", IntegerType(), required=True),
        NestedField(2, "offset", LongType(), required=True),
        NestedField(3, "timestamp", TimestamptzType(), required=False),
        NestedField(4, "timestamp_type", StringType(), required=True),
        NestedField(5, "key", BinaryType(), required=False),
        NestedField(
            6,
            "headers",
            ListType(
                7,
                StructType(
                    NestedField(8, "key", StringType(), required=True),
                    NestedField(9, "value", BinaryType(), required=False),
                ),
                element_required=True,
            ),
            required=True,
        ),
        NestedField(10, "value", BinaryType(), required=False),
    ]
    if decoder is not None:
        fields.append(NestedField(11, "value_error", StringType(), required=False))
        fields += [
            NestedField(12 + i, f.column, _KIND_TYPES[f.kind], required=False)
            for i, f in enumerate(decoder.fields)
        ]
    return Schema(*fields)


def partition_spec() -> PartitionSpec:
    """None: each commit's data files hold the records of one commit
    interval, so their timestamp and offset bounds (kept per file in the
    manifests) already let every engine skip the files outside a time or
    offset window; a day(timestamp) partition would split each commit's
    files further and, written from Python, needs pyiceberg-core (Rust),
    which the ``tables`` extra does not carry (docs/tables.md)."""
    return PartitionSpec()


def arrow_rows(
    records: Sequence[ConsumerRecord],
    schema: pa.Schema,
    decoder: ValueDecoder | None,
    typed: Sequence[TypedField],
) -> pa.Table:
    """The records as an Arrow table of ``schema`` (the table's current
    schema as Arrow); ``typed`` are the decoder's fields the table has."""
    columns: dict[str, Any] = {
        "partition": [r.partition for r in records],
        "offset": [r.offset for r in records],
        "timestamp": [None if r.timestamp == NO_TIMESTAMP else r.timestamp * 1000 for r in records],
        "timestamp_type": [TIMESTAMP_TYPES[r.timestamp_type] for r in records],
        "key": [r.key for r in records],
        "headers": None,  # built flat below: one dict per header costs more than the rest
        "value": [r.value for r in records],
    }
    if decoder is not None:
        rows = [decoder.row(r.value) for r in records]
        columns["value_error"] = [error for _, error in rows]
        wanted = {f.column for f in typed}
        for index, field in enumerate(decoder.fields):
            if field.column in wanted:
                columns[field.column] = [values[index] for values, _ in rows]
    arrays = []
    for field in schema:
        values = columns.get(field.name)
        if field.name == "headers":
            arrays.append(_headers(records, field.type))
            continue
        if values is None:  # a column of an older schema version the decoder no longer has
            values = [None] * len(records)
        if pa.types.is_timestamp(field.type) and field.name == "timestamp":
            arrays.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _headers(records: Sequence[ConsumerRecord], list_type: pa.DataType) -> pa.Array:
    """The headers column from flat lists (keys, values, and where each
    record's headers end), without a Python object per header."""
    pairs = list(itertools.chain.from_iterable(r.headers for r in records))
    ends = itertools.accumulate((len(r.headers) for r in records), initial=0)
    struct_type = list_type.value_type
    keys = pa.array([k for k, _ in pairs], struct_type.field("key").type)
    values = pa.array([v for _, v in pairs], struct_type.field("value").type)
    items = pa.StructArray.from_arrays(
        [keys, values], fields=[struct_type.field("key"), struct_type.field("value")]
    )
    if pa.types.is_large_list(list_type):  # what pyiceberg's as_arrow gives
        return pa.LargeListArray.from_arrays(
            pa.array(list(ends), pa.int64()), items, type=list_type
        )
    return pa.ListArray.from_arrays(pa.array(list(ends), pa.int32()), items, type=list_type)
