"""Schema compatibility: whether a reader schema can read what a writer
schema wrote, for Avro (the specification's schema resolution, as
fastavro's reader applies it) and JSON Schema (every instance the writer's
schema accepts, the reader's accepts too), Protobuf (Confluent's breaking
differences, engine/schemas/proto_compat.py), and the levels of Confluent's
Schema Registry built on it.

BACKWARD: the new schema reads what the latest one wrote; FORWARD: the
latest reads what the new one writes; FULL: both. The ``_TRANSITIVE``
levels hold the new schema to every live version, not just the latest.
Each check answers the reasons it failed (none: compatible).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.schemas.types import AVRO, JSON, PROTOBUF

LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
DEFAULT_LEVEL = "BACKWARD"
"""Confluent's default compatibility level."""


@dataclass(frozen=True)
class ParsedSchema:
    """A schema parsed for checks: its type, the parsed value, and (Avro)
    every named type it defines or its references define, by full name."""

    schema_type: str
    value: Any
    named: Mapping[str, Any] = field(default_factory=dict)


def check(level: str, new: ParsedSchema, existing: Sequence[ParsedSchema]) -> list[str]:
    """Why ``new`` breaks ``level`` against ``existing`` (oldest first,
    live versions only); empty when it does not."""
    if level == "NONE" or not existing:
        return []
    against = existing if level.endswith("_TRANSITIVE") else existing[-1:]
    backward = level.startswith(("BACKWARD", "FULL"))
    forward = level.startswith(("FORWARD", "FULL"))
    reasons: list[str] = []
    for old in reversed(against):
        if old.schema_type != new.schema_type:
            reasons.append(
                f"the schema type {new.schema_type} differs from the earlier {old.schema_type}"
            )
            continue
        if backward:
            reasons += [f"BACKWARD: {r}" for r in can_read(new, old)]
        if forward:
            reasons += [f"FORWARD: {r}" for r in can_read(old, new)]
    return reasons


