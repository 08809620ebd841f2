"""Schema validation on the broker as real clients see it, over real sockets
to the wire server of an engine of this process (whose ``schemas`` the
tests register with): kafka-python gets the refused record's error naming
the field, librdkafka the batch's INVALID_RECORD for an unknown schema id and
a delivery for a known one, a topic validating nothing passes any bytes, and
the raw Produce answer carries KIP-467's record errors."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError
from kafka.errors import KafkaError as PyKafkaError

import engine
import native
from engine.schemas.record_check import RecordCheck
from engine.schemas.types import RegisteredSchema, SchemaReference
from engine.schemas.wire_format import frame
from native import RecordSpec
from tests.engine.schema_fixtures import JSON, ORDER_AVRO, ORDER_JSON, register
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_bombs import NONE, alter_topic, answer, create_topic, new_topic, produce
from tests.server.wire import Wire

TIMEOUT = 30.0
INVALID_CONFIG = 40
INVALID_RECORD = 87
VALUE_VALIDATION = "tidelog.value.schema.validation"


class Served:
    def __init__(self, opened: engine.Engine, server: InProcessServer) -> None:
        self.engine = opened
        self.server = server
        self.schema_id = register(opened, "orders-value", JSON, ORDER_JSON)

    def topic(self, validation: str) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        self.engine.create_topic(name, 1, {VALUE_VALIDATION: validation})
        return name


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with engine.open(tmp_path / "node", config=engine.EngineConfig()) as opened:
        server = InProcessServer(opened)
        try:
            yield Served(opened, server)
        finally:
            server.stop()


def order(amount: int) -> bytes:
    return json.dumps({"id": "o-1", "amount": amount}).encode()


def test_kafka_python_is_told_which_record_and_field_failed(served: Served) -> None:
    topic = served.topic("full")
    producer = KafkaProducer(
        bootstrap_servers=served.server.bootstrap, linger_ms=200, retries=0, acks="all"
    )
    try:
        values = [order(1), order(-5), order(2)]
        futures = [producer.send(topic, frame(served.schema_id, v), partition=0) for v in values]
        producer.flush(TIMEOUT)
    finally:
        producer.close(10)
    refused = futures[1].exception
    assert isinstance(refused, InvalidRecordError), refused
    assert "record 1: value $.amount: -5 is less than the minimum of 0" in str(refused)
    for index in (0, 2):  # refused with their batch, not named
        error = futures[index].exception
        assert isinstance(error, PyKafkaError) and not isinstance(error, InvalidRecordError)
    assert served.engine.describe_topic(topic).partitions[0].high_watermark == 0


def confluent_deliveries(served: Served, topic: str, values: list[bytes]) -> list[Any]:
    """Each value produced and flushed on its own: its delivery error or None."""
    producer = Producer(
        {
            "bootstrap.servers": served.server.bootstrap,
            "message.timeout.ms": 10000,
            **quiet_librdkafka(),
        }
    )
    outcomes: list[KafkaError | None] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        outcomes.append(error)

    for value in values:
        producer.produce(topic, value, partition=0, on_delivery=delivered)
        assert producer.flush(TIMEOUT) == 0
    return outcomes


def test_confluent_framed_json_needs_a_registered_id(served: Served) -> None:
    topic = served.topic("id")
    unknown, known = confluent_deliveries(
        served, topic, [frame(served.schema_id + 100, order(1)), frame(served.schema_id, order(1))]
    )
    assert unknown is not None and unknown.code() == KafkaError.INVALID_RECORD, unknown
    assert not unknown.retriable()
    assert known is None
    fetched = served.engine.fetch(topic, 0, 0, 1 << 20)
    [record] = native.decode_records(b"".join(bytes(b) for b in fetched.records))
    assert record.value == frame(served.schema_id, order(1))


def test_a_topic_validating_nothing_takes_any_bytes(served: Served) -> None:
    topic = served.topic("none")
    assert confluent_deliveries(served, topic, [b"\xff not json", frame(12345, b"?")]) == [
        None,
        None,
    ]


def test_bad_values_are_invalid_config_and_the_produce_answer_names_records(served: Served) -> None:
    with Wire(served.server.bootstrap) as wire:
        refused_config = wire.request(
            create_topic(f"t-{uuid.uuid4().hex[:12]}", tidelog_value_schema_validation="strict")
        ).topics[0]
        assert refused_config.error_code == INVALID_CONFIG
        topic = new_topic(wire, tidelog_value_schema_validation="raw")
        refused_alter = wire.request(alter_topic(topic, tidelog_key_schema_validation="on"))
        assert refused_alter.responses[0].error_code == INVALID_CONFIG
        register(served.engine, f"{topic}-value", JSON, ORDER_JSON)
        batch = native.encode_batch(
            [RecordSpec(0, None, order(1)), RecordSpec(0, None, b'{"amount": 1}')]
        )
        refused = answer(wire, produce(topic, batch))
        assert refused.error_code == INVALID_RECORD
        assert [(e.batch_index, e.batch_index_error_message) for e in refused.record_errors] == [
            (1, "record 1: value $: 'id' is a required property")
        ]
        assert "record 1: value $: 'id' is a required property" in refused.error_message
        good = native.encode_batch([RecordSpec(0, None, order(1))])
        accepted = answer(wire, produce(topic, good))
        assert (accepted.error_code, accepted.base_offset) == (NONE, 0)


class ConfluentsRegistry:
    """A SchemaLookup over the registry client Confluent's serializers
    registered with (its in-memory ``mock://`` client)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError:
            return None
        return RegisteredSchema(schema_id, schema.schema_type, schema.schema_str)

    def latest(self, subject: str) -> RegisteredSchema | None:
        try:
            found = self.client.get_latest_version(subject)
        except SchemaRegistryError:
            return None
        return RegisteredSchema(found.schema_id, found.schema.schema_type, found.schema.schema_str)

    def referenced(self, reference: SchemaReference) -> RegisteredSchema | None:
        return None  # the serializers here register no references


def test_confluents_serializers_pass_a_full_topic_and_a_mixed_up_one_is_refused(
    served: Served,
) -> None:
    """What Confluent's JSONSerializer and AvroSerializer send passes a
    ``full`` topic; JSON sent under the Avro schema's id does not."""
    client = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4().hex}"})
    served.engine.schemas = ConfluentsRegistry(client)
    topic = served.topic("full")
    context = SerializationContext(topic, MessageField.VALUE)
    as_json = JSONSerializer(ORDER_JSON, client)({"id": "o-1", "amount": 3}, context)
    as_avro = AvroSerializer(client, ORDER_AVRO)({"id": "o-1", "amount": 3, "tags": []}, context)
    assert as_json is not None and as_avro is not None
    avro_id = int.from_bytes(as_avro[1:5], "big")
    mixed_up = frame(avro_id, as_json[5:])
    outcomes = confluent_deliveries(served, topic, [as_json, as_avro, mixed_up])
    assert outcomes[:2] == [None, None]
    assert outcomes[2] is not None and outcomes[2].code() == KafkaError.INVALID_RECORD
    with Wire(served.server.bootstrap) as wire:
        refused = answer(wire, produce(topic, native.encode_batch([RecordSpec(0, None, mixed_up)])))
    [error] = refused.record_errors
    assert error.batch_index_error_message.startswith("record 0: value does not decode as Avro")


