"""The broker's checks of Protobuf payloads (engine/schemas/proto_check.py):
Confluent's message indexes read as its serializers write them, the
message parsed by protobuf's own parser, each refusal naming the record
and the reason, references resolved through the lookup, raw payloads read
as the file's first message, and any bytes answered with a reason rather
than an exception."""

from __future__ import annotations

import io

import pytest
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from google.protobuf import message_factory
from hypothesis import given
from hypothesis import strategies as st

import native
from engine.errors import InvalidRecord
from engine.schemas.compiled import CompiledSchemas, Unusable
from engine.schemas.proto_check import ProtobufCheck, read_message_indexes
from engine.schemas.proto_files import MAIN_NAME, parse
from engine.schemas.types import PROTOBUF
from engine.schemas.wire_format import frame
from native import RecordSpec
from tests.engine.conftest import EngineFactory
from tests.engine.schema_fixtures import InMemorySchemas
from tests.engine.test_schema_checks import check

SHOP = (
    'syntax = "proto3";\npackage shop;\n'
    "message Order { string id = 1; int64 cents = 2; message Line { int32 n = 1; } }\n"
    "message Refund { string order_id = 1; }\n"
)
STRICT = 'syntax = "proto2";\nmessage Strict { required int32 n = 1; }\n'


def message_class(text: str, *path: int) -> type:
    descriptor = parse(text, MAIN_NAME, []).message(path)
    found: type = message_factory.GetMessageClass(descriptor)
    return found


@pytest.fixture
def lookup() -> InMemorySchemas:
    return InMemorySchemas()


def test_indexes_read_as_confluents_serializers_write_them() -> None:
    assert read_message_indexes(b"\x00rest") == ((0,), 1)
    assert read_message_indexes(b"\x02\x02") == ((1,), 2)  # count 1, index 1 (zigzag)
    assert read_message_indexes(b"\x04\x00\x02") == ((0, 1), 3)
    assert read_message_indexes(b"\x02\xac\x02") == ((150,), 3)


@given(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=8), st.binary(max_size=8))
def test_indexes_read_back_what_confluents_serializer_writes(
    indexes: list[int], rest: bytes
) -> None:
    out = io.BytesIO()
    ProtobufSerializer._encode_varints(out, indexes)
    assert read_message_indexes(out.getvalue() + rest) == (tuple(indexes), len(out.getvalue()))


def test_the_embedded_producer_gets_a_typed_refusal(engine_factory: EngineFactory) -> None:
    opened = engine_factory()
    schema_id = opened.schemas.register("orders-value", SHOP, PROTOBUF)
    opened.create_topic("orders", 1, {"tidelog.value.schema.validation": "full"})
    order = message_class(SHOP, 0)(id="o-1", cents=5).SerializeToString()
    good, bad = frame(schema_id, b"\x00" + order), frame(schema_id, b"\x00\xff")
    batch = native.encode_batch([RecordSpec(0, None, good), RecordSpec(0, None, bad)])
    with pytest.raises(InvalidRecord) as refused:
        opened.produce("orders", 0, batch)
    [(index, reason)] = refused.value.record_errors
    assert index == 1 and "does not parse as Protobuf message shop.Order" in reason
    assert opened.describe_topic("orders").partitions[0].high_watermark == 0
    result = opened.produce("orders", 0, native.encode_batch([RecordSpec(0, None, good)]))
    assert (result.base_offset, result.last_offset) == (0, 0)


def test_a_full_topic_takes_each_message_its_indexes_name(lookup: InMemorySchemas) -> None:
    schema = lookup.register("orders-value", PROTOBUF, SHOP)
    order = message_class(SHOP, 0)(id="o-1", cents=5).SerializeToString()
    line = message_class(SHOP, 0, 0)(n=3).SerializeToString()
    refund = message_class(SHOP, 1)(order_id="o-1").SerializeToString()
    unknown_field = order + b"\xa0\x06\x01"  # field 100, a varint: kept, as protobuf keeps it
    records = [
        frame(schema.schema_id, b"\x00" + order),
        frame(schema.schema_id, b"\x02\x00" + order),  # [0] written out
        frame(schema.schema_id, b"\x04\x00\x00" + line),
        frame(schema.schema_id, b"\x02\x02" + refund),
        frame(schema.schema_id, b"\x00" + unknown_field),
        frame(schema.schema_id, b"\x00"),  # an empty message is all defaults
    ]
    assert check([(None, r) for r in records], lookup) == ()