def can_read(reader: ParsedSchema, writer: ParsedSchema) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``."""
    if reader.schema_type == AVRO:
        return _AvroResolution(reader.named, writer.named).check(reader.value, writer.value, "")
    if reader.schema_type == JSON:
        return _JsonContainment(reader.value, writer.value).check(reader.value, writer.value, "#")
    if reader.schema_type == PROTOBUF:
        from engine.schemas.proto_compat import breaking_changes  # noqa: PLC0415

        return breaking_changes(writer.value, reader.value)
    return [] if reader.value == writer.value else ["the schema changed"]


# -- Avro --------------------------------------------------------------------------

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS: Mapping[str, frozenset[str]] = {
    # The specification's "Schema Resolution": what a writer's type may be read as.
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        inner = schema["type"]
        return inner if isinstance(inner, str) else _kind(inner)
    return str(schema)


class _AvroResolution:
    """Avro's reader/writer resolution over fastavro's parsed schemas."""

    def __init__(self, reader_named: Mapping[str, Any], writer_named: Mapping[str, Any]) -> None:
        self.reader_named = reader_named
        self.writer_named = writer_named
        self.assumed: set[tuple[int, int]] = set()
        """Record pairs being checked: a recursive type meets itself again."""

    def _resolve(self, schema: Any, named: Mapping[str, Any]) -> Any:
        while isinstance(schema, str) and schema not in _PRIMITIVES and schema in named:
            schema = named[schema]
        if isinstance(schema, dict) and schema["type"] in _PRIMITIVES:
            return schema["type"]  # a logical type reads as its underlying type
        return schema

    def _names_match(self, reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
        aliases = reader.get("aliases") or []
        return bool(reader["name"] == writer["name"] or writer["name"] in aliases)

    def _matches(self, reader: Any, writer: Any) -> bool:
        """Whether a union branch is the one resolution picks for ``writer``
        (the shallow test: same kind and name, or a promotion)."""
        rk, wk = _kind(reader), _kind(writer)
        if rk in ("record", "error", "enum", "fixed") and rk == wk:
            return self._names_match(reader, writer)
        if rk == wk:
            return True
        return rk in _PROMOTIONS.get(wk, frozenset())

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = self._resolve(reader, self.reader_named)
        writer = self._resolve(writer, self.writer_named)
        rk, wk = _kind(reader), _kind(writer)
        where = path or "/"
        if wk == "union":
            reasons: list[str] = []
            for i, branch in enumerate(writer):
                reasons += self.check(reader, branch, f"{path}/{i}")
            return reasons
        if rk == "union":
            for branch in reader:
                resolved = self._resolve(branch, self.reader_named)
                if self._matches(resolved, writer):
                    return self.check(resolved, writer, path)
            return [f"{where}: the reader's union has no branch for the writer's {wk}"]
        if rk != wk and rk not in _PROMOTIONS.get(wk, frozenset()):
            return [f"{where}: the writer's {wk} cannot be read as {rk}"]
        if rk in ("record", "error"):
            return self._record(reader, writer, path)
        if rk == "enum":
            if not self._names_match(reader, writer):
                return [f"{where}: enum {writer['name']} is read as {reader['name']}"]
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{where}: the reader's enum lacks symbols {missing} and has no default"]
            return []
        if rk == "fixed":
            if not self._names_match(reader, writer):
                return [f"{where}: fixed {writer['name']} is read as {reader['name']}"]
            if reader["size"] != writer["size"]:
                return [f"{where}: fixed size {writer['size']} is read as {reader['size']}"]
            return []
        if rk == "array":
            return self.check(reader["items"], writer["items"], f"{path}/items")
        if rk == "map":
            return self.check(reader["values"], writer["values"], f"{path}/values")
        return []

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        where = path or "/"
        if not self._names_match(reader, writer):
            return [f"{where}: record {writer['name']} is read as {reader['name']}"]
        pair = (id(reader), id(writer))
        if pair in self.assumed:
            return []
        self.assumed.add(pair)
        written = {f["name"]: f for f in writer["fields"]}
        reasons: list[str] = []
        for field_ in reader["fields"]:
            names = [field_["name"], *(field_.get("aliases") or [])]
            source = next((written[n] for n in names if n in written), None)
            if source is None:
                if "default" not in field_:
                    reasons.append(
                        f"{path}/{field_['name']}: a field the writer lacks, with no default"
                    )
                continue
            reasons += self.check(field_["type"], source["type"], f"{path}/{field_['name']}")
        return reasons


# -- JSON Schema -------------------------------------------------------------------

_JSON_TYPES = frozenset({"null", "boolean", "object", "array", "number", "integer", "string"})
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_MUST_EQUAL = ("pattern", "format", "multipleOf", "allOf", "anyOf", "oneOf", "not", "if",
               "then", "else", "dependentRequired", "dependentSchemas", "patternProperties",
               "propertyNames", "uniqueItems", "contains", "prefixItems")  # fmt: skip
"""Keywords compared whole: a change to any of them is refused (Confluent
treats most of them as changes to check one by one; equal is always safe)."""
_REF_DEPTH = 32


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class _JsonContainment:
    """Whether every instance the writer's schema accepts, the reader's
    accepts too: Confluent's JSON Schema rules (open and closed content
    models, required, types, enums, bounds), structurally."""

    def __init__(self, reader_root: Any, writer_root: Any) -> None:
        self.reader_root = reader_root
        self.writer_root = writer_root

    def _deref(self, schema: Any, root: Any) -> Any:
        for _ in range(_REF_DEPTH):
            if not (isinstance(schema, dict) and isinstance(schema.get("$ref"), str)):
                break
            ref: str = schema["$ref"]
            if not ref.startswith("#"):
                break  # another document: compared as written
            target: Any = root
            for escaped in [p for p in ref[1:].split("/") if p]:
                part = escaped.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or part not in target:
                    return schema
                target = target[part]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **rest} if isinstance(target, dict) and rest else target
        if schema is True:
            return {}
        return schema

    @staticmethod
    def _types(schema: Mapping[str, Any]) -> set[str] | None:
        found = schema.get("type")
        if found is None:
            return None
        return {found} if isinstance(found, str) else set(found)

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = self._deref(reader, self.reader_root)
        writer = self._deref(writer, self.writer_root)
        if writer is False or reader == {} or _dump(reader) == _dump(writer):
            return []
        if reader is False:
            return [f"{path}: the reader accepts nothing"]
        if not isinstance(reader, dict) or not isinstance(writer, dict):
            return [f"{path}: the schema changed"]
        reasons: list[str] = []
        reasons += self._type(reader, writer, path)
        reasons += self._enum(reader, writer, path)
        for key in _UPPER_BOUNDS:
            if key in reader and not (key in writer and writer[key] <= reader[key]):
                reasons.append(f"{path}: {key} narrowed to {reader[key]}")
        for key in _LOWER_BOUNDS:
            if key in reader and not (key in writer and writer[key] >= reader[key]):
                reasons.append(f"{path}: {key} narrowed to {reader[key]}")
        for key in _MUST_EQUAL:
            if key in reader and _dump(reader.get(key)) != _dump(writer.get(key)):
                reasons.append(f"{path}: {key} changed")
        reasons += self._object(reader, writer, path)
        reasons += self._array(reader, writer, path)
        return reasons

    def _type(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> list[str]:
        read_types, written_types = self._types(reader), self._types(writer)
        if read_types is None:
            return []
        if written_types is None:
            written_types = set(_JSON_TYPES)
        lost = {
            t
            for t in written_types
            if t not in read_types and not (t == "integer" and "number" in read_types)
        }
        return [f"{path}: type narrowed, {sorted(lost)} no longer accepted"] if lost else []

    def _enum(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> list[str]:
        allowed = _allowed_values(reader)
        if allowed is None:
            return []
        written = _allowed_values(writer)
        if written is None:
            return [f"{path}: enum added"]
        removed = written - allowed
        return [f"{path}: enum values removed: {sorted(removed)}"] if removed else []

    def _object(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> list[str]:
        reasons: list[str] = []
        read_props: Mapping[str, Any] = reader.get("properties", {})
        written_props: Mapping[str, Any] = writer.get("properties", {})
        read_extra = reader.get("additionalProperties", True)
        written_extra = writer.get("additionalProperties", True)
        for name, schema in written_props.items():
            if name in read_props:
                reasons += self.check(read_props[name], schema, f"{path}/properties/{name}")
            elif read_extra is False:
                reasons.append(f"{path}: property {name!r} removed from a closed content model")
            elif isinstance(read_extra, dict):
                reasons += self.check(read_extra, schema, f"{path}/properties/{name}")
        for name, schema in read_props.items():
            if name in written_props or written_extra is False:
                continue
            source = {} if written_extra is True else written_extra
            if self.check(schema, source, f"{path}/properties/{name}"):
                reasons.append(f"{path}: property {name!r} added to an open content model")
        if written_extra is not False and read_extra is not True:
            source = {} if written_extra is True else written_extra
            if read_extra is False:
                reasons.append(f"{path}: the content model was closed")
            else:
                reasons += self.check(read_extra, source, f"{path}/additionalProperties")
        added = set(reader.get("required", [])) - set(writer.get("required", []))
        if added:
            reasons.append(f"{path}: required properties added: {sorted(added)}")
        return reasons

    def _array(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> list[str]:
        read_items = reader.get("items")
        if read_items is None or isinstance(read_items, list):
            return []
        written_items = writer.get("items", {})
        if isinstance(written_items, list):
            return [f"{path}: items changed from a tuple"]
        return self.check(read_items, written_items, f"{path}/items")


def _allowed_values(schema: Mapping[str, Any]) -> set[str] | None:
    if "const" in schema:
        return {_dump(schema["const"])}
    if "enum" in schema:
        return {_dump(v) for v in schema["enum"]}
    return None
