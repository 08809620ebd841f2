"""Typed columns from the value subject's schema, and the decoding of each
record's value into them.

A topic whose value subject (``<topic>-value``, Confluent's
TopicNameStrategy, or the topic's ``tidelog.value.schema.subject``) has a
registered JSON Schema or Avro schema gets one
column per top-level property / field of that schema (docs/tables.md, "Typed
columns", says what maps to what). A value that does not decode, or does
not hold to its schema, fills none of them: its error says why, and its
bytes are in the ``value`` column as for every record.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from engine.schemas.compiled import AvroCheck, JsonSchemaCheck, compile_schema
from engine.schemas.types import AVRO, JSON, RegisteredSchema, SchemaLookup
from engine.schemas.wire_format import NotFramed, unframe

BASE_COLUMNS = (
    "partition",
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "headers",
    "value",
    "value_error",
)
"""Every table's own columns (a typed column with one of these names is
prefixed ``value_``)."""

KINDS = ("string", "long", "int", "double", "float", "boolean", "binary", "timestamp", "json")
"""The column kinds a schema's fields map to (columns.py gives their types)."""

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


class TypedField(NamedTuple):
    column: str
    """The table column."""
    source: str
    """The property / field name in the value."""
    kind: str
    """One of KINDS."""


class ValueDecoder:
    """Decodes values of one topic into its typed columns."""

    def __init__(
        self,
        fields: list[TypedField],
        decode: Callable[[bytes], Mapping[str, Any]],
        schema_id: int,
    ) -> None:
        self.fields = fields
        self._decode = decode
        self._plan = [(f.source, converter(f)) for f in fields]
        """Each column's property and its converter, chosen once: the row
        loop runs per record."""
        self.schema_id = schema_id
        """The registered schema the columns come from (its id)."""

    def row(self, value: bytes | None) -> tuple[list[Any], str | None]:
        """The typed columns' values for ``value`` (None each, with the error,
        when it does not decode)."""
        if value is None:
            return [None] * len(self.fields), "the record has no value (null)"
        try:
            document = self._decode(value)
            get = document.get
            return [convert(get(source)) for source, convert in self._plan], None
        except Exception as error:  # every failure of a value is its own row's error
            return [None] * len(self.fields), f"{type(error).__name__}: {error}"


def value_decoder(latest: RegisteredSchema | None, registry: SchemaLookup) -> ValueDecoder | None:
    """The decoder of values by ``latest`` (a value subject's latest
    schema), None if it is not a JSON Schema or Avro schema of an object /
    record the columns can follow."""
    if latest is None or latest.references:
        return None
    if latest.schema_type == JSON:
        return _json_decoder(latest)
    if latest.schema_type == AVRO:
        return _avro_decoder(latest, registry)
    return None


# -- JSON Schema ------------------------------------------------------------------

_JSON_KINDS = {"string": "string", "integer": "long", "number": "double", "boolean": "boolean"}


def _json_decoder(latest: RegisteredSchema) -> ValueDecoder | None:
    check = compile_schema(latest)
    if not isinstance(check, JsonSchemaCheck):
        return None
    schema = json.loads(latest.schema)
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return None
    fields = _named([(name, _json_kind(spec)) for name, spec in properties.items()])

    # The columns' types are checked value by value (_convert); the schema's
    # other rules (required, minLength, ...) are the produce path's
    # (tidelog.value.schema.validation=full): checking them again here would
    # cost the writer two thirds of its rate, and the table holds what was written.
    def decode(value: bytes) -> Mapping[str, Any]:
        document = json.loads(_json_text(_body(value)))
        if not isinstance(document, dict):
            raise ValueError(f"the value is JSON {type(document).__name__}, not an object")
        return document

    return ValueDecoder(fields, decode, latest.schema_id)


def _json_kind(spec: object) -> str:
    if not isinstance(spec, dict):
        return "json"
    choices = spec.get("enum", [spec["const"]] if "const" in spec else None)
    names = isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices)
    if "type" not in spec and names:
        return "string"  # an enum of names, as the agent-action schema's "type"
    kind = spec.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return _JSON_KINDS.get(kind, "json") if isinstance(kind, str) else "json"


# -- Avro -----------------------------------------------------------------------------

_AVRO_KINDS = {
    "boolean": "boolean",
    "int": "int",
    "long": "long",
    "float": "float",
    "double": "double",
    "bytes": "binary",
    "string": "string",
    "enum": "string",
    "fixed": "binary",
}


