"""Registered schemas made ready to check payloads, and the cache that keeps
them: a JSON Schema becomes a compiled ``jsonschema`` validator, an Avro
schema a parsed ``fastavro`` schema, a Protobuf schema its compiled
descriptors (engine/schemas/proto_check.py), each once per schema, not per
record.

A schema the broker cannot check a payload against on its own (a JSON or
Avro schema with references to other subjects; a Protobuf schema with
references when no lookup resolves them; a recursive
Avro schema, whose payload could nest deeper than fastavro's reader can
recurse without overflowing the C stack; an Avro array of items that take
no bytes, whose block count a payload could claim without sending it) is
checked by its id only: the id is registered.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from engine.linear_regex import InvalidPattern
from engine.schemas.types import AVRO, JSON, PROTOBUF, RegisteredSchema, SchemaReference

Referenced = Callable[[SchemaReference], RegisteredSchema | None]
"""Finds the schema a reference names (SchemaLookup.referenced)."""

CACHE_SIZE = 1024
"""Compiled schemas kept; the least recently used goes first."""


class CompiledSchema(Protocol):
    def problem(self, body: bytes | memoryview) -> str | None:
        """Why ``body`` does not hold to the schema (None: it does). The
        reason follows the field's name: "value <reason>"."""
        ...


class IdOnly:
    """A schema whose payloads pass once their id is known."""

    def problem(self, body: bytes | memoryview) -> str | None:
        return None


class Unusable:
    """A registered schema that does not compile: every payload is refused
    with the reason, so the producer learns the schema is at fault."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def problem(self, body: bytes | memoryview) -> str | None:
        return self.reason


class JsonSchemaCheck:
    """A payload is JSON text that the JSON Schema accepts, its regexes
    matched in linear time (engine/schemas/linear_json_schema.py)."""

    def __init__(self, schema: Any) -> None:
        # jsonschema is imported by the first JSON Schema compiled, not with
        # the engine: most engines never validate a record (a faster start).
        import jsonschema.exceptions  # type: ignore[import-untyped]  # noqa: PLC0415
        import jsonschema.validators  # type: ignore[import-untyped]  # noqa: PLC0415

        from engine.schemas.linear_json_schema import linear_validator  # noqa: PLC0415

        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
        self.validator = linear_validator(cls, schema)
        self._best_match = jsonschema.exceptions.best_match

    def problem(self, body: bytes | memoryview) -> str | None:
        try:
            instance = json.loads(bytes(body), parse_constant=_not_json)
        except (ValueError, RecursionError) as error:
            return f"is not JSON: {error}"
        try:
            if self.validator.is_valid(instance):  # the common case, without ranking errors
                return None
            found = self._best_match(self.validator.iter_errors(instance))
        except Exception as failure:  # a $ref that does not resolve, a recursion too deep
            return f"could not be checked against its schema: {failure}"
        if found is None:
            return None
        return f"{found.json_path}: {found.message}"


def _not_json(constant: str) -> Any:
    """Python's json module reads NaN, Infinity and -Infinity, which JSON
    (RFC 8259) has not: as numbers they would pass any bound (NaN compares
    false), and consumers' parsers refuse them."""
    raise ValueError(f"{constant} is not a JSON value")


class AvroCheck:
    """A payload decodes as the Avro schema's binary encoding, to its last byte."""

    def __init__(self, parsed: Any) -> None:
        import fastavro  # noqa: PLC0415  (see JsonSchemaCheck)

        self.parsed = parsed
        self._read = fastavro.schemaless_reader

    def problem(self, body: bytes | memoryview) -> str | None:
        reader = io.BytesIO(body)
        try:
            self._read(reader, self.parsed, None)
        except Exception as error:  # fastavro raises what its decoding met
            return f"does not decode as Avro: {type(error).__name__}: {error}"
        left = len(body) - reader.tell()
        if left:
            return f"does not decode as Avro: {left} bytes left after the record"
        return None


def compile_schema(
    registered: RegisteredSchema, referenced: Referenced | None = None
) -> CompiledSchema:
    """What checks payloads against ``registered`` (``referenced``: how a
    Protobuf schema's references are found; None: they are not)."""
    if registered.schema_type == PROTOBUF:
        return _compile_protobuf(registered, referenced)
    if registered.references or registered.schema_type not in (JSON, AVRO):
        return IdOnly()
    try:
        text = json.loads(registered.schema)
    except ValueError as error:
        return Unusable(f"has schema id {registered.schema_id}, which is not JSON: {error}")
    try:
        if registered.schema_type == JSON:
            return JsonSchemaCheck(text)
        import fastavro  # noqa: PLC0415  (see JsonSchemaCheck)

        parsed = fastavro.parse_schema(text)
    except InvalidPattern as error:  # stored before the registry refused such patterns
        return Unusable(
            f"has schema id {registered.schema_id}, which does not compile: its {error}"
        )
    except Exception as error:  # the schema libraries' own errors
        return Unusable(
            f"has schema id {registered.schema_id}, which does not compile: "
            f"{type(error).__name__}: {error}"
        )
    if _is_recursive(parsed, frozenset()) or _has_array_of_empty_items(parsed, {}):
        return IdOnly()
    return AvroCheck(parsed)


