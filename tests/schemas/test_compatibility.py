"""Compatibility checks: Avro's schema resolution, held against fastavro's
own reader, and Confluent's JSON Schema rules."""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from typing import Any

import fastavro
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.schemas.compatibility import ParsedSchema, can_read, check

PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
FIELDS = ["a", "b", "c"]
SYMBOLS = ["A", "B", "C"]


def avro(schema: Any) -> ParsedSchema:
    named: dict[str, Any] = {}
    return ParsedSchema("AVRO", fastavro.parse_schema(schema, named_schemas=named), named)


def jsons(schema: Any) -> ParsedSchema:
    return ParsedSchema("JSON", schema)


# -- Avro, against fastavro's reader -------------------------------------------------

DEFAULTS: dict[str, Any] = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0,
                            "double": 0.0, "bytes": "", "string": ""}  # fmt: skip


def _default(schema: Any) -> Any:
    if isinstance(schema, str):
        return DEFAULTS[schema]
    if isinstance(schema, list):
        return _default(schema[0])
    return {"enum": lambda: schema["symbols"][0], "array": list, "map": dict}[schema["type"]]()


def built_once(
    build: Callable[[Any], st.SearchStrategy[Any]],
) -> Callable[[Any], st.SearchStrategy[Any]]:
    """``build`` once per distinct schema (told apart by its repr): the
    same strategy each time, not one built and validated again for every
    example, which took most of an example's time."""
    built: dict[str, st.SearchStrategy[Any]] = {}

    @functools.wraps(build)
    def once(schema: Any) -> st.SearchStrategy[Any]:
        key = repr(schema)
        if key not in built:
            built[key] = build(schema)
        return built[key]

    return once


@built_once
def field_types(field: str) -> st.SearchStrategy[Any]:
    """A field's type; named types are named after the field, so a schema
    never defines one name twice."""
    prim = st.sampled_from(PRIMITIVES)
    enum = st.builds(
        lambda symbols, default: {
            "type": "enum", "name": f"E{field}", "symbols": symbols,
            **({"default": symbols[0]} if default else {}),
        },
        st.lists(st.sampled_from(SYMBOLS), min_size=1, unique=True),
        st.booleans(),
    )  # fmt: skip
    union = st.lists(prim, min_size=1, max_size=3, unique=True)
    array = st.builds(lambda items: {"type": "array", "items": items}, prim | union)
    mapping = st.builds(lambda values: {"type": "map", "values": values}, prim)
    nested = st.builds(
        lambda types: {
            "type": "record", "name": f"N{field}",
            "fields": [{"name": n, "type": t} for n, t in types.items()],
        },
        st.dictionaries(st.sampled_from(["x", "y"]), prim, min_size=1),
    )  # fmt: skip
    return st.one_of(prim, enum, union, array, mapping, nested)


@built_once
def changed(schema: Any) -> st.SearchStrategy[Any]:
    """A small change to a writer's type, as a schema's next version makes."""
    prim = st.sampled_from(PRIMITIVES)
    if isinstance(schema, str):
        return prim | st.lists(prim, min_size=1, max_size=3, unique=True)
    if isinstance(schema, list):
        return st.lists(prim, min_size=1, max_size=3, unique=True) | prim
    kind = schema["type"]
    if kind == "enum":
        return st.builds(
            lambda symbols, default: {
                **schema, "symbols": symbols, **({"default": symbols[0]} if default else {}),
            } if default else {k: v for k, v in {**schema, "symbols": symbols}.items()
                               if k != "default"},
            st.lists(st.sampled_from(SYMBOLS), min_size=1, unique=True),
            st.booleans(),
        )  # fmt: skip
    if kind == "array":
        return st.builds(lambda items: {**schema, "items": items}, changed(schema["items"]))
    if kind == "map":
        return st.builds(lambda values: {**schema, "values": values}, changed(schema["values"]))
    return st.builds(
        lambda fields: {**schema, "fields": fields},
        st.lists(
            st.builds(lambda name, t: {"name": name, "type": t}, st.sampled_from(["x", "y"]), prim),
            min_size=1, max_size=2, unique_by=lambda f: f["name"],
        ),
    )  # fmt: skip


