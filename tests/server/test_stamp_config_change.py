"""A topic switched to or from ``tidelog.provenance = stamp`` over a real
socket (IncrementalAlterConfigs, AlterConfigs) or by the embedded API
(Engine.alter_configs) stamps from the next produce request on, without a
reopen: a Kafka client's records over the wire, and
an embedded producer that already wrote to the partition before the change,
whose batches are sized for the stamp from then on (stamped, they still fit
max.message.bytes) and no longer once it is off."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

import engine
from engine.provenance import PRINCIPAL
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

TIMEOUT = 30.0
TOPIC = "audit"
MAX_MESSAGE_BYTES = 64 * 1024
BATCH_SIZE = 48 * 1024
"""The embedded producer's: small records in full batches, so that the stamp
(more than doubling each record) takes a batch sized without it past
max.message.bytes, and one sized with it stays under half the batch size."""
RECORDS = 6000
LAST_OFFSET_DELTA = struct.Struct(">i")
"""At byte 23 of a record batch's header (Kafka's DefaultRecordBatch)."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(opened)
        try:
            yield opened, server
        finally:
            server.stop()


def change_stamp(served: tuple[engine.Engine, InProcessServer], value: str, api: str) -> None:
    """``tidelog.provenance`` set to ``value`` by ``api``: over the socket,
    or in process by the embedded API."""
    opened, server = served
    if api == "Engine.alter_configs":
        opened.alter_configs(TOPIC, {"tidelog.provenance": value})
        return
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    if api == "IncrementalAlterConfigs":
        entry = ConfigEntry(
            "tidelog.provenance", value, incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource("topic", TOPIC, incremental_configs=[entry])
        futures = admin.incremental_alter_configs([resource])
    else:  # AlterConfigs replaces every override: max.message.bytes is given again
        configs = {"tidelog.provenance": value, "max.message.bytes": str(MAX_MESSAGE_BYTES)}
        futures = admin.alter_configs([ConfigResource("topic", TOPIC, set_config=configs)])
    for future in futures.values():
        future.result(TIMEOUT)


def produce_over_the_wire(bootstrap: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, **quiet_librdkafka()})
    errors: list[Any] = []
    producer.produce(TOPIC, value, partition=0, on_delivery=lambda e, _m: errors.append(e))
    assert producer.flush(TIMEOUT) == 0
    assert errors == [None]


def send_many_embedded(producer: engine.Producer, prefix: bytes) -> list[bytes]:
    """``RECORDS`` small records sent one by one, each durable; their values."""
    values = [prefix + b"%06d" % i for i in range(RECORDS)]
    futures = [producer.send(TOPIC, value, partition=0) for value in values]
    producer.flush(TIMEOUT)
    for future in futures:
        future.result(TIMEOUT)  # a batch stamped past max.message.bytes fails here
    return values


def stamps_read_back(bootstrap: str, count: int) -> dict[bytes, str | None]:
    """Each record's value and the principal its stamp names (None: no stamp)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "stamp-reader",
            "enable.auto.commit": False,
            **quiet_librdkafka(),
        }
    )
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    stamps: dict[bytes, str | None] = {}
    try:
        for _ in range(int(TIMEOUT / 0.2)):
            for message in consumer.consume(1000, 0.2):
                assert message.error() is None, message.error()
                headers = dict(message.headers() or [])
                principal = headers.get(PRINCIPAL)
                stamps[message.value()] = None if principal is None else principal.decode()
            if len(stamps) >= count:
                return stamps
    finally:
        consumer.close()
    raise AssertionError(f"read {len(stamps)} of {count} records")


def batch_sizes(opened: engine.Engine, start: int) -> list[int]:
    """The size of each stored batch from the one holding ``start`` on."""
    fetched = opened.fetch(TOPIC, 0, start, 64 * 1024 * 1024)
    return [len(batch) for batch in fetched.records]


def records_per_batch(opened: engine.Engine, start: int) -> list[int]:
    """The record count of each stored batch from the one holding ``start``
    on: its header's lastOffsetDelta, plus one."""
    fetched = opened.fetch(TOPIC, 0, start, 64 * 1024 * 1024)
    return [LAST_OFFSET_DELTA.unpack_from(batch, 23)[0] + 1 for batch in fetched.records]


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
@pytest.mark.parametrize("api", ["IncrementalAlterConfigs", "AlterConfigs", "Engine.alter_configs"])
def test_a_topic_switched_to_stamp_stamps_the_next_request_of_every_producer(
    served: tuple[engine.Engine, InProcessServer], api: str
) -> None:
    opened, server = served
    opened.create_topic(TOPIC, 1, {"max.message.bytes": str(MAX_MESSAGE_BYTES)})
    with opened.producer(principal="User:alice", batch_size=BATCH_SIZE) as producer:
        producer.send(TOPIC, b"embedded before", partition=0).result(TIMEOUT)
        produce_over_the_wire(server.bootstrap, b"wire before")
        change_stamp(served, "stamp", api)
        after = opened.offsets(TOPIC, 0)[1]

        produce_over_the_wire(server.bootstrap, b"wire after")
        values = send_many_embedded(producer, b"after-")

    assert max(batch_sizes(opened, after)) <= MAX_MESSAGE_BYTES
    stamps = stamps_read_back(server.bootstrap, 3 + RECORDS)
    assert (stamps[b"embedded before"], stamps[b"wire before"]) == (None, None)
    assert stamps[b"wire after"] == "User:ANONYMOUS"
    assert {stamps[value] for value in values} == {"User:alice"}


def test_a_topic_switched_from_stamp_is_sent_in_batches_sized_without_it(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = served
    stamp = {"tidelog.provenance": "stamp", "max.message.bytes": str(MAX_MESSAGE_BYTES)}
    opened.create_topic(TOPIC, 1, stamp)
    with opened.producer(principal="User:alice", batch_size=BATCH_SIZE) as producer:
        stamped = send_many_embedded(producer, b"stamped-")
        stamped_counts = records_per_batch(opened, 0)
        change_stamp(served, "none", "IncrementalAlterConfigs")
        after = opened.offsets(TOPIC, 0)[1]
        plain = send_many_embedded(producer, b"plain-")

    # The stamp more than doubles each record: sized without it, a batch
    # holds more than twice the records.
    assert max(records_per_batch(opened, after)) > 2 * max(stamped_counts)
    stamps = stamps_read_back(server.bootstrap, 2 * RECORDS)
    assert {stamps[value] for value in stamped} == {"User:alice"}
    assert {stamps[value] for value in plain} == {None}
