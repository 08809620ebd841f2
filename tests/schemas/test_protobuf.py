"""PROTOBUF schemas in the registry's store: .proto text and base64
descriptors registered, references between subjects by import name, invalid
text refused with 42201, and compatibility by Confluent's breaking
differences, level by level, with hypothesis properties over generated
messages (a schema is compatible with itself; adding an optional field is
compatible both ways; moving a field's type out of its wire group is not)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.schemas.errors import IncompatibleSchema, InvalidSchema
from engine.schemas.proto_compat import breaking_changes
from engine.schemas.proto_files import MAIN_NAME, ProtoSchema, parse
from engine.schemas.store import SchemaRegistry
from engine.schemas.types import PROTOBUF, SchemaReference
from tests.schemas.protos import proto
from tests.schemas.test_store import Tables

PB = PROTOBUF


ORDER = proto("message Order { string id = 1; int64 cents = 2; }")


@pytest.fixture
def registry() -> SchemaRegistry:
    return Tables().registry()


def compiled(text: str) -> ProtoSchema:
    return parse(text, MAIN_NAME, [])


def test_proto_text_registers_once_and_is_served_as_written(registry: SchemaRegistry) -> None:
    first = registry.register("orders-value", ORDER, PB)
    assert registry.register("orders-value", ORDER, PB) == first
    assert registry.register("audit-value", ORDER, PB) == first
    found = registry.version("orders-value", "latest")
    assert (found.schema.schema, found.schema.schema_type) == (ORDER, PB)
    assert registry.lookup("orders-value", ORDER, PB).version == 1


def test_a_base64_descriptor_registers_and_serves_the_same_messages(
    registry: SchemaRegistry,
) -> None:
    as_text = registry.register("a", ORDER, PB)
    serialized = registry.serialized(registry.schema(as_text))
    as_descriptor = registry.register("b", serialized, PB)
    assert as_descriptor != as_text  # another text: another schema, as Confluent keeps it
    assert registry.schema(as_descriptor).schema == serialized
    reread = compiled(serialized)
    assert [m.name for m in reread.file.message_type] == ["Order"]
    assert registry.check("b", ORDER, PB) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            'syntax = "proto3";\nmessage A {\n  strin x = 1;\n}\n',
            ["line 3", '"strin" is not defined'],
        ),
        ('syntax = "proto3";\nmessage A { int32 x = 1; int32 y = 1; }\n', ["number 1"]),
        ('syntax = "proto3";\nimport "missing.proto";\n', ["missing.proto"]),
        ("bm90IGEgZGVzY3JpcHRvcg==", ["FileDescriptorProto"]),
        ("", ["Invalid schema"]),
    ],
)
def test_what_does_not_compile_is_42201_with_protocs_words(
    registry: SchemaRegistry, text: str, words: list[str]
) -> None:
    with pytest.raises(InvalidSchema) as refused:
        registry.register("s", text, PB)
    assert refused.value.registry_code == 42201
    message = str(refused.value)
    assert message.startswith("Invalid schema")
    for word in words:
        assert word in message, message
    assert registry.subjects() == []


def test_references_resolve_by_import_name(registry: SchemaRegistry) -> None:
    money = proto("message Money { int64 units = 1; }", package="common")
    registry.register("money", money, PB)
    pay = proto('import "common/money.proto";\nmessage Pay { common.Money amount = 1; }')
    with pytest.raises(InvalidSchema):
        registry.register("pay", pay, PB)  # the import has no reference
    reference = SchemaReference("common/money.proto", "money", 1)
    pay_id = registry.register("pay", pay, PB, [reference])
    assert registry.schema(pay_id).references == (reference,)
    assert registry.referenced_by("money", 1) == [pay_id]
    with pytest.raises(InvalidSchema) as missing:
        registry.register("pay2", pay, PB, [SchemaReference("common/money.proto", "money", 9)])
    assert "does not exist" in str(missing.value)
    avro = '{"type": "record", "name": "R", "fields": []}'
    registry.register("avro", avro)
    with pytest.raises(InvalidSchema) as wrong_type:
        registry.register("pay3", pay, PB, [SchemaReference("common/money.proto", "avro", 1)])
    assert "AVRO" in str(wrong_type.value)
    for bad in ("../etc/passwd.proto", "/abs.proto", "no-suffix"):
        registry.register("money-copy", money, PB)
        with pytest.raises(InvalidSchema):
            registry.register("pay4", pay, PB, [SchemaReference(bad, "money", 1)])


def test_imports_of_the_well_known_types_need_no_reference(registry: SchemaRegistry) -> None:
    text = proto(
        'import "google/protobuf/timestamp.proto";\n'
        "message Event { google.protobuf.Timestamp at = 1; }"
    )
    schema_id = registry.register("events", text, PB)
    serialized = registry.serialized(registry.schema(schema_id))
    assert registry.register("events-serialized", serialized, PB) > schema_id


# -- compatibility -------------------------------------------------------------------


def breaking(old: str, new: str) -> list[str]:
    """What breaks reading ``old``'s data with ``new`` (BACKWARD's question)."""
    return breaking_changes(compiled(old), compiled(new))


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (ORDER, ORDER.replace("package shop", "package store"), "PACKAGE_CHANGED"),
        (ORDER, proto("message Purchase { string id = 1; int64 cents = 2; }"), "MESSAGE_REMOVED"),
        (ORDER, ORDER.replace("int64 cents", "string cents"), "FIELD_SCALAR_KIND_CHANGED"),
        (ORDER, ORDER.replace("int64 cents", "sint64 cents"), "FIELD_SCALAR_KIND_CHANGED"),
        (
            ORDER,
            proto("message Order { string id = 1; M cents = 2; }\nmessage M {}"),
            "FIELD_KIND_CHANGED",
        ),
        (
            proto("message Order { A x = 1; }\nmessage A {}\nmessage B {}"),
            proto("message Order { B x = 1; }\nmessage A {}\nmessage B {}"),
            "FIELD_NAMED_TYPE_CHANGED",
        ),
        (
            ORDER,
            ORDER.replace("int64 cents", "repeated int64 cents"),
            "FIELD_NUMERIC_LABEL_CHANGED",
        ),
        (
            proto("message Order { optional string id = 1; }", syntax="proto2"),
            proto(
                "message Order { optional string id = 1; required int32 n = 2; }", syntax="proto2"
            ),
            "REQUIRED_FIELD_ADDED",
        ),
        (
            proto("message Order { required string id = 1; }", syntax="proto2"),
            proto("message Order { }", syntax="proto2"),
            "REQUIRED_FIELD_REMOVED",
        ),
        (
            proto("message Order { oneof pay { string card = 1; string iban = 2; } }"),
            proto("message Order { oneof pay { string card = 1; } string iban = 2; }"),
            "ONEOF_FIELD_REMOVED",
        ),
        (
            proto("message Order { oneof pay { string card = 1; } string iban = 2; }"),
            proto("message Order { oneof pay { string card = 1; string iban = 2; } }"),
            "FIELD_MOVED_TO_EXISTING_ONEOF",
        ),
        (
            proto("message Order { string card = 1; string iban = 2; }"),
            proto("message Order { oneof pay { string card = 1; string iban = 2; } }"),
            "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
        ),
        (
            proto("message Order { map<string, int32> counts = 1; }"),
            proto("message Order { map<string, string> counts = 1; }"),
            "FIELD_SCALAR_KIND_CHANGED",
        ),
    ],
)
def test_each_breaking_difference_is_named(old: str, new: str, kind: str) -> None:
    found = breaking(old, new)
    assert found and all(reason.startswith(kind) for reason in found), found


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (ORDER, ORDER.replace("int64 cents", "int32 cents")),  # the varint group
        (ORDER, ORDER.replace("int64 cents", "uint64 amount")),  # and renamed
        (ORDER, ORDER.replace("string id", "bytes id")),
        (ORDER, ORDER.replace("string id", "repeated string id")),
        (ORDER, proto("message Order { string id = 1; }")),  # a field removed
        (ORDER, ORDER + "message Refund { string id = 1; }"),  # a message added
        (
            ORDER,
            proto("message First {}\nmessage Order { string id = 1; int64 cents = 2; }"),
        ),  # messages reordered
        (
            proto("enum S { A = 0; B = 1; }\nmessage Order { S s = 1; }"),
            proto("enum S { A = 0; C = 2; }\nmessage Order { S s = 1; }"),
        ),
        (
            proto("enum S { A = 0; }\nmessage Order { S s = 1; }"),
            proto("message Order { int32 s = 1; }"),  # an enum reads as a varint
        ),
        (
            proto("message Order { string card = 1; }"),
            proto("message Order { oneof pay { string card = 1; } }"),  # one field into a new oneof
        ),
        (
            proto("message Order { oneof pay { string card = 1; } }"),
            proto("message Order { string card = 1; }"),  # a oneof removed
        ),
    ],
)
def test_confluents_compatible_changes_pass(old: str, new: str) -> None:
    assert breaking(old, new) == []


def test_levels_check_the_directions_and_versions_they_name(registry: SchemaRegistry) -> None:
    v1 = proto("message Order { string id = 1; }\nmessage Note { string text = 1; }")
    v2 = proto("message Order { string id = 1; int32 n = 2; }\nmessage Note { string text = 1; }")
    without_note = proto("message Order { string id = 1; int32 n = 2; }")
    registry.register("s", v1, PB)
    registry.register("s", v2, PB)
    # BACKWARD: the new schema reads the latest's data; a message removed breaks that.
    assert registry.check("s", without_note, PB) != []
    # FORWARD: the latest reads the new one's data; a removed message is none of its business.
    registry.set_compatibility("FORWARD", "s")
    assert registry.check("s", without_note, PB) == []
    # ... but a message added is one the latest cannot read.
    registry.set_compatibility("FORWARD", "s")
    assert registry.check("s", v2 + "message Extra {}", PB) != []
    registry.set_compatibility("FULL", "s")
    assert registry.check("s", without_note, PB) != []
    registry.set_compatibility("NONE", "s")
    assert registry.check("s", proto("message Other {}", package="x"), PB) == []
    # TRANSITIVE: held to every version, not just the latest.
    registry.set_compatibility("BACKWARD", "t")
    registry.register("t", proto("message Order { int64 n = 1; }"), PB)
    registry.register("t", proto("message Order { int64 m = 2; }"), PB)
    again = proto("message Order { string n = 1; int64 m = 2; }")
    assert registry.check("t", again, PB) == []
    registry.set_compatibility("BACKWARD_TRANSITIVE", "t")
    assert registry.check("t", again, PB) != []
    with pytest.raises(IncompatibleSchema):
        registry.register("t", again, PB)


def test_a_different_schema_type_is_incompatible(registry: SchemaRegistry) -> None:
    registry.register("s", '{"type": "record", "name": "Order", "fields": []}')
    assert registry.check("s", ORDER, PB) != []


# -- properties ----------------------------------------------------------------------

_SCALARS = ("int32", "int64", "uint32", "bool", "sint32", "fixed32", "fixed64", "double",
            "float", "string", "bytes")  # fmt: skip
_GROUP = {"int32": 0, "int64": 0, "uint32": 0, "bool": 0, "sint32": 1, "fixed32": 2,
          "fixed64": 3, "double": 4, "float": 5, "string": 6, "bytes": 6}  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> list[tuple[int, str, str]]:
    """A message's fields: (number, label, type), numbers unique."""
    numbers = draw(st.lists(st.integers(1, 200), min_size=1, max_size=6, unique=True))
    return [
        (n, draw(st.sampled_from(("", "repeated "))), draw(st.sampled_from(_SCALARS)))
        for n in numbers
    ]


