"""The record columns of a commit, built over native.decode_columns'
buffers, hold exactly the records a consumer decodes from the same stored
batches: compressed or not, from a position inside a batch, past control
batches, with null keys, values and header values, in CreateTime or
LogAppendTime."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import native
from engine.errors import CorruptRecord
from engine.tables.columns import PartitionRead, arrow_rows, table_schema
from engine.tables.reader import SettledRead
from native.records import Compression, RecordSpec
from tests.native.conftest import codecs, record_lists

SCHEMA = table_schema(None).as_arrow()


def _rows(table: pa.Table) -> list[Any]:
    """The rows as _expected gives records (timestamps in exact milliseconds)."""
    micros = table.column("timestamp").cast(pa.int64()).to_pylist()
    return sorted(
        (
            row["partition"],
            row["offset"],
            None if m is None else m // 1000,
            row["timestamp_type"],
            row["key"],
            row["value"],
            [(h["key"], h["value"]) for h in row["headers"]],
        )
        for row, m in zip(table.to_pylist(), micros, strict=True)
    )


KINDS = ("CreateTime", "LogAppendTime")


def _stored(specs: list[RecordSpec], codec: Compression, log_append: bool, base: int) -> bytes:
    """A data batch, a control batch after it, and one more data batch."""
    first = native.encode_batch(
        specs, base_offset=base, compression=codec, timestamp_type=int(log_append)
    )
    marker = native.encode_batch(specs[:1], base_offset=base + len(specs), is_control=True)
    last = native.encode_batch(specs[-1:], base_offset=base + len(specs) + 1)
    return first + marker + last


def _expected(partition: int, data: bytes, position: int) -> list[Any]:
    """What a consumer decodes of ``data`` from ``position``, as table_rows gives rows."""
    out = []
    for header in native.scan_batches(data):
        if header.is_control:
            continue
        batch = data[header.position : header.position + header.size]
        for r in native.decode_records(batch, min_offset=position):
            timestamp = None if r.timestamp == -1 else r.timestamp
            headers = [(k, v) for k, v in r.headers]
            kind = KINDS[header.timestamp_type]
            out.append((partition, r.offset, timestamp, kind, r.key, r.value, headers))
    return sorted(out)


timestamps = st.integers(0, 2**40) | st.just(-1)
specs = st.lists(
    st.builds(
        RecordSpec,
        timestamps,
        st.none() | st.binary(max_size=30),
        st.none() | st.binary(max_size=30),
        st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3).map(
            tuple
        ),
    ),
    min_size=1,
    max_size=12,
)


@given(
    st.lists(st.tuples(specs, codecs, st.booleans()), min_size=1, max_size=3),
    st.integers(0, 40),
    st.integers(0, 6),
)
def test_the_columns_are_the_records_a_consumer_reads(
    partitions: list[tuple[list[RecordSpec], Compression, bool]], skip: int, base: int
) -> None:
    reads, expected = [], []
    for index, (records, codec, log_append) in enumerate(partitions):
        data = _stored(records, codec, log_append, base)
        position = base + skip % (len(records) + 2)
        read = SettledRead([data], position, 0, len(data), 0, native.MAX_INFLATED)
        reads.append(PartitionRead(index, read))
        expected += _expected(index, data, position)
    rows = arrow_rows(reads, SCHEMA, None, [])
    assert rows.schema == SCHEMA
    assert _rows(rows) == sorted(expected)


@given(record_lists)
def test_a_commit_of_many_stored_batches_keeps_them_in_order(records: list[RecordSpec]) -> None:
    batches = [native.encode_batch(records, base_offset=i * len(records)) for i in range(3)]
    read = SettledRead(batches, 0, 0, 0, 0, native.MAX_INFLATED)
    rows = arrow_rows([PartitionRead(2, read)], SCHEMA, None, [])
    assert rows.column("offset").to_pylist() == list(range(3 * len(records)))
    assert set(rows.column("partition").to_pylist()) == {2}


def test_a_batch_that_does_not_decode_is_a_corrupt_record() -> None:
    data = bytearray(native.encode_batch([RecordSpec(1, b"k", b"v")]))
    del data[-1]  # the record ends early: the batch's length no longer matches
    read = SettledRead([bytes(data)], 0, 0, len(data), 0, native.MAX_INFLATED)
    with pytest.raises(CorruptRecord, match="partition 0"):
        arrow_rows([PartitionRead(0, read)], SCHEMA, None, [])
