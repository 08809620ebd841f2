"""Schemas for the tests of schema validation on the broker: a dict-backed
:class:`SchemaLookup` for the record checks' unit tests, and ``register``,
the one place tests register a schema with an engine's own registry."""

from __future__ import annotations

import json

import engine
from engine.schemas.types import AVRO, JSON, RegisteredSchema, SchemaReference

ORDER_JSON = json.dumps(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "amount": {"type": "number", "minimum": 0},
            "note": {"type": "string"},
        },
        "required": ["id", "amount"],
    }
)
"""A JSON Schema with two required fields and a bounded one."""

ORDER_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "amount", "type": "long"},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
        ],
    }
)


class InMemorySchemas:
    """Registered schemas in two dicts: ids from 1, versions appended per subject."""

    def __init__(self) -> None:
        self.schemas: dict[int, RegisteredSchema] = {}
        self.subjects: dict[str, list[RegisteredSchema]] = {}

    def register(self, subject: str, schema_type: str, schema: str) -> RegisteredSchema:
        for known in self.schemas.values():  # one id per schema text, as the registry
            if (known.schema_type, known.schema) == (schema_type, schema):
                registered = known
                break
        else:
            registered = RegisteredSchema(len(self.schemas) + 1, schema_type, schema)
            self.schemas[registered.schema_id] = registered
        self.subjects.setdefault(subject, []).append(registered)
        return registered

    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        return self.schemas.get(schema_id)

    def latest(self, subject: str) -> RegisteredSchema | None:
        versions = self.subjects.get(subject)
        return versions[-1] if versions else None

    def referenced(self, reference: SchemaReference) -> RegisteredSchema | None:
        versions = self.subjects.get(reference.subject, [])
        return versions[reference.version - 1] if 0 < reference.version <= len(versions) else None


def register(opened: engine.Engine, subject: str, schema_type: str, schema: str) -> int:
    """Registers ``schema`` under ``subject`` with the engine's own registry
    (kept in its catalog); its id."""
    return opened.schemas.register(subject, schema, schema_type)


__all__ = ["AVRO", "JSON", "ORDER_AVRO", "ORDER_JSON", "InMemorySchemas", "register"]
