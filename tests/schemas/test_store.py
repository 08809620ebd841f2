"""The registry's store: ids, versions, deletes, levels and modes, as
Confluent's Schema Registry answers them, kept in the catalog."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.catalog import CatalogState
from engine.schemas.errors import (
    CompatibilityNotConfigured,
    IncompatibleSchema,
    InvalidCompatibilityLevel,
    InvalidMode,
    InvalidSchema,
    InvalidVersion,
    OperationNotPermitted,
    ReferenceExists,
    SchemaNotFound,
    SubjectNotFound,
    SubjectNotSoftDeleted,
    SubjectSoftDeleted,
    VersionNotFound,
    VersionNotSoftDeleted,
    VersionSoftDeleted,
)
from engine.schemas.store import SchemaRegistry, parse_version
from engine.schemas.types import SchemaReference
from tests.engine.conftest import QUIET_STORE


class Tables:
    """A catalog state and the records appended to it, without a stream."""

    def __init__(self) -> None:
        self.state = CatalogState()
        self.records: list[list[Any]] = []

    def append(self, record: list[Any]) -> None:
        # Through msgpack, as the catalog stream carries it.
        wire = msgpack.unpackb(msgpack.packb(record), strict_map_key=False)
        self.records.append(wire)
        self.state.apply(wire)

    def registry(self) -> SchemaRegistry:
        return SchemaRegistry(lambda: self.state, self.append)

    def replayed(self) -> SchemaRegistry:
        """A registry read back from the records, as a restart reads them."""
        state = CatalogState()
        for record in self.records:
            state.apply(record)
        return SchemaRegistry(lambda: state, self.append)

    def from_snapshot(self) -> SchemaRegistry:
        wire = msgpack.unpackb(msgpack.packb(self.state.to_wire()), strict_map_key=False)
        state = CatalogState.from_wire(wire)
        return SchemaRegistry(lambda: state, self.append)


def record(name: str, *fields: tuple[str, str]) -> str:
    return json.dumps(
        {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}
    )


@pytest.fixture
def registry() -> SchemaRegistry:
    return Tables().registry()


def test_the_same_schema_under_two_subjects_gets_one_id(registry: SchemaRegistry) -> None:
    pay = record("Pay", ("cents", "long"))
    first = registry.register("pay-value", pay)
    assert registry.register("audit-value", pay) == first
    # Whitespace and key spacing do not make another schema.
    assert registry.register("third", json.dumps(json.loads(pay), indent=4)) == first
    assert registry.register("pay-value", pay) == first  # no new version
    assert registry.versions("pay-value") == [1]
    other = registry.register("other", '"string"')
    assert other == first + 1
    assert registry.subject_versions_of(first) == [
        ("audit-value", 1), ("pay-value", 1), ("third", 1)
    ]  # fmt: skip


def test_a_json_schema_and_an_avro_schema_with_the_same_text_differ(
    registry: SchemaRegistry,
) -> None:
    text = '{"type": "string"}'
    assert registry.register("a", text, "AVRO") != registry.register("j", text, "JSON")


def test_versions_and_latest(registry: SchemaRegistry) -> None:
    one = registry.register("s", record("R", ("a", "int")))
    two = registry.register("s", record("R", ("a", "long")))
    assert registry.versions("s") == [1, 2]
    assert registry.version("s", "latest").schema.schema_id == two
    assert registry.version("s", -1).version == 2
    assert registry.version("s", "1").schema.schema_id == one
    latest = registry.latest("s")
    assert latest is not None and latest.schema_id == two
    assert registry.latest("nope") is None
    assert registry.by_id(999) is None
    with pytest.raises(VersionNotFound):
        registry.version("s", 3)
    with pytest.raises(SubjectNotFound):
        registry.version("nope", "latest")
    with pytest.raises(SubjectNotFound):
        registry.versions("nope")


@pytest.mark.parametrize("bad", ["0", "-2", "abc", "1.5", "2147483648", "", "latestt"])
def test_a_bad_version_string_is_42202(bad: str) -> None:
    with pytest.raises(InvalidVersion) as caught:
        parse_version(bad)
    assert caught.value.registry_code == 42202 and caught.value.http_status == 422


def test_soft_then_hard_delete_of_a_version(registry: SchemaRegistry) -> None:
    registry.register("s", record("R", ("a", "int")))
    kept = registry.register("s", record("R", ("a", "long")))
    with pytest.raises(VersionNotSoftDeleted):
        registry.delete_version("s", 2, permanent=True)
    assert registry.delete_version("s", 2) == 2
    with pytest.raises(VersionSoftDeleted):
        registry.delete_version("s", 2)
    assert registry.versions("s") == [1]
    assert registry.versions("s", deleted=True) == [1, 2]
    with pytest.raises(VersionNotFound):
        registry.version("s", 2)
    assert registry.version("s", 2, deleted=True).deleted
    assert registry.by_id(kept) is not None  # a soft-deleted version still names it
    assert registry.delete_version("s", 2, permanent=True) == 2
    assert registry.by_id(kept) is None
    with pytest.raises(SchemaNotFound):
        registry.schema(kept)
    # Registering it again gives its id back: ids are never reused or rebound.
    assert registry.register("s", record("R", ("a", "long"))) == kept
    assert registry.versions("s") == [1, 2]  # as Confluent numbers it: one past the greatest kept


def test_soft_then_hard_delete_of_a_subject(registry: SchemaRegistry) -> None:
    registry.register("s", record("R", ("a", "int")))
    registry.register("s", record("R", ("a", "long")))
    registry.set_compatibility("NONE", "s")
    with pytest.raises(SubjectNotSoftDeleted):
        registry.delete_subject("s", permanent=True)
    assert registry.delete_subject("s") == [1, 2]
    with pytest.raises(SubjectSoftDeleted):
        registry.delete_subject("s")
    assert registry.subjects() == [] and registry.subjects(deleted=True) == ["s"]
    with pytest.raises(SubjectNotFound):
        registry.versions("s")
    assert registry.delete_subject("s", permanent=True) == [1, 2]
    assert registry.subjects(deleted=True) == []
    with pytest.raises(CompatibilityNotConfigured):  # its config went with it
        registry.compatibility("s", default_to_global=False)
    with pytest.raises(SubjectNotFound):
        registry.delete_subject("s")


def test_compatibility_levels_refuse_with_409(registry: SchemaRegistry) -> None:
    registry.register("s", record("R", ("a", "int")))
    dropped = record("R", ("b", "int"))  # a field with no default the writer lacks
    with pytest.raises(IncompatibleSchema) as caught:
        registry.register("s", dropped)
    assert caught.value.registry_code == 409 and caught.value.messages
    assert registry.check("s", dropped) != []
    assert registry.check("s", record("R", ("a", "long"))) == []
    registry.set_compatibility("none", "s")
    assert registry.compatibility("s") == "NONE" and registry.compatibility() == "BACKWARD"
    registry.register("s", dropped)
    assert registry.delete_compatibility("s") == "NONE"
    assert registry.compatibility("s") == "BACKWARD"
    with pytest.raises(CompatibilityNotConfigured):
        registry.compatibility("s", default_to_global=False)
    with pytest.raises(InvalidCompatibilityLevel) as level:
        registry.set_compatibility("SIDEWAYS")
    assert level.value.registry_code == 42203


def test_transitive_levels_check_every_live_version(registry: SchemaRegistry) -> None:
    registry.set_compatibility("BACKWARD_TRANSITIVE", "s")
    registry.register("s", '"int"')
    registry.register("s", '"long"')
    # double reads long (the latest) and int: fine.
    assert registry.check("s", '"double"') == []
    registry.set_compatibility("FORWARD", "t")
    registry.register("t", '"int"')
    # FORWARD: the old int reader cannot read a new long writer.
    assert registry.check("t", '"long"') != []
    registry.set_compatibility("FULL", "t")
    assert registry.check("t", '"long"') != [] and registry.check("t", '"int"') == []


def test_invalid_schemas_are_42201(registry: SchemaRegistry) -> None:
    for text, schema_type in [
        ("not json", "AVRO"),
        ('{"type": "record", "name": "R"}', "AVRO"),  # no fields
        ('{"type": "nosuchtype"}', "AVRO"),
        ('{"type": 12}', "JSON"),
        ("[1, 2]", "JSON"),
        ('"string"', "PROTOBUF"),
        ('"string"', "XML"),
    ]:
        with pytest.raises(InvalidSchema) as caught:
            registry.register("s", text, schema_type)
        assert caught.value.registry_code == 42201
    assert registry.subjects() == []


@pytest.mark.parametrize("pattern", ["^(?=.*@).+$", r"(a)\1", "a{1001}"])
def test_a_json_schema_pattern_re2_refuses_is_42201_naming_it(
    registry: SchemaRegistry, pattern: str
) -> None:
    """The broker matches records' patterns with RE2, in linear time: a
    pattern it cannot match so is refused here, not met by a record."""
    schema = json.dumps({"properties": {"email": {"type": "string", "pattern": pattern}}})
    with pytest.raises(InvalidSchema) as caught:
        registry.register("s", schema, "JSON")
    assert caught.value.registry_code == 42201
    assert repr(pattern) in str(caught.value) and "RE2" in str(caught.value)
    assert registry.subjects() == []


def test_a_pattern_nested_past_res_recursion_is_42201(registry: SchemaRegistry) -> None:
    """The metaschema's ``regex`` format compiles a pattern with ``re``,
    which recurses once per group."""
    nested = "(?:" * 900 + "a" + ")" * 900
    with pytest.raises(InvalidSchema) as caught:
        registry.register("s", json.dumps({"pattern": nested}), "JSON")
    assert caught.value.registry_code == 42201


def test_a_backtracking_pattern_re2_matches_in_linear_time_is_registered(
    registry: SchemaRegistry,
) -> None:
    registry.register("s", json.dumps({"pattern": "^(a+)+$"}), "JSON")
    assert registry.subjects() == ["s"]


def test_references_resolve_named_avro_types(registry: SchemaRegistry) -> None:
    money = json.dumps(
        {"type": "record", "name": "Money", "fields": [{"name": "cents", "type": "long"}]}
    )
    registry.register("money", money)
    pay = json.dumps({"type": "record", "name": "Pay", "fields": [{"name": "m", "type": "Money"}]})
    with pytest.raises(InvalidSchema):
        registry.register("pay", pay)  # Money is unknown without the reference
    ref = SchemaReference("Money", "money", 1)
    pay_id = registry.register("pay", pay, references=[ref])
    assert registry.schema(pay_id).references == (ref,)
    assert registry.referenced_by("money", 1) == [pay_id]
    with pytest.raises(ReferenceExists):
        registry.delete_subject("money")
    with pytest.raises(InvalidSchema):
        registry.register("pay2", pay, references=[SchemaReference("Money", "money", 9)])


def test_modes(registry: SchemaRegistry) -> None:
    registry.register("s", '"string"')
    registry.set_mode("READONLY", "s")
    with pytest.raises(OperationNotPermitted) as caught:
        registry.register("s", '"bytes"')
    assert caught.value.registry_code == 42205
    with pytest.raises(OperationNotPermitted):
        registry.delete_subject("s")
    assert registry.mode("s") == "READONLY" and registry.mode() == "READWRITE"
    registry.delete_mode("s")
    with pytest.raises(InvalidMode):
        registry.set_mode("WRITEONLY")
    with pytest.raises(OperationNotPermitted):
        registry.set_mode("IMPORT")  # subjects exist
    registry.set_mode("IMPORT", "imported")
    with pytest.raises(OperationNotPermitted):
        registry.register("s", '"int"', schema_id=50)  # s is not importing
    assert registry.register("imported", '"int"', schema_id=50, version=7) == 50
    assert registry.version("imported", 7).schema.schema_id == 50
    with pytest.raises(OperationNotPermitted):  # id 50 is bound to another schema
        registry.register("imported", '"long"', schema_id=50)
    # Incompatible is fine while importing; new ids continue past the greatest.
    registry.register("imported", record("X", ("a", "int")))
    registry.set_mode("READWRITE", "imported")
    assert registry.register("fresh", '"boolean"') == 52


def test_lookup(registry: SchemaRegistry) -> None:
    pay = record("Pay", ("cents", "long"))
    schema_id = registry.register("pay", pay)
    found = registry.lookup("pay", json.dumps(json.loads(pay), indent=2))
    assert (found.version, found.schema.schema_id) == (1, schema_id)
    with pytest.raises(SchemaNotFound):
        registry.lookup("pay", '"string"')
    with pytest.raises(SubjectNotFound):
        registry.lookup("nope", pay)


SCHEMAS = ['"string"', '"int"', '"long"', '"bytes"', record("A", ("x", "int")),
           record("B", ("y", "string")), '{"type": "object"}']  # fmt: skip
Op = tuple[str, int, int]
OPS = st.lists(
    st.tuples(
        st.sampled_from(["register", "delete", "purge"]),
        st.integers(0, 3),
        st.integers(0, len(SCHEMAS) - 1),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_ids_are_one_per_schema_dense_and_kept_across_a_restart(ops: list[Op]) -> None:
    tables = Tables()
    registry = tables.registry()
    registry.set_compatibility("NONE")
    ids: dict[int, int] = {}
    for action, subject_no, schema_no in ops:
        subject = f"s{subject_no}"
        text = SCHEMAS[schema_no]
        schema_type = "JSON" if text.startswith('{"type": "object') else "AVRO"
        try:
            if action == "register":
                got = registry.register(subject, text, schema_type)
                assert ids.setdefault(schema_no, got) == got, "one schema, one id, for ever"
            elif action == "delete":
                registry.delete_subject(subject)
            else:
                registry.delete_subject(subject, permanent=True)
        except (SubjectNotFound, SubjectSoftDeleted, SubjectNotSoftDeleted):
            pass
    assert sorted(ids.values()) == list(range(1, len(ids) + 1)), "dense from 1"
    for schema_no, schema_id in ids.items():
        found = registry.by_id(schema_id)
        if found is not None:
            assert json.loads(found.schema) == json.loads(SCHEMAS[schema_no])
    for reread in (tables.replayed(), tables.from_snapshot()):
        for subject in registry.subjects(deleted=True):
            assert reread.versions(subject, deleted=True) == registry.versions(subject, True)
            for v in registry.versions(subject, deleted=True):
                assert reread.version(subject, v, True) == registry.version(subject, v, True)
        assert reread.subjects(deleted=True) == registry.subjects(deleted=True)
        for schema_id in ids.values():
            assert reread.by_id(schema_id) == registry.by_id(schema_id)


def test_a_fresh_machine_on_the_same_bucket_keeps_every_schema_and_id(tmp_path: Path) -> None:
    objects = f"file://{tmp_path / 'bucket'}"
    config = engine.EngineConfig(store=QUIET_STORE)
    with engine.open(tmp_path / "first", objects, config) as e:
        pay = e.schemas.register("pay-value", record("Pay", ("cents", "long")))
        agent = e.schemas.register("agent-value", '{"type": "object"}', "JSON")
        e.schemas.set_compatibility("FULL", "pay-value")
        e.schemas.register("gone", '"string"')
        e.schemas.delete_subject("gone")
    with engine.open(tmp_path / "second", objects, config) as e:
        assert e.schemas.subjects() == ["agent-value", "pay-value"]
        assert e.schemas.subjects(deleted=True) == ["agent-value", "gone", "pay-value"]
        latest = e.schemas.latest("pay-value")
        assert latest is not None and latest.schema_id == pay
        by_id = e.schemas.by_id(agent)
        assert by_id is not None and by_id.schema_type == "JSON"
        assert e.schemas.compatibility("pay-value") == "FULL"
        assert e.schemas.register("new", '"int"') == 4  # after 1, 2, 3


def test_readers_on_other_threads_see_each_registration_in_order() -> None:
    """by_id and latest answer without the store's lock (the record checks
    ask on every produce): never a torn or a backward answer."""
    registry = Tables().registry()
    registry.set_compatibility("NONE")
    stop = threading.Event()
    seen: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def read(mine: list[int]) -> None:
        try:
            while not stop.is_set():
                latest = registry.latest("s")
                if latest is not None:
                    assert registry.by_id(latest.schema_id) == latest
                    mine.append(latest.schema_id)
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    readers = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    for reader in readers:
        reader.start()
    try:
        ids = [registry.register("s", json.dumps({"type": "fixed", "name": "F", "size": n}))
               for n in range(1, 60)]  # fmt: skip
    finally:
        stop.set()
        for reader in readers:
            reader.join(30)
    assert not errors, errors
    assert all(mine == sorted(mine) for mine in seen)  # never back to an older version
    latest = registry.latest("s")
    assert latest is not None and latest.schema_id == ids[-1]


def test_an_avro_schema_in_another_attribute_order_is_the_same_schema(
    registry: SchemaRegistry,
) -> None:
    written = '{"type": "record", "name": "Pay", "fields": [{"name": "c", "type": "long"}]}'
    shuffled = (
        '{"fields": [{"type": {"type": "long"}, "name": "c"}], "name": "Pay", "type": "record"}'
    )
    schema_id = registry.register("pay", written)
    assert registry.register("pay", shuffled) == schema_id
    assert registry.versions("pay") == [1]
    assert registry.register("s", '{"type": "string"}') == registry.register("t", '"string"')
    # Field order is the schema's: another order is another schema.
    two = '{"type": "record", "name": "P", "fields": [{"name": "a", "type": "int"}, '
    assert registry.register("u", two + '{"name": "b", "type": "int"}]}') != registry.register(
        "v",
        '{"type": "record", "name": "P", "fields": [{"name": "b", "type": "int"}, '
        '{"name": "a", "type": "int"}]}',
    )
