"""The table's columns: the Iceberg schema of a topic's table and the Arrow
table of a commit's records (docs/tables.md, "Columns").

Imported by the writer only: it needs pyiceberg and pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
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

import native
from engine.errors import CorruptRecord
from engine.tables.reader import SettledRead
from engine.tables.typed_values import TypedField, ValueDecoder
from native.records import NO_TIMESTAMP, BinaryColumn, RecordColumns

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


class PartitionRead(NamedTuple):
    """One partition's part of a commit: its index and what was read of it."""

    partition: int
    read: SettledRead


def arrow_rows(
    reads: Sequence[PartitionRead],
    schema: pa.Schema,
    decoder: ValueDecoder | None,
    typed: Sequence[TypedField],
) -> pa.Table:
    """The records of ``reads`` as an Arrow table of ``schema`` (the table's
    current schema as Arrow); ``typed`` are the decoder's fields the table
    has. The record's own columns are Arrow arrays over the buffers
    native.decode_columns fills: no Python object per record (the typed
    columns decode each value, in Python)."""
    parts = [
        _record_columns(part.partition, _decode(part), schema)
        for part in reads
        if part.read.batches
    ]
    parts = [part for part in parts if len(part["offset"])]
    count = sum(len(part["offset"]) for part in parts)
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        name: pa.chunked_array([part[name] for part in parts], schema.field(name).type)
        for name in RECORD_COLUMNS
    }
    if decoder is not None:
        rows = [decoder.row(value) for value in columns["value"].to_pylist()]
        columns["value_error"] = pa.array([error for _, error in rows], pa.large_string())
        wanted = {f.column for f in typed}
        for index, field in enumerate(decoder.fields):
            if field.column in wanted:
                values = [values[index] for values, _ in rows]
                columns[field.column] = pa.array(values, schema.field(field.column).type)
    arrays = []
    for field in schema:
        column = columns.get(field.name)
        if column is None:  # a column of an older schema version the decoder no longer has
            column = pa.nulls(count, field.type)
        elif column.type != field.type:
            column = column.cast(field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema).combine_chunks()


RECORD_COLUMNS = ("partition", "offset", "timestamp", "timestamp_type", "key", "headers", "value")
"""The columns every record has (the first seven of the table)."""

_TIMESTAMP_TYPES = pa.array(TIMESTAMP_TYPES, pa.large_string())


def _decode(part: PartitionRead) -> RecordColumns:
    """The partition's records in one decode: its stored batches joined
    first (one copy of at most a commit's read budget, in C without the
    GIL), so the Arrow arrays are built once per partition, not per batch."""
    batches = part.read.batches
    data = batches[0] if len(batches) == 1 else native.join_parts(batches)
    try:
        return native.decode_columns(
            data,
            min_offset=part.read.position,
            skip_control=True,
            max_inflated=part.read.max_inflated,
        )
    except native.BatchError as error:
        raise CorruptRecord(
            f"table of partition {part.partition}: a stored batch cannot be decoded: {error}"
        ) from error


def _record_columns(partition: int, decoded: RecordColumns, schema: pa.Schema) -> dict[str, Any]:
    """The record's own columns of one decode_columns result, as Arrow arrays
    over its buffers."""
    n = decoded.records
    timestamps_ms = pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(decoded.timestamps)])
    timestamps = pc.if_else(
        pc.equal(timestamps_ms, NO_TIMESTAMP),
        pa.scalar(None, pa.int64()),
        pc.multiply_checked(timestamps_ms, 1000),
    )
    types = pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(decoded.timestamp_types)])
    headers_type = schema.field("headers").type
    return {
        "partition": pa.nulls(n, pa.int32()).fill_null(pa.scalar(partition, pa.int32())),
        "offset": pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(decoded.offsets)]),
        "timestamp": timestamps.cast(schema.field("timestamp").type),
        "timestamp_type": _TIMESTAMP_TYPES.take(types),
        "key": _binary(decoded.keys, n, pa.large_binary()),
        "headers": _headers(decoded, headers_type),
        "value": _binary(decoded.values, n, pa.large_binary()),
    }


def _binary(column: BinaryColumn, count: int, kind: pa.DataType) -> pa.Array:
    validity = pa.py_buffer(column.validity) if column.nulls else None
    buffers = [validity, pa.py_buffer(column.offsets), pa.py_buffer(column.data)]
    return pa.Array.from_buffers(kind, count, buffers, null_count=column.nulls)


def _headers(decoded: RecordColumns, list_type: pa.DataType) -> pa.Array:
    """The headers column: a list per record over the flat header columns."""
    pairs = len(decoded.header_keys.offsets) // 8 - 1
    struct_type = list_type.value_type
    key_field, value_field = struct_type.field("key"), struct_type.field("value")
    keys = _binary(decoded.header_keys, pairs, pa.large_string())
    values = _binary(decoded.header_values, pairs, pa.large_binary())
    items = pa.StructArray.from_arrays(
        [keys.cast(key_field.type), values.cast(value_field.type)],
        fields=[key_field, value_field],
    )
    ends = pa.Array.from_buffers(
        pa.int64(), decoded.records + 1, [None, pa.py_buffer(decoded.header_ends)]
    )
    if pa.types.is_large_list(list_type):  # what pyiceberg's as_arrow gives
        return pa.LargeListArray.from_arrays(ends, items, type=list_type)
    return pa.ListArray.from_arrays(ends.cast(pa.int32()), items, type=list_type)