COMPILING = settings(max_examples=100, deadline=None)
"""Each example runs protoc on two or three files: a hundred keep CI's pass short."""


def text_of(fields: list[tuple[int, str, str]]) -> str:
    lines = "".join(f"  {label}{kind} f{n} = {n};\n" for n, label, kind in fields)
    return proto(f"message Event {{\n{lines}}}\nmessage Other {{ string x = 1; }}")


@COMPILING
@given(messages())
def test_a_schema_is_compatible_with_itself(fields: list[tuple[int, str, str]]) -> None:
    assert breaking(text_of(fields), text_of(fields)) == []


@COMPILING
@given(messages(), st.sampled_from(_SCALARS))
def test_adding_an_optional_field_is_compatible_both_ways(
    fields: list[tuple[int, str, str]], kind: str
) -> None:
    added = [*fields, (max(n for n, _, _ in fields) + 1, "", kind)]
    assert breaking(text_of(fields), text_of(added)) == []
    assert breaking(text_of(added), text_of(fields)) == []


@COMPILING
@given(messages(), st.data())
def test_a_type_out_of_its_wire_group_breaks_both_ways(
    fields: list[tuple[int, str, str]], data: st.DataObject
) -> None:
    number, label, kind = fields[0]
    other = data.draw(st.sampled_from([k for k in _SCALARS if _GROUP[k] != _GROUP[kind]]))
    changed = [(number, label, other), *fields[1:]]
    for old, new in ((fields, changed), (changed, fields)):
        reasons = breaking(text_of(old), text_of(new))
        assert any(r.startswith("FIELD_SCALAR_KIND_CHANGED") for r in reasons), reasons