@st.composite
def schema_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A writer record and a reader record: the reader keeps, changes or
    drops each of the writer's fields, or adds its own, with or without a
    default."""
    writer_fields = [
        {"name": name, "type": draw(field_types(name))} for name in FIELDS if draw(st.booleans())
    ]
    reader_fields = []
    written = {f["name"]: f["type"] for f in writer_fields}
    for name in FIELDS:
        choice = draw(st.sampled_from(["keep", "change", "change", "new", "drop"]))
        if choice == "drop" or (choice in ("keep", "change") and name not in written):
            continue
        if choice == "keep":
            field_type = written[name]
        elif choice == "change":
            field_type = draw(changed(written[name]))
        else:
            field_type = draw(field_types(name))
        field: dict[str, Any] = {"name": name, "type": field_type}
        if draw(st.booleans()) and not (isinstance(field_type, dict) and "fields" in field_type):
            field["default"] = _default(field_type)
        reader_fields.append(field)
    return (
        {"type": "record", "name": "R", "fields": writer_fields},
        {"type": "record", "name": "R", "fields": reader_fields},
    )


@built_once
def datum(schema: Any) -> st.SearchStrategy[Any]:
    """A value of ``schema``. Bytes are UTF-8 text: Avro reads bytes as a
    string by decoding them, so bytes->string holds for UTF-8 bytes only."""
    if isinstance(schema, list):
        return st.one_of(*(datum(branch) for branch in schema))
    if isinstance(schema, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.text(max_size=4).map(str.encode),
            "string": st.text(max_size=4),
        }[schema]
    kind = schema["type"]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(datum(schema["items"]), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=3), datum(schema["values"]), max_size=3)
    return st.fixed_dictionaries({f["name"]: datum(f["type"]) for f in schema["fields"]})


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_what_the_checker_calls_readable_fastavro_reads(data: st.DataObject) -> None:
    writer, reader = data.draw(schema_pairs())
    parsed_writer, parsed_reader = avro(writer), avro(reader)
    compatible = not can_read(parsed_reader, parsed_writer)
    if not compatible:
        return
    for _ in range(3):
        value = data.draw(datum(writer))
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed_writer.value, value)
        buffer.seek(0)
        fastavro.schemaless_reader(buffer, parsed_writer.value, parsed_reader.value)


def test_the_pair_strategy_yields_both_verdicts() -> None:
    """The property above is only as good as the compatible pairs it meets."""
    verdicts: set[bool] = set()

    @settings(max_examples=100, deadline=None, database=None)
    @given(schema_pairs())
    def collect(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
        verdicts.add(not can_read(avro(pair[1]), avro(pair[0])))

    collect()
    assert verdicts == {True, False}


def _record(*fields: dict[str, Any], name: str = "R") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


@pytest.mark.parametrize(
    ("writer", "reader", "readable"),
    [
        ("int", "long", True),
        ("int", "double", True),
        ("long", "int", False),
        ("float", "double", True),
        ("double", "float", False),
        ("string", "bytes", True),
        ("bytes", "string", True),
        ("string", "int", False),
        ("int", ["null", "int"], True),
        (["null", "int"], "int", False),
        (["null", "int"], ["null", "long"], True),
        ({"type": "int", "logicalType": "date"}, "int", True),
        (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": "int"},
         {"name": "b", "type": "string", "default": ""}), True),
        (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": "int"},
         {"name": "b", "type": "string"}), False),
        (_record({"name": "a", "type": "int"}, {"name": "b", "type": "int"}),
         _record({"name": "a", "type": "int"}), True),
        (_record({"name": "a", "type": "int"}), _record({"name": "a", "type": "int"}, name="S"),
         False),
        (_record({"name": "a", "type": "int"}), {**_record({"name": "a", "type": "int"},
         name="S"), "aliases": ["R"]}, True),
        (_record({"name": "old", "type": "int"}),
         _record({"name": "new", "type": "int", "aliases": ["old"]}), True),
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]},
         {"type": "enum", "name": "E", "symbols": ["A"]}, False),
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]},
         {"type": "enum", "name": "E", "symbols": ["A"], "default": "A"}, True),
        ({"type": "enum", "name": "E", "symbols": ["A"]},
         {"type": "enum", "name": "E", "symbols": ["A", "B"]}, True),
        ({"type": "array", "items": "int"}, {"type": "array", "items": "long"}, True),
        ({"type": "map", "values": "long"}, {"type": "map", "values": "int"}, False),
        ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8},
         False),
    ],
)  # fmt: skip
def test_avro_resolution_rules(writer: Any, reader: Any, readable: bool) -> None:
    assert (not can_read(avro(reader), avro(writer))) is readable


def test_a_recursive_record_resolves() -> None:
    node = {"type": "record", "name": "Node", "fields": [
        {"name": "value", "type": "int"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ]}  # fmt: skip
    wider = json.loads(json.dumps(node).replace('"int"', '"long"'))
    assert can_read(avro(wider), avro(node)) == []
    assert can_read(avro(node), avro(wider)) != []


def test_levels() -> None:
    v1, v2, v3 = avro("int"), avro("long"), avro("double")
    assert check("BACKWARD", v3, [v1, v2]) == []
    assert check("FORWARD", v2, [v1]) != []  # an int reader cannot read longs
    assert check("FORWARD", v1, [v2]) == []
    assert check("FULL", v2, [v1]) != [] and check("FULL", v1, [v1]) == []
    narrow = avro("int")
    assert check("BACKWARD", narrow, [v1, v3]) != []  # against the latest, double
    assert check("BACKWARD_TRANSITIVE", avro("long"), [avro("double"), avro("int")]) != []
    assert check("BACKWARD", avro("long"), [avro("double"), avro("int")]) == []
    assert check("NONE", avro("string"), [v1]) == []
    assert check("BACKWARD", jsons({"type": "object"}), [v1]) != []  # another type


# -- JSON Schema ---------------------------------------------------------------------

OPEN = {"type": "object", "properties": {"a": {"type": "string"}}}
CLOSED = {**OPEN, "additionalProperties": False}


@pytest.mark.parametrize(
    ("old", "new", "backward"),
    [
        (OPEN, OPEN, True),
        # a property removed: fine while the new model is open, not once closed
        (OPEN, {"type": "object"}, True),
        (CLOSED, {"type": "object", "additionalProperties": False}, False),
        # a property added: old data may carry anything under that name if open
        (OPEN, {**OPEN, "properties": {**OPEN["properties"], "b": {"type": "integer"}}}, False),
        (CLOSED, {**CLOSED, "properties": {**OPEN["properties"], "b": {"type": "integer"}}}, True),
        # required
        (OPEN, {**OPEN, "required": ["a"]}, False),
        ({**OPEN, "required": ["a"]}, OPEN, True),
        # types
        ({"type": "integer"}, {"type": "number"}, True),
        ({"type": "number"}, {"type": "integer"}, False),
        ({"type": "string"}, {"type": ["string", "null"]}, True),
        ({"type": ["string", "null"]}, {"type": "string"}, False),
        # enums
        ({"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}, True),
        ({"enum": ["a", "b"]}, {"enum": ["a"]}, False),
        ({"type": "string"}, {"type": "string", "enum": ["a"]}, False),
        # bounds
        ({"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, True),
        ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 5}, False),
        ({"type": "string"}, {"type": "string", "minLength": 1}, False),
        # the content model
        (OPEN, CLOSED, False),
        (CLOSED, OPEN, True),
        # items
        ({"type": "array", "items": {"type": "integer"}},
         {"type": "array", "items": {"type": "number"}}, True),
        ({"type": "array", "items": {"type": "number"}},
         {"type": "array", "items": {"type": "integer"}}, False),
        # local references are followed
        ({"$defs": {"n": {"type": "integer"}}, "type": "object",
          "properties": {"x": {"$ref": "#/$defs/n"}}},
         {"$defs": {"n": {"type": "number"}}, "type": "object",
          "properties": {"x": {"$ref": "#/$defs/n"}}}, True),
        ({"$defs": {"n": {"type": "number"}}, "type": "object",
          "properties": {"x": {"$ref": "#/$defs/n"}}},
         {"$defs": {"n": {"type": "integer"}}, "type": "object",
          "properties": {"x": {"$ref": "#/$defs/n"}}}, False),
    ],
)  # fmt: skip
def test_json_schema_rules(old: Any, new: Any, backward: bool) -> None:
    assert (not check("BACKWARD", jsons(new), [jsons(old)])) is backward
    assert (not check("FORWARD", jsons(old), [jsons(new)])) is backward


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b", "ccccccc"]),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=6,
)
JSON_PARTS = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["object", "string", "integer", "number", ["string", "null"]]),
        "properties": st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([{"type": "string"}, {"type": "integer"}, {"type": "number"}, {}]),
            max_size=3,
        ),
        "additionalProperties": st.booleans(),
        "required": st.lists(st.sampled_from(["a", "b"]), unique=True, max_size=2),
        "enum": st.lists(JSON_VALUES, min_size=1, max_size=3),
        "maxLength": st.integers(1, 8),
    },
)


OBJECTS = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.none() | st.integers(-5, 5) | st.sampled_from(["a", "ccccccc"]) | st.just(1.5),
    max_size=3,
)
"""Objects most of all: the content-model rules are about their properties."""


@settings(max_examples=300, deadline=None)
@given(JSON_PARTS, JSON_PARTS, OBJECTS | JSON_VALUES)
def test_what_a_json_reader_is_said_to_read_it_accepts(
    writer: dict[str, Any], reader: dict[str, Any], value: Any
) -> None:
    """Whenever the checker says ``reader`` reads what ``writer`` accepts,
    jsonschema agrees on any value the writer accepts."""
    if can_read(jsons(reader), jsons(writer)):
        return
    if jsonschema.Draft202012Validator(writer).is_valid(value):
        assert jsonschema.Draft202012Validator(reader).is_valid(value), (writer, reader, value)
