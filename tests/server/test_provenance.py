"""Provenance stamps over real sockets: ``tidelog serve`` with a PLAINTEXT
and a SASL_PLAINTEXT listener, records written by confluent-kafka
(SCRAM-SHA-512) and kafka-python (PLAIN) to a ``tidelog.provenance =
stamp`` topic, read back with kcat's ``%h``: each carries its writer's
authenticated principal, client id, listener, address and receive time, a
forged ``tidelog.principal`` header is replaced and the agent memory's
``tidelog.correlation.id`` is kept. Idempotent and
transactional producers keep exactly-once on a stamp topic, and a batch the
stamp takes past max.message.bytes is answered MESSAGE_TOO_LARGE."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from engine.provenance import RESERVED_NAMES
from tests.server.configured_servers import with_config
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess, quiet_librdkafka
from tests.server.test_kcat import kcat
from tests.server.test_sasl import (
    PASSWORD,
    TIMEOUT,
    add_user,
    confluent,
    sasl_bootstrap,
    sasl_server,
)

pytestmark = pytest.mark.slow

STAMP = {"tidelog.provenance": "stamp"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("provenance")
    # consume_values's consumer is its group's one member: the first
    # rebalance need not wait Kafka's 3 s for more.
    process = with_config(sasl_server(root), GROUP_SERVER_CONFIG)
    add_user(process.data_dir, "alice", PASSWORD, "SCRAM-SHA-512")
    add_user(process.data_dir, "bob", PASSWORD, "PLAIN")
    process.start()
    yield process
    process.end_at_teardown(graceful=True)


def create_stamp_topic(server: ServerProcess, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    admin.create_topics([NewTopic(name, 1, config=STAMP)])[name].result(TIMEOUT)


def headers_read_by_kcat(server: ServerProcess, topic: str) -> list[list[tuple[str, str]]]:
    """Each record's headers as kcat prints them (``%h``: name=value, comma separated)."""
    output = kcat(server.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%h\n")
    return [
        [tuple(item.split("=", 1)) for item in line.split(",")]  # type: ignore[misc]
        for line in output.splitlines()
    ]


def stamp_of(headers: list[tuple[str, str]]) -> dict[str, str]:
    stamp = {name: value for name, value in headers if name in RESERVED_NAMES}
    assert len(stamp) == len([name for name, _ in headers if name in RESERVED_NAMES])
    return stamp


def test_kcat_reads_each_writers_stamp_and_forgeries_are_replaced(server: ServerProcess) -> None:
    from kafka import KafkaProducer

    create_stamp_topic(server, "audit")
    before = int(time.time() * 1000)
    alice = Producer(
        {**confluent(server, "SCRAM-SHA-512", "alice", PASSWORD), "client.id": "agent-7"}
    )
    alice.produce(
        "audit",
        b"from alice",
        partition=0,
        headers=[
            ("trace", b"t1"),
            ("tidelog.principal", b"User:admin"),
            ("tidelog.correlation.id", b"refund-7"),
        ],
    )
    assert alice.flush(TIMEOUT) == 0
    bob = KafkaProducer(
        bootstrap_servers=sasl_bootstrap(server),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="bob",
        sasl_plain_password=PASSWORD,
        client_id="planner",
    )
    bob.send("audit", b"from bob", partition=0, headers=[("tidelog.listener", b"INTERNAL")]).get(
        TIMEOUT
    )
    bob.close()
    kcat(server.bootstrap, "-P", "-t", "audit", "-p", "0", stdin="anonymous\n")
    after = int(time.time() * 1000)

    first, second, third = headers_read_by_kcat(server, "audit")
    # The client's own headers stay, first, but for its copy of a stamp header.
    assert first[:2] == [("trace", "t1"), ("tidelog.correlation.id", "refund-7")]
    stamps = [stamp_of(first), stamp_of(second), stamp_of(third)]
    assert [
        (s["tidelog.principal"], s["tidelog.listener"], s.get("tidelog.client.id")) for s in stamps
    ] == [
        ("User:alice", "SASL_PLAINTEXT", "agent-7"),
        ("User:bob", "SASL_PLAINTEXT", "planner"),
        ("User:ANONYMOUS", "PLAINTEXT", "rdkafka"),
    ]
    for stamp in stamps:
        host, port = stamp["tidelog.client.address"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert before <= int(stamp["tidelog.received.ms"]) <= after


def consume_values(
    server: ServerProcess, topic: str, count: int, **extra: Any
) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": server.bootstrap,
            "group.id": f"reader-{topic}",
            "auto.offset.reset": "earliest",
            **extra,
            **quiet_librdkafka(),
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(out) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            out.append((message.value(), dict(message.headers() or [])))
        # Anything past ``count`` would be a duplicate or an aborted record.
        extra_message = consumer.poll(1.0)
        assert extra_message is None or extra_message.error() is not None
    finally:
        consumer.close()
    return out


def test_an_idempotent_producer_writes_each_record_once_on_a_stamp_topic(
    server: ServerProcess,
) -> None:
    create_stamp_topic(server, "ledger")
    producer = Producer(
        {
            **confluent(server, "SCRAM-SHA-512", "alice", PASSWORD),
            "enable.idempotence": True,
            "linger.ms": 5,
            "compression.type": "lz4",
        }
    )
    for i in range(200):
        producer.produce("ledger", b"%d" % i, partition=0)
    assert producer.flush(TIMEOUT) == 0
    records = consume_values(server, "ledger", 200)
    assert [value for value, _ in records] == [b"%d" % i for i in range(200)]
    assert {headers["tidelog.principal"] for _, headers in records} == {b"User:alice"}


def test_a_transactional_producer_keeps_exactly_once_on_a_stamp_topic(
    server: ServerProcess,
) -> None:
    create_stamp_topic(server, "orders")
    producer = Producer(
        {**confluent(server, "SCRAM-SHA-512", "alice", PASSWORD), "transactional.id": "tx-1"}
    )
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    producer.produce("orders", b"committed", partition=0)
    producer.commit_transaction(TIMEOUT)
    producer.begin_transaction()
    producer.produce("orders", b"aborted", partition=0)
    producer.abort_transaction(TIMEOUT)
    records = consume_values(server, "orders", 1, **{"isolation.level": "read_committed"})
    assert [(value, headers["tidelog.principal"]) for value, headers in records] == [
        (b"committed", b"User:alice")
    ]


def test_a_batch_the_stamp_takes_past_max_message_bytes_is_message_too_large(
    server: ServerProcess,
) -> None:
    admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
    config = {**STAMP, "max.message.bytes": "2000"}
    admin.create_topics([NewTopic("tight", 1, config=config)])["tight"].result(TIMEOUT)
    errors: list[KafkaError | None] = []
    producer = Producer(
        {"bootstrap.servers": server.bootstrap, "message.timeout.ms": 10_000, **quiet_librdkafka()}
    )
    # About 1,900 bytes as sent: under the limit until the stamp is added.
    producer.produce("tight", b"x" * 1800, partition=0, on_delivery=lambda e, _m: errors.append(e))
    producer.flush(TIMEOUT)
    producer.produce("tight", b"small", partition=0, on_delivery=lambda e, _m: errors.append(e))
    producer.flush(TIMEOUT)
    assert len(errors) == 2 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert errors[1] is None  # the partition keeps serving