def _avro_decoder(latest: RegisteredSchema, registry: SchemaLookup) -> ValueDecoder | None:
    check = compile_schema(latest)
    if not isinstance(check, AvroCheck):
        return None
    parsed = check.parsed
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        return None
    fields = _named([(f["name"], _avro_kind(f["type"])) for f in parsed["fields"]])
    import fastavro  # noqa: PLC0415  (the engine imports it only where Avro is used)

    read = fastavro.schemaless_reader
    writers: dict[int, Any] = {latest.schema_id: parsed}

    def writer_schema(schema_id: int) -> Any:
        """The Avro schema registered under ``schema_id`` (None: there is none
        this decoder can read, so the prefix was the record's own bytes)."""
        if schema_id not in writers:
            registered = registry.by_id(schema_id)
            compiled = compile_schema(registered) if registered is not None else None
            if registered is None or registered.schema_type != AVRO:
                return None
            if not isinstance(compiled, AvroCheck):
                return None
            writers[schema_id] = compiled.parsed
        return writers[schema_id]

    def decode(value: bytes) -> Mapping[str, Any]:
        # A framed value names its writer's schema; an unframed one (raw
        # validation) was written with the subject's latest.
        body, writer = memoryview(value), parsed
        try:
            schema_id, framed_body = unframe(value)
        except NotFramed:
            pass
        else:
            found = writer_schema(schema_id)
            if found is not None:
                body, writer = framed_body, found
        stream = io.BytesIO(body)
        document = read(stream, writer, parsed if writer is not parsed else None)
        left = len(body) - stream.tell()
        if left:
            raise ValueError(f"{left} bytes left after the Avro record")
        if not isinstance(document, dict):
            raise ValueError("the value is not an Avro record")
        return document

    return ValueDecoder(fields, decode, latest.schema_id)


def _avro_kind(schema: Any) -> str:
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return _avro_kind(branches[0]) if len(branches) == 1 else "json"
    if isinstance(schema, str):
        return _AVRO_KINDS.get(schema, "json")
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return "timestamp"
        if logical is None:
            return _AVRO_KINDS.get(schema.get("type"), "json")  # type: ignore[arg-type]
    return "json"


# -- both -----------------------------------------------------------------------------


def _named(pairs: list[tuple[str, str]]) -> list[TypedField]:
    fields = []
    for source, kind in pairs:
        column = f"value_{source}" if source in BASE_COLUMNS else source
        fields.append(TypedField(column, source, kind))
    return fields


def _body(value: bytes) -> bytes | memoryview:
    """A JSON value's text, after the schema registry's prefix if it has one
    (JSON text never starts with byte 0, so the two cannot be confused)."""
    try:
        return unframe(value)[1]
    except NotFramed:
        return value


def converter(field: TypedField) -> Callable[[Any], Any]:
    """``field``'s value conversion, as ``_convert`` does it, with the
    checks of its kind alone (the common kinds without _convert's dispatch)."""
    kind = field.kind

    def refuse(found: Any) -> Any:
        raise ValueError(f"{field.source}: {found!r} is not a {kind}")

    if kind == "string":
        return lambda found: found if found is None or isinstance(found, str) else refuse(found)
    if kind == "boolean":
        return lambda found: found if found is None or isinstance(found, bool) else refuse(found)
    if kind == "long":

        def to_long(found: Any) -> Any:
            if found is None or (
                type(found) is int and _LONG_MIN <= found <= _LONG_MAX  # not a bool
            ):
                return found
            return _convert(found, field)

        return to_long
    if kind == "double":

        def to_double(found: Any) -> Any:
            if found is None:
                return None
            if type(found) is float or type(found) is int:  # not a bool
                return float(found)
            return _convert(found, field)

        return to_double
    return lambda found: _convert(found, field)


_NOT_UTF8_FIRST = frozenset((0x00, 0xEF, 0xFE, 0xFF))
"""First bytes after which json.loads(bytes) may pick another encoding than
UTF-8 (a BOM, or a zero byte of UTF-16/32)."""


def _json_text(body: bytes | memoryview) -> str | bytes:
    """``body`` as json.loads takes it: its UTF-8 text when json.loads would
    read it as UTF-8 (no BOM, no zero byte in the first two), which saves
    json's encoding detection per value; the bytes as they are otherwise."""
    raw = bytes(body)
    if len(raw) >= 2 and raw[0] not in _NOT_UTF8_FIRST and raw[1] != 0:
        return raw.decode("utf-8", "surrogatepass")
    return raw


def _convert(found: Any, field: TypedField) -> Any:
    if found is None:
        return None
    kind = field.kind
    if kind == "json":
        return json.dumps(found, separators=(",", ":"), default=_json_default)
    if kind == "string" and isinstance(found, str):
        return found
    if kind == "boolean" and isinstance(found, bool):
        return found
    if kind in ("long", "int") and isinstance(found, int) and not isinstance(found, bool):
        low, high = (_LONG_MIN, _LONG_MAX) if kind == "long" else (_INT_MIN, _INT_MAX)
        if low <= found <= high:
            return found
    if (
        kind in ("double", "float")
        and isinstance(found, int | float)
        and not isinstance(found, bool)
    ):
        number = float(found)
        if kind == "double" or math.isnan(number) or abs(number) <= 3.4028234663852886e38:
            return number
    if kind == "binary" and isinstance(found, bytes):
        return found
    if kind == "timestamp" and isinstance(found, datetime):
        return found
    raise ValueError(f"{field.source}: {found!r} is not a {kind}")


def _json_default(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)  # datetimes, decimals, UUIDs as their text
