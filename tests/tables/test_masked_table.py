"""A masked topic's table holds what a reader without unmask reads: every
value, key and header masked by the topic's rules (typed columns decoded
from the masked value), never a clear value of a masked field, in the rows
pyiceberg's scan, DuckDB and the Parquet files themselves give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from engine.engine import Engine
from engine.schemas.types import JSON
from engine.types import ConsumerRecord
from tests.tables.conftest import TABLE_ON, catalog_of, record_rows, table_rows

TOPIC = "support.inputs"
TABLE = ("tidelog", "support_inputs")
RULES = [
    {"path": "/customer/email", "action": "redact"},
    {"path": "/customer/name", "action": "hash"},
    {"path": "/card", "action": "drop"},
    {"path": "/user", "action": "hash", "in": "key"},
    {"path": "", "action": "redact", "in": "header:authorization"},
]
VALUE_SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {"email": {"type": "string"}, "name": {"type": "string"}},
        },
        "card": {"type": "string"},
        "amount": {"type": "integer"},
    },
}
CLEAR = [b"alice@example.com", b"Alice Liddell", b"4111111111111111", b"u-4471", b"Bearer s3cr3t"]
"""Every clear value a masked field holds in the records below."""


def _value(i: int) -> bytes:
    return json.dumps(
        {
            "customer": {"email": "alice@example.com", "name": "Alice Liddell"},
            "card": "4111111111111111",
            "amount": i,
        }
    ).encode()


def _read_as(engine: Engine, principal: str) -> list[ConsumerRecord]:
    """Every committed record of the topic as the embedded consumer of
    ``principal`` reads it."""
    partitions = engine.topic_partitions([TOPIC])
    ends = {tp: engine.offsets(tp.topic, tp.partition)[1] for tp in partitions}
    records: list[ConsumerRecord] = []
    with engine.consumer(
        principal=principal, isolation_level="read_committed", enable_auto_commit=False
    ) as consumer:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for _ in range(200):  # bounded: each poll waits at most 0.05 s
            records += consumer.poll(0.05)
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                return records
    raise AssertionError("the consumer did not reach the end of the topic")


def _all_bytes(value: Any) -> bytes:
    """Every str and bytes in a row's (nested) values, joined, to look for clear values in."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        return b"\0".join(_all_bytes(v) for v in value.values())
    if isinstance(value, list):
        return b"\0".join(_all_bytes(v) for v in value)
    return b""


def test_a_masked_topics_table_holds_the_masked_records_never_the_clear_ones(
    engine: Engine, tmp_path: Path
) -> None:
    engine.schemas.register(f"{TOPIC}-value", json.dumps(VALUE_SCHEMA), JSON)
    engine.create_topic(TOPIC, 2, {**TABLE_ON, "tidelog.masking.rules": json.dumps(RULES)})
    with engine.producer(compression="zstd") as producer:
        for i in range(6):
            producer.send(
                TOPIC,
                _value(i),
                key=json.dumps({"user": "u-4471"}).encode(),
                headers=[("authorization", b"Bearer s3cr3t"), ("trace", b"t%d" % i)],
                partition=i % 2,
            )
    with engine.producer(transactional_id="masked-table") as txn:
        txn.init_transactions()
        txn.begin_transaction()
        txn.send(TOPIC, _value(6), partition=0)
        txn.commit_transaction()
    assert engine.flush(30)
    engine.commit_tables()

    masked = _read_as(engine, "User:reader")
    assert len(masked) == 7
    assert all(clear not in _all_bytes(r._asdict()) for r in masked for clear in CLEAR)
    table = catalog_of(tmp_path).load_table(TABLE)
    arrow = table.scan().to_arrow()
    assert table_rows(arrow) == record_rows(masked)
    rows = arrow.to_pylist()
    first = json.loads(rows[0]["value"])
    assert first["customer"]["email"] == "***" and "card" not in first
    # Typed columns come from the masked value: the hash, never the name (an
    # object's column holds its JSON text).
    hashed = json.loads(masked[0].value or b"")["customer"]["name"]
    assert {json.loads(row["customer"])["name"] for row in rows} == {hashed}
    for row in rows:
        assert row["value_error"] is None
        assert row["card"] is None
        assert all(clear not in _all_bytes(row) for clear in CLEAR)
    # The Parquet files a query engine reads, file by file, and DuckDB's SQL.
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert files
    for path in files:
        stored = pq.read_table(path.removeprefix("file://")).to_pylist()
        assert all(clear not in _all_bytes(row) for row in stored for clear in CLEAR)
    connection = table.scan().to_duckdb("inputs")
    redacted = "SELECT count(*) FROM inputs WHERE contains(decode(value), '\"***\"')"
    assert connection.execute(redacted).fetchone() == (7,)  # the query sees the values
    for clear in CLEAR:
        found = connection.execute(
            "SELECT count(*) FROM inputs WHERE contains(decode(value), ?) "
            "OR contains(decode(key), ?) "
            "OR list_contains(list_transform(headers, lambda h: decode(h.value)), ?)",
            [clear.decode()] * 3,
        ).fetchone()
        assert found == (0,), clear
    # The records are stored in clear: a reader with unmask still reads them so.
    engine.grant_unmask(TOPIC, "User:auditor")
    assert json.loads(_read_as(engine, "User:auditor")[0].value or b"")["card"] == (
        "4111111111111111"
    )
