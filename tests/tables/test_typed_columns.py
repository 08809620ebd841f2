"""Typed columns from the value subject's JSON Schema or Avro schema; a
value that does not decode keeps its bytes and says why in value_error."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import fastavro

from engine.cli.schemas import agent_action_schema
from engine.engine import Engine
from engine.memory import Actor, AgentMemory
from engine.schemas.types import AVRO, JSON
from engine.schemas.wire_format import frame
from tests.tables.conftest import TABLE_ON, catalog_of

JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "score": {"type": ["number", "null"]},
        "ok": {"type": "boolean"},
        "meta": {"type": "object"},
        "offset": {"type": "integer"},
        "kind": {"enum": ["a", "b"]},
    },
    "required": ["id"],
}

AVRO_SCHEMA = {
    "type": "record",
    "name": "Step",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "ratio", "type": "float"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "blob", "type": "bytes"},
    ],
}


def _send(engine: Engine, topic: str, values: list[bytes]) -> None:
    producer = engine.producer()
    for value in values:
        producer.send(topic, value)
    producer.flush()
    producer.close()
    assert engine.flush(30)
    engine.commit_tables()


def _rows(tmp_path: Path, name: str) -> list[dict[str, object]]:
    table = catalog_of(tmp_path).load_table(("tidelog", name))
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda row: row["offset"])


def test_json_schema_fields_become_columns(engine: Engine, tmp_path: Path) -> None:
    schema_id = engine.schemas.register("steps-value", json.dumps(JSON_SCHEMA), JSON)
    engine.create_topic("steps", 1, TABLE_ON)
    good = {"id": 1, "name": "n", "score": 2, "ok": True, "meta": {"a": [1]}, "offset": 9}
    values = [
        json.dumps(good).encode(),
        frame(schema_id, json.dumps({"id": 2, "kind": "b", "score": None}).encode()),
        b"{not json",
        json.dumps({"id": "three"}).encode(),  # not of its column's type
        json.dumps([1, 2]).encode(),
    ]
    _send(engine, "steps", values)
    rows = _rows(tmp_path, "steps")
    assert [row["value"] for row in rows] == values  # every record, its bytes as stored
    first, second, bad_json, bad_type, array = rows
    assert first["value_error"] is None
    assert (first["id"], first["name"], first["score"], first["ok"]) == (1, "n", 2.0, True)
    assert json.loads(first["meta"]) == {"a": [1]}  # nested: JSON text
    assert first["value_offset"] == 9  # a field named like a table column is prefixed
    assert first["offset"] == 0
    assert (second["id"], second["kind"], second["score"], second["name"]) == (2, "b", None, None)
    for row in (bad_json, bad_type, array):
        assert row["value_error"]
        assert row["id"] is None
    assert "JSON" in bad_json["value_error"] or "Expecting" in bad_json["value_error"]
    assert "id: 'three' is not a long" in bad_type["value_error"]


def _avro(value: dict[str, object]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), value)
    return out.getvalue()


def test_avro_fields_become_columns(engine: Engine, tmp_path: Path) -> None:
    schema_id = engine.schemas.register("avro_steps-value", json.dumps(AVRO_SCHEMA), AVRO)
    engine.create_topic("avro_steps", 1, TABLE_ON)
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    step = {"id": 7, "name": "x", "ratio": 0.5, "tags": ["a"], "at": at, "note": None}
    step["blob"] = b"\0"
    values = [
        frame(schema_id, _avro(step)),
        _avro({**step, "id": 8, "note": "raw"}),  # unframed: the subject's latest schema
        frame(schema_id, b"\x02"),  # cut short
        frame(schema_id, _avro(step) + b"tail"),
    ]
    _send(engine, "avro_steps", values)
    rows = _rows(tmp_path, "avro_steps")
    assert [row["value"] for row in rows] == values
    framed, raw, short, tail = rows
    assert framed["value_error"] is None
    assert (framed["id"], framed["name"], framed["ratio"], framed["blob"]) == (7, "x", 0.5, b"\0")
    assert json.loads(framed["tags"]) == ["a"]
    assert framed["at"] == at
    assert framed["note"] is None
    assert (raw["id"], raw["note"]) == (8, "raw")
    assert short["value_error"] and short["id"] is None
    assert "bytes left" in tail["value_error"]


def test_tool_calls_join_their_approvals_by_correlation_id(engine: Engine, tmp_path: Path) -> None:
    """The audit question as SQL over the table: which tool calls were
    approved, by whom. Written with AgentMemory in the agent-action schema."""
    engine.schemas.register("agent.actions-value", agent_action_schema(), JSON)
    engine.create_topic("agent.actions", 2, TABLE_ON)
    expected = []
    with (
        AgentMemory(engine, Actor("agent", "planner")) as agent,
        AgentMemory(engine, Actor("human", "alice")) as human,
    ):
        for task in range(6):
            correlation = f"task-{task}"
            call = agent.tool_call("search", correlation_id=correlation)
            if task % 2 == 0:
                human.approval(causation=call, reason="looks fine")
                expected.append((correlation, "search", "alice"))
            else:
                human.denial(causation=call, reason="no")
    assert engine.flush(30)
    engine.commit_tables()
    table = catalog_of(tmp_path).load_table(("tidelog", "agent_actions"))
    connection = table.scan().to_duckdb("actions")
    found = connection.execute(
        """
        SELECT c.correlation_id, json_extract_string(c.tool, '$.name'),
               json_extract_string(a.actor, '$.id')
        FROM actions c JOIN actions a
          ON a.correlation_id = c.correlation_id AND a.causation_id = c.action_id
        WHERE c.type = 'tool_call' AND a.type = 'approval'
        ORDER BY c.correlation_id
        """
    ).fetchall()
    assert found == expected
    errors = connection.execute(
        "SELECT count(*) FROM actions WHERE value_error IS NOT NULL"
    ).fetchone()
    assert errors == (0,)


def test_the_topics_own_value_subject_gives_the_columns(engine: Engine, tmp_path: Path) -> None:
    engine.schemas.register("shared-steps", json.dumps(JSON_SCHEMA), JSON)
    engine.create_topic("named", 1, {**TABLE_ON, "tidelog.value.schema.subject": "shared-steps"})
    _send(engine, "named", [json.dumps({"id": 5, "name": "five"}).encode()])
    (row,) = _rows(tmp_path, "named")
    assert (row["id"], row["name"], row["value_error"]) == (5, "five", None)


def test_a_new_schema_version_adds_its_columns(engine: Engine, tmp_path: Path) -> None:
    first = {"type": "object", "properties": {"id": {"type": "integer"}}}
    engine.schemas.set_compatibility("NONE", "evolving-value")
    engine.schemas.register("evolving-value", json.dumps(first), JSON)
    engine.create_topic("evolving", 1, TABLE_ON)
    _send(engine, "evolving", [json.dumps({"id": 1, "note": "before"}).encode()])
    second = {"type": "object", "properties": {**first["properties"], "note": {"type": "string"}}}
    engine.schemas.register("evolving-value", json.dumps(second), JSON)
    _send(engine, "evolving", [json.dumps({"id": 2, "note": "after"}).encode()])
    old, new = _rows(tmp_path, "evolving")
    assert (old["id"], old["note"]) == (1, None)  # written before the column existed
    assert (new["id"], new["note"]) == (2, "after")
