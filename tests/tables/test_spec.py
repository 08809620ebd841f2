"""docs/tables.md's columns and snapshot summary keys, against the table
the writer makes and the summary it commits."""

from __future__ import annotations

import json
from pathlib import Path

from engine.engine import Engine
from engine.tables import writer
from engine.tables.columns import table_schema
from tests.docspec import table
from tests.tables.conftest import TABLE_ON, catalog_of


def _doc_type(field_type: object) -> str:
    """An Iceberg type in the document's notation."""
    from pyiceberg.types import ListType, StructType

    if isinstance(field_type, ListType):
        return f"list<{_doc_type(field_type.element_type)}>"
    if isinstance(field_type, StructType):
        inner = ", ".join(f"{f.name}: {_doc_type(f.field_type)}" for f in field_type.fields)
        return f"struct<{inner}>"
    return str(field_type)


def test_the_documented_columns_are_the_tables() -> None:
    documented = [
        (row["column"].strip("`"), row["Iceberg type"], row["null"])
        for row in table("tables.md", "column", "Iceberg type", "null", "what it holds")
    ]
    made = [
        (f.name, _doc_type(f.field_type), "no" if f.required else "yes")
        for f in table_schema(None).fields
    ]
    assert made == documented


def test_the_documented_summary_is_what_a_commit_writes(engine: Engine, tmp_path: Path) -> None:
    keys = [row["summary key"].strip("`") for row in table("tables.md", "summary key", "value")]
    assert keys == [writer.OFFSETS, writer.TOPIC_ID]
    engine.create_topic("spec", 2, TABLE_ON)
    producer = engine.producer()
    producer.send("spec", b"x", partition=1)
    producer.flush()
    assert engine.flush(30)
    engine.commit_tables()
    summary = catalog_of(tmp_path).load_table(("tidelog", "spec")).current_snapshot().summary
    assert json.loads(summary.get(writer.OFFSETS)) == {"0": 0, "1": 1}
    topic_id = summary.get(writer.TOPIC_ID)
    assert len(topic_id) == 32
    assert bytes.fromhex(topic_id) == engine.topic_shape("spec")[0]