def test_what_breaks_the_format_is_refused_with_its_reason(lookup: InMemorySchemas) -> None:
    schema = lookup.register("orders-value", PROTOBUF, SHOP)
    strict = lookup.register("strict-value", PROTOBUF, STRICT)
    sid = schema.schema_id
    refused = check(
        [
            (None, frame(sid, b"\x02\x04")),  # [2]: the file has 2 messages
            (None, frame(sid, b"\x04\x00\x02")),  # [0, 1]: Order has one nested message
            (None, frame(sid, b"\x00\xff\xff\xff")),  # not a message
            (None, frame(sid, b"\x80")),  # the count's varint never ends
            (None, frame(sid, b"\x01")),  # a count of -1
            (None, frame(sid, b"\xc8\x01")),  # a count of 100... of indexes never sent
            (None, frame(sid, b"\x00\x0a\x05ab")),  # a string field cut short
            (None, frame(strict.schema_id, b"\x00")),  # a required field missing
            (None, frame(999, b"\x00")),
        ],
        lookup,
    )
    reasons = dict(refused)
    assert reasons[0] == (
        f"record 0: value names no message of schema id {sid}: message indexes [2] name "
        "no message: level 0 has 2 messages"
    )
    assert "level 1 has 1 messages" in reasons[1]
    assert reasons[2].startswith("record 2: value does not parse as Protobuf message shop.Order")
    assert "ends inside its message indexes" in reasons[3]
    assert "claims -1 message indexes" in reasons[4]
    assert "ends inside its message indexes" in reasons[5]
    assert reasons[6].startswith("record 6: value does not parse as Protobuf message shop.Order")
    assert reasons[7].startswith("record 7: value does not parse as Protobuf message Strict")
    assert reasons[8] == "record 8: value names schema id 999, which is not registered"


def test_raw_payloads_are_the_first_message(lookup: InMemorySchemas) -> None:
    lookup.register("orders-value", PROTOBUF, SHOP)
    order = message_class(SHOP, 0)(id="o-1", cents=5).SerializeToString()
    refused = check([(None, order), (None, b"\xff\xff")], lookup, value="raw")
    assert [index for index, _ in refused] == [1]
    assert "shop.Order" in refused[0][1]


def test_references_are_resolved_through_the_lookup(lookup: InMemorySchemas) -> None:
    from engine.schemas.types import RegisteredSchema, SchemaReference

    money = 'syntax = "proto3";\npackage m;\nmessage Money { int64 units = 1; }\n'
    lookup.register("money", PROTOBUF, money)
    pay = 'syntax = "proto3";\nimport "m/money.proto";\nmessage Pay { m.Money amount = 1; }\n'
    registered = RegisteredSchema(
        50, PROTOBUF, pay, (SchemaReference("m/money.proto", "money", 1),)
    )
    lookup.schemas[50] = registered
    amount = message_class(money, 0)(units=7).SerializeToString()
    good = b"\x0a" + bytes([len(amount)]) + amount
    refused = check([(None, frame(50, b"\x00" + good)), (None, frame(50, b"\x00\x0a\x09"))], lookup)
    assert [index for index, _ in refused] == [1]


def test_a_schema_that_does_not_compile_refuses_its_records(lookup: InMemorySchemas) -> None:
    broken = lookup.register("b", PROTOBUF, 'syntax = "proto3";\nmessage A { strin x = 1; }\n')
    compiled = CompiledSchemas()
    assert isinstance(compiled.get(broken), Unusable)
    [(_, reason)] = check([(None, frame(broken.schema_id, b"\x00"))], lookup)
    assert reason.startswith(f"record 0: value has schema id {broken.schema_id}, which does not")
    assert '"strin" is not defined' in reason


def test_a_compiled_schema_is_kept(lookup: InMemorySchemas) -> None:
    schema = lookup.register("orders-value", PROTOBUF, SHOP)
    compiled = CompiledSchemas()
    first = compiled.get(schema, lookup.referenced)
    assert isinstance(first, ProtobufCheck)
    assert compiled.get(schema, lookup.referenced) is first


@given(st.binary(max_size=64))
def test_any_bytes_get_an_answer_not_an_exception(body: bytes) -> None:
    checker = ProtobufCheck(parse(SHOP, MAIN_NAME, []), 1)
    for problem in (checker.problem(body), checker.unframed_problem(body)):
        assert problem is None or isinstance(problem, str)


@given(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.lists(st.integers(0, 2**31 - 1)))
def test_what_protobuf_writes_passes(text: str, cents: int, lines: list[int]) -> None:
    checker = ProtobufCheck(parse(SHOP, MAIN_NAME, []), 1)
    order = message_class(SHOP, 0)(id=text, cents=cents).SerializeToString()
    assert checker.problem(b"\x00" + order) is None
    for n in lines[:3]:
        line = message_class(SHOP, 0, 0)(n=n).SerializeToString()
        assert checker.problem(b"\x04\x00\x00" + line) is None
