"""Schema validation on the broker through the embedded API: the topic
configs, the produce path's refusal of a whole batch with its records named,
a `none` topic that never decodes records, and the embedded producer's
typed exception."""

from __future__ import annotations

import json

import pytest

import native
from engine.config import ConfigSource
from engine.errors import InvalidConfig, InvalidRecord
from engine.schemas.wire_format import frame
from native import RecordSpec
from tests.engine.conftest import EngineFactory
from tests.engine.schema_fixtures import JSON, ORDER_JSON, register

VALUE_VALIDATION = "tidelog.value.schema.validation"


def batch(*values: bytes | None, key: bytes | None = None, **options: object) -> bytes:
    return native.encode_batch([RecordSpec(0, key, v) for v in values], **options)  # type: ignore[arg-type]


def order(amount: int) -> bytes:
    return json.dumps({"id": "o", "amount": amount}).encode()


def test_a_full_topic_refuses_the_whole_batch_naming_the_record(
    engine_factory: EngineFactory,
) -> None:
    opened = engine_factory()
    schema_id = register(opened, "orders-value", JSON, ORDER_JSON)
    opened.create_topic("orders", 1, {VALUE_VALIDATION: "full"})
    with pytest.raises(InvalidRecord) as refused:
        opened.produce("orders", 0, batch(frame(schema_id, order(1)), frame(schema_id, order(-5))))
    assert refused.value.record_errors == (
        (1, "record 1: value $.amount: -5 is less than the minimum of 0"),
    )
    assert "record 1: value $.amount" in str(refused.value)
    assert opened.describe_topic("orders").partitions[0].high_watermark == 0
    result = opened.produce("orders", 0, batch(frame(schema_id, order(1))))
    assert (result.base_offset, result.last_offset) == (0, 0)


def test_a_none_topic_never_decodes_records(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = engine_factory()
    opened.create_topic("plain", 1)
    assert opened.partition("plain", 0).record_check is None

    def decode_records(*args: object, **kwargs: object) -> None:
        raise AssertionError("a none topic decoded records")

    monkeypatch.setattr(native, "decode_records", decode_records)
    assert opened.produce("plain", 0, batch(b"\xff not framed", None)).last_offset == 1


def test_the_configs_are_checked_described_and_take_effect_at_once(
    engine_factory: EngineFactory,
) -> None:
    opened = engine_factory()
    with pytest.raises(InvalidConfig):
        opened.create_topic("t", 1, {VALUE_VALIDATION: "strict"})
    opened.create_topic("t", 1, {"tidelog.key.schema.subject": "keys"})
    with pytest.raises(InvalidConfig):
        opened.alter_configs("t", {"tidelog.key.schema.validation": "yes"})
    configs = {c.name: c for c in opened.describe_topic("t").configs}
    assert (configs[VALUE_VALIDATION].value, configs[VALUE_VALIDATION].source) == (
        "none",
        ConfigSource.DEFAULT,
    )
    assert configs["tidelog.key.schema.subject"].value == "keys"
    opened.produce("t", 0, batch(b"anything"))
    opened.alter_configs("t", {VALUE_VALIDATION: "id"})
    assert opened.describe_topic("t").configs  # altered, then:
    with pytest.raises(InvalidRecord) as refused:
        opened.produce("t", 0, batch(b"anything"))
    assert "magic byte" in refused.value.record_errors[0][1]
    opened.alter_configs("t", {VALUE_VALIDATION: None})
    assert opened.produce("t", 0, batch(b"anything")).base_offset == 1


def test_an_idempotent_batch_is_refused_before_its_sequence_counts(
    engine_factory: EngineFactory,
) -> None:
    opened = engine_factory()
    schema_id = register(opened, "orders-value", JSON, ORDER_JSON)
    opened.create_topic("orders", 1, {VALUE_VALIDATION: "full"})
    producer = {"producer_id": 7, "producer_epoch": 0, "base_sequence": 0}
    with pytest.raises(InvalidRecord) as refused:
        opened.produce("orders", 0, batch(frame(schema_id, order(-1)), **producer))
    assert refused.value.record_errors[0][0] == 0
    good = opened.produce("orders", 0, batch(frame(schema_id, order(1)), **producer))
    assert (good.base_offset, good.duplicate) == (0, False)


def test_a_transactional_batch_is_refused_the_same_way(engine_factory: EngineFactory) -> None:
    opened = engine_factory()
    opened.create_topic("orders", 1, {VALUE_VALIDATION: "id"})
    transactional = {
        "producer_id": 9,
        "producer_epoch": 0,
        "base_sequence": 0,
        "is_transactional": True,
    }
    with pytest.raises(InvalidRecord) as refused:
        opened.produce("orders", 0, batch(frame(42, b"{}"), **transactional))
    assert refused.value.record_errors == (
        (0, "record 0: value names schema id 42, which is not registered"),
    )


def test_the_embedded_producer_gets_the_typed_exception(engine_factory: EngineFactory) -> None:
    opened = engine_factory()
    register(opened, "orders-value", JSON, ORDER_JSON)
    opened.create_topic("orders", 1, {VALUE_VALIDATION: "raw"})
    with opened.producer() as producer:
        good = producer.send("orders", order(3), partition=0)
        assert good.result(30).offset == 0
        bad = producer.send("orders", b'{"id": "o"}', partition=0)
        with pytest.raises(InvalidRecord) as refused:
            bad.result(30)
    assert "'amount' is a required property" in str(refused.value)


def test_a_topic_default_holds_every_topic_without_an_override(
    engine_factory: EngineFactory,
) -> None:
    opened = engine_factory(topic_defaults={VALUE_VALIDATION: "id"})
    opened.create_topic("free", 1, {VALUE_VALIDATION: "none"})
    assert opened.produce("free", 0, batch(b"plain")).base_offset == 0
    opened.create_topic("held", 1)
    with pytest.raises(InvalidRecord):
        opened.produce("held", 0, batch(b"plain"))
    configs = {c.name: c for c in opened.describe_topic("held").configs}
    assert configs[VALUE_VALIDATION].value == "id"