def test_a_checked_topics_batches_are_checked_off_the_event_loop_in_order(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs on the server's record-check thread, so a slow one
    never stalls other connections; an idempotent producer's pipelined
    batches still land in order."""
    threads: set[str] = set()
    check = RecordCheck.check

    def recording(self: RecordCheck, *args: Any) -> None:
        threads.add(threading.current_thread().name)
        check(self, *args)

    monkeypatch.setattr(RecordCheck, "check", recording)
    topic = served.topic("id")
    producer = Producer(
        {
            "bootstrap.servers": served.server.bootstrap,
            "enable.idempotence": True,
            "max.in.flight.requests.per.connection": 5,
            "batch.num.messages": 20,
            "linger.ms": 0,
            **quiet_librdkafka(),
        }
    )
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)

    count = 2000
    for i in range(count):
        producer.produce(
            topic, frame(served.schema_id, b"%d" % i), partition=0, on_delivery=delivered
        )
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    assert failures == []
    assert threads and all(name.startswith("tidelog-record-checks") for name in threads)
    fetched = served.engine.fetch(topic, 0, 0, 1 << 24)
    records = native.decode_records(b"".join(bytes(b) for b in fetched.records))
    assert [r.value for r in records] == [frame(served.schema_id, b"%d" % i) for i in range(count)]
