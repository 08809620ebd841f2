"""What the broker's record checks need of the schema registry.

The registry (the catalog-backed store behind the Schema Registry API) and
the produce path's validation meet here, so neither imports the other: the
validation asks a :class:`SchemaLookup` for a schema by its id or by its
subject, and the registry answers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

AVRO = "AVRO"
JSON = "JSON"
PROTOBUF = "PROTOBUF"
SCHEMA_TYPES = (AVRO, JSON, PROTOBUF)
"""Confluent's schema types; a schema registered without one is AVRO."""


@dataclass(frozen=True, slots=True)
class SchemaReference:
    """A named reference from one schema to a version of another subject."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A schema as the registry keeps it: its global id, type and text."""

    schema_id: int
    schema_type: str
    schema: str
    references: tuple[SchemaReference, ...] = ()


class SchemaLookup(Protocol):
    """Read access to the registry, as record validation needs it."""

    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        """The schema registered under ``schema_id`` (None: no such id)."""
        ...

    def latest(self, subject: str) -> RegisteredSchema | None:
        """The latest live version of ``subject`` (None: no such subject)."""
        ...

    def referenced(self, reference: SchemaReference) -> RegisteredSchema | None:
        """The schema a reference names: its subject's version, soft-deleted
        or not (None: no such version)."""
        ...