def _compile_protobuf(
    registered: RegisteredSchema, referenced: Referenced | None
) -> CompiledSchema:
    if registered.references and referenced is None:
        return IdOnly()
    from engine.schemas import proto_check, proto_files  # noqa: PLC0415

    try:
        return proto_check.protobuf_check(registered, referenced or (lambda _: None))
    except proto_files.ProtoSchemaError as error:  # the extra missing, too
        return Unusable(f"has schema id {registered.schema_id}, which does not compile: {error}")


def _is_recursive(schema: Any, enclosing: frozenset[str]) -> bool:
    """Whether a named type in ``schema`` refers to itself, directly or through
    the types inside it (``enclosing``: the names being defined around it)."""
    if isinstance(schema, str):
        return schema in enclosing
    if isinstance(schema, list):
        return any(_is_recursive(branch, enclosing) for branch in schema)
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind in {"record", "error"}:
        inside = enclosing | {schema.get("name", "")}
        return any(_is_recursive(field["type"], inside) for field in schema["fields"])
    if kind == "array":
        return _is_recursive(schema["items"], enclosing)
    if kind == "map":
        return _is_recursive(schema["values"], enclosing)
    return isinstance(kind, dict | list) and _is_recursive(kind, enclosing)


_FIXED_WIDTH = {"boolean", "int", "long", "float", "double", "bytes", "string", "enum"}


def _may_be_empty(schema: Any, named: dict[str, Any], seen: frozenset[str]) -> bool:
    """Whether a value of ``schema`` may encode to no bytes at all."""
    if isinstance(schema, list):  # a union: its branch index takes a byte
        return False
    if isinstance(schema, str):
        if schema == "null":
            return True
        if schema in named and schema not in seen:
            return _may_be_empty(named[schema], named, seen | {schema})
        return False
    kind = schema.get("type")
    if kind in {"record", "error"}:
        name = schema.get("name", "")
        return all(_may_be_empty(field["type"], named, seen | {name}) for field in schema["fields"])
    if kind == "fixed":
        return bool(schema.get("size") == 0)
    if kind in _FIXED_WIDTH or kind in ("array", "map"):
        return False
    return _may_be_empty(kind, named, seen)


def _has_array_of_empty_items(schema: Any, named: dict[str, Any]) -> bool:
    """Whether an array somewhere in ``schema`` holds items that may take no
    bytes, so that a block count a payload claims is not bounded by its size.
    Fills ``named`` with the named types met."""
    if isinstance(schema, list):
        return any(_has_array_of_empty_items(branch, named) for branch in schema)
    if not isinstance(schema, dict):
        return False
    if "name" in schema:
        named[schema["name"]] = schema
    kind = schema.get("type")
    if kind == "array":
        items = schema["items"]
        return _has_array_of_empty_items(items, named) or _may_be_empty(items, named, frozenset())
    if kind == "map":
        return _has_array_of_empty_items(schema["values"], named)
    if kind in ("record", "error"):
        return any(_has_array_of_empty_items(f["type"], named) for f in schema["fields"])
    return _has_array_of_empty_items(kind, named)


class CompiledSchemas:
    """Compiled schemas by the registered schema they came from (its id, type
    and text), at most ``capacity`` of them; shared by a broker's topics."""

    def __init__(self, capacity: int = CACHE_SIZE) -> None:
        self.capacity = capacity
        self._compiled: OrderedDict[RegisteredSchema, CompiledSchema] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, registered: RegisteredSchema, referenced: Referenced | None = None
    ) -> CompiledSchema:
        with self._lock:
            compiled = self._compiled.get(registered)
            if compiled is not None:
                self._compiled.move_to_end(registered)
                return compiled
        # Outside the lock: compiling may take a while (protoc, for Protobuf).
        compiled = compile_schema(registered, referenced)
        with self._lock:
            self._compiled[registered] = compiled
            while len(self._compiled) > self.capacity:
                self._compiled.popitem(last=False)
        return compiled
