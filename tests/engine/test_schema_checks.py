"""The record check of schema validation on its own (engine/schemas/):
each mode's verdict on batches native/ encodes, the record errors naming the
record and the field, and property tests over JSON Schema and Avro."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native
from engine.config import SCHEMA_VALIDATION_MODES
from engine.errors import InvalidRecord
from engine.schemas.compiled import AvroCheck, CompiledSchemas, IdOnly, JsonSchemaCheck
from engine.schemas.record_check import (
    MAX_MESSAGE_CHARS,
    SchemaSource,
    Validation,
    record_check,
)
from engine.schemas.types import AVRO, JSON
from engine.schemas.wire_format import NotFramed, frame, unframe
from native import RecordSpec
from tests.engine.schema_fixtures import ORDER_AVRO, ORDER_JSON, InMemorySchemas

TOPIC = "orders"


def check(
    records: list[tuple[bytes | None, bytes | None]],
    lookup: InMemorySchemas,
    value: str = "full",
    key: str = "none",
    subject: str = "",
    compact: bool = False,
    compression: int = 0,
) -> tuple[tuple[int, str], ...]:
    """The record errors of one batch of (key, value) records; () if it passes."""
    batch = native.encode_batch([RecordSpec(0, k, v) for k, v in records], compression=compression)
    headers = native.validate_batches(batch)
    rules = record_check(TOPIC, (key, ""), (value, subject), compact)
    assert rules is not None
    try:
        rules.check(batch, headers, SchemaSource(lambda: lookup, CompiledSchemas()), 1 << 20)
    except InvalidRecord as error:
        assert error.record_errors
        return tuple(error.record_errors)
    return ()


def order(amount: object = 5, **extra: object) -> bytes:
    return json.dumps({"id": "o-1", "amount": amount, **extra}).encode()


def avro(schema: str, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(schema)), datum)
    return out.getvalue()


@pytest.fixture
def lookup() -> InMemorySchemas:
    return InMemorySchemas()


def test_the_config_modes_are_the_checks_modes() -> None:
    assert {mode.value for mode in Validation} == set(SCHEMA_VALIDATION_MODES)


def test_a_topic_checking_nothing_has_no_check() -> None:
    assert record_check(TOPIC, ("none", ""), ("none", "x"), compact=True) is None


def test_id_names_the_record_with_an_unknown_id_or_no_prefix(lookup: InMemorySchemas) -> None:
    known = lookup.register("orders-value", JSON, ORDER_JSON).schema_id
    errors = check(
        [(None, frame(known, b"{}")), (None, frame(999, b"{}")), (None, b'{"id": 1}')],
        lookup,
        value="id",
    )
    assert errors == (
        (1, "record 1: value names schema id 999, which is not registered"),
        (
            2,
            "record 2: value does not start with the schema registry's magic byte 0 "
            "and a 4-byte schema id",
        ),
    )


def test_full_json_names_the_failing_path_and_the_validators_words(
    lookup: InMemorySchemas,
) -> None:
    known = lookup.register("orders-value", JSON, ORDER_JSON).schema_id
    errors = check(
        [
            (None, frame(known, order())),
            (None, frame(known, order(amount=-5))),
            (None, frame(known, b"{not json")),
        ],
        lookup,
        compression=native.Compression.GZIP,
    )
    assert errors[0] == (1, "record 1: value $.amount: -5 is less than the minimum of 0")
    assert errors[1][0] == 2 and errors[1][1].startswith("record 2: value is not JSON: ")
    assert len(errors) == 2


def test_full_avro_refuses_what_does_not_decode_to_its_last_byte(
    lookup: InMemorySchemas,
) -> None:
    known = lookup.register("orders-value", AVRO, ORDER_AVRO).schema_id
    good = avro(ORDER_AVRO, {"id": "o-1", "amount": 3, "tags": ["a", "b"]})
    errors = check(
        [
            (None, frame(known, good)),
            (None, frame(known, good[:-2])),
            (None, frame(known, good + b"\x00")),
        ],
        lookup,
    )
    assert [index for index, _ in errors] == [1, 2]
    assert errors[0][1].startswith("record 1: value does not decode as Avro: ")
    assert errors[1][1] == "record 2: value does not decode as Avro: 1 bytes left after the record"


def test_raw_checks_unframed_json_against_the_subjects_latest(lookup: InMemorySchemas) -> None:
    lookup.register("orders-value", JSON, json.dumps({"type": "object"}))
    lookup.register("orders-value", JSON, ORDER_JSON)  # the latest version is the one used
    errors = check([(None, order()), (None, b'{"id": "o-2"}')], lookup, value="raw")
    assert errors == ((1, "record 1: value $: 'amount' is a required property"),)


def test_raw_names_a_subject_with_no_schema(lookup: InMemorySchemas) -> None:
    errors = check([(None, order())], lookup, value="raw", subject="payments")
    assert errors == (
        (0, "record 0: value cannot be checked: subject payments has no registered schema"),
    )


def test_keys_are_checked_as_values_are(lookup: InMemorySchemas) -> None:
    known = lookup.register("orders-key", JSON, json.dumps({"type": "string"})).schema_id
    errors = check(
        [(frame(known, b'"k"'), b"v"), (frame(known, b"7"), b"v"), (None, b"v")],
        lookup,
        key="full",
        value="none",
    )
    assert errors == (
        (1, "record 1: key $: 7 is not of type 'string'"),
        (2, "record 2: key is null, and the topic holds its keys to a schema"),
    )


def test_a_null_value_passes_only_as_a_compacted_topics_tombstone(
    lookup: InMemorySchemas,
) -> None:
    assert check([(b"k", None)], lookup, compact=True) == ()
    assert check([(b"k", None)], lookup) == (
        (0, "record 0: value is null, and the topic holds its values to a schema"),
    )


def test_no_registry_knows_no_id() -> None:
    batch = native.encode_batch([RecordSpec(0, None, frame(1, b"{}"))])
    rules = record_check(TOPIC, ("none", ""), ("id", ""), False)
    assert rules is not None
    with pytest.raises(InvalidRecord) as refused:
        rules.check(
            batch, native.validate_batches(batch), SchemaSource(lambda: None, CompiledSchemas()), 1
        )
    assert refused.value.record_errors == (
        (0, "record 0: value names schema id 1, which is not registered"),
    )


def test_what_cannot_be_checked_in_full_is_checked_by_id(lookup: InMemorySchemas) -> None:
    compiled = CompiledSchemas()
    empties = json.dumps(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "xs", "type": {"type": "array", "items": "null"}}],
        }
    )
    assert isinstance(compiled.get(lookup.register("e", AVRO, empties)), IdOnly)
    assert isinstance(compiled.get(lookup.register("a", AVRO, ORDER_AVRO)), AvroCheck)
    assert isinstance(compiled.get(lookup.register("j", JSON, ORDER_JSON)), JsonSchemaCheck)


def test_a_schema_that_does_not_compile_refuses_its_records(lookup: InMemorySchemas) -> None:
    broken = lookup.register("b", JSON, json.dumps({"type": 12})).schema_id
    errors = check([(None, frame(broken, b"{}"))], lookup)
    assert errors[0][1].startswith(
        f"record 0: value has schema id {broken}, which does not compile: SchemaError"
    )


def test_a_stored_schema_whose_pattern_re2_refuses_refuses_its_records(
    lookup: InMemorySchemas,
) -> None:
    """Registered before the registry refused such patterns: the producer
    learns the schema is at fault, naming the pattern."""
    stored = lookup.register("l", JSON, json.dumps({"pattern": "(?=a)a"})).schema_id
    errors = check([(None, frame(stored, b'"a"'))], lookup)
    assert errors[0][1].startswith(
        f"record 0: value has schema id {stored}, which does not compile: "
        "its pattern '(?=a)a' cannot be matched in linear time (RE2: "
    )


def test_a_pattern_only_a_ref_reaches_is_matched_by_re2_or_refused(
    lookup: InMemorySchemas,
) -> None:
    refused = lookup.register(
        "r", JSON, json.dumps({"$ref": "#/x/p", "x": {"p": {"pattern": "(?=a)a"}}})
    ).schema_id
    errors = check([(None, frame(refused, b'"a"'))], lookup)
    assert errors[0][1].startswith(
        "record 0: value could not be checked against its schema: pattern '(?=a)a'"
    )
    ending = lookup.register("e", JSON, json.dumps({"pattern": "^a$"})).schema_id
    assert check([(None, frame(ending, b'"a"'))], lookup) == ()
    # RE2's $ (ECMA-262's) is the end of the text; Python's also matched before a last newline.
    assert check([(None, frame(ending, b'"a\\n"'))], lookup) != ()


def test_compiled_schemas_are_kept_and_bounded(lookup: InMemorySchemas) -> None:
    compiled = CompiledSchemas(capacity=2)
    first, second, third = (
        lookup.register(f"s{i}", JSON, json.dumps({"maxLength": i})) for i in range(3)
    )
    assert compiled.get(first) is compiled.get(first)
    compiled.get(second)
    compiled.get(third)  # first is the least recently used: it goes
    assert list(compiled._compiled) == [second, third]


# -- properties -----------------------------------------------------------------------

ORDERS = st.fixed_dictionaries(
    {
        "id": st.text(max_size=20),
        "amount": st.integers(min_value=0)
        | st.floats(min_value=0, allow_nan=False, allow_infinity=False),  # JSON has no inf
    },
    optional={"note": st.text(max_size=20), "extra": st.integers()},
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ORDERS, min_size=1, max_size=8), st.data())
def test_valid_orders_pass_and_each_broken_one_is_named(
    orders: list[dict[str, Any]], data: st.DataObject
) -> None:
    lookup = InMemorySchemas()
    known = lookup.register("orders-value", JSON, ORDER_JSON).schema_id
    assert check([(None, frame(known, json.dumps(o).encode())) for o in orders], lookup) == ()
    broken = data.draw(st.sets(st.integers(0, len(orders) - 1), min_size=1))
    dropped = data.draw(st.sampled_from(["id", "amount"]))
    values = [
        {k: v for k, v in o.items() if not (i in broken and k == dropped)}
        for i, o in enumerate(orders)
    ]
    errors = check([(None, frame(known, json.dumps(v).encode())) for v in values], lookup)
    assert [index for index, _ in errors] == sorted(broken)
    for index, message in errors:
        assert message == f"record {index}: value $: '{dropped}' is a required property"


AVRO_ORDERS = st.fixed_dictionaries(
    {
        "id": st.text(max_size=20),
        "amount": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "tags": st.lists(st.text(max_size=5), max_size=5),
    }
)


@settings(max_examples=60, deadline=None)
@given(AVRO_ORDERS, st.data())
def test_avro_passes_what_fastavro_wrote_and_refuses_any_cut_of_it(
    datum: dict[str, Any], data: st.DataObject
) -> None:
    lookup = InMemorySchemas()
    known = lookup.register("orders-value", AVRO, ORDER_AVRO).schema_id
    body = avro(ORDER_AVRO, datum)
    assert check([(None, frame(known, body))], lookup) == ()
    cut = data.draw(st.integers(0, len(body) - 1))
    errors = check([(None, frame(known, body[:cut]))], lookup)
    assert len(errors) == 1 and "does not decode as Avro" in errors[0][1]


def test_json_nested_past_the_parsers_depth_is_refused_not_raised(
    lookup: InMemorySchemas,
) -> None:
    known = lookup.register("orders-value", JSON, ORDER_JSON).schema_id
    deep = b"[" * 100_000 + b"]" * 100_000
    errors = check([(None, frame(known, deep)), (None, frame(known, order()))], lookup)
    assert [index for index, _ in errors] == [0]
    assert errors[0][1].startswith("record 0: value is not JSON: ")


def test_raw_checks_unframed_avro_against_the_subjects_latest(lookup: InMemorySchemas) -> None:
    lookup.register("orders-value", AVRO, ORDER_AVRO)
    good = avro(ORDER_AVRO, {"id": "o-1", "amount": 3, "tags": []})
    errors = check([(None, good), (None, frame(1, good))], lookup, value="raw")
    assert [index for index, _ in errors] == [1]  # the prefix is not Avro of the schema
    assert "does not decode as Avro" in errors[0][1]


def test_a_message_quoting_a_large_value_is_cut(lookup: InMemorySchemas) -> None:
    known = lookup.register("s", JSON, json.dumps({"type": "string", "maxLength": 3})).schema_id
    huge = json.dumps("x" * 100_000).encode()
    errors = check([(None, frame(known, huge))] * 3, lookup)
    assert [index for index, _ in errors] == [0, 1, 2]
    for index, message in errors:
        assert len(message) == MAX_MESSAGE_CHARS
        assert message.startswith(f"record {index}: value $: 'xxx") and message.endswith("...")


@given(st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_the_wire_format_is_a_zero_byte_and_a_big_endian_id(schema_id: int, body: bytes) -> None:
    framed = frame(schema_id, body)
    assert framed == b"\x00" + schema_id.to_bytes(4, "big") + body  # docs/governance.md
    found, rest = unframe(framed)
    assert (found, bytes(rest)) == (schema_id, body)


@given(st.binary(max_size=4) | st.binary(min_size=5).filter(lambda b: b[0] != 0))
def test_a_payload_without_the_prefix_is_not_framed(payload: bytes) -> None:
    with pytest.raises(NotFramed):
        unframe(payload)


def test_a_json_schema_ref_is_never_fetched(lookup: InMemorySchemas) -> None:
    remote = json.dumps({"$ref": "http://127.0.0.1:9/order.json"})
    known = lookup.register("r", JSON, remote).schema_id
    errors = check([(None, frame(known, b"{}"))], lookup)
    assert errors == (
        (
            0,
            "record 0: value could not be checked against its schema: "
            "Unresolvable: http://127.0.0.1:9/order.json",
        ),
    )


LINKED_LIST = json.dumps(
    {
        "type": "record",
        "name": "Node",
        "namespace": "t",
        "fields": [
            {"name": "next", "type": ["null", {"type": "array", "items": "t.Node"}]},
        ],
    }
)


def test_a_recursive_avro_schema_is_checked_by_id_so_no_nesting_can_overflow(
    lookup: InMemorySchemas,
) -> None:
    """fastavro's reader recurses in C: a payload nesting a recursive type some
    ten thousand deep overflows its stack and kills the process."""
    recursive = lookup.register("l", AVRO, LINKED_LIST)
    assert isinstance(CompiledSchemas().get(recursive), IdOnly)
    deep = b"\x02\x02" * 1_000_000 + b"\x00"  # a list of one node, a million times
    assert check([(None, frame(recursive.schema_id, deep))], lookup) == ()
    shallow = lookup.register("s", AVRO, ORDER_AVRO)
    assert isinstance(CompiledSchemas().get(shallow), AvroCheck)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_refuses_the_constants_python_reads_but_json_has_not(
    lookup: InMemorySchemas, constant: str
) -> None:
    """NaN and the infinities are not JSON (RFC 8259), though Python's json
    module reads them: read as numbers, NaN passed every bound ("amount"
    has a minimum of 0), and the consumers' JSON parsers (Jackson under
    Confluent's deserializer, JSON.parse, encoding/json) refuse the record
    the broker had let in."""
    known = lookup.register("orders-value", JSON, ORDER_JSON).schema_id
    text = b'{"id": "o-1", "amount": %s}' % constant.encode()
    errors = check([(None, frame(known, text)), (None, text)], lookup)
    assert errors[0][0] == 0 and errors[0][1].startswith("record 0: value is not JSON: ")
    raw = check([(None, text)], lookup, value="raw")
    assert raw[0][1].startswith("record 0: value is not JSON: ")
    assert constant in raw[0][1]
