"""Masked replay over real clients: ``tidelog serve`` with a SASL_PLAINTEXT
listener and the ACL authorizer, a topic with masking rules, and two
principals reading it: ``evaluator`` (READ only) gets the records masked
as the rules say, ``auditor`` (granted unmask with CreateAcls) the bytes
the producer sent. Both through confluent-kafka and kafka-python; hashes
stable across fetches, clients and a restart; transactions and
compression as unmasked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from tests.server.conftest import ServerProcess
from tests.server.test_sasl import (
    PASSWORD,
    TIMEOUT,
    add_user,
    confluent,
    sasl_bootstrap,
    sasl_server,
)

pytestmark = pytest.mark.slow

RULES = json.dumps(
    [
        {"path": "/customer/email", "action": "redact"},
        {"path": "/customer/name", "action": "hash"},
        {"path": "/card", "action": "drop"},
        {"path": "/user", "action": "hash", "in": "key"},
        {"path": "", "action": "redact", "in": "header:token"},
    ]
)
TOPIC, TXN_TOPIC = "chats", "txn-chats"


def _value(i: int) -> bytes:
    customer = {"email": f"u{i}@example.com", "name": f"Name {i % 2}", "tier": i}
    return json.dumps({"customer": customer, "card": "4111 1111 1111 1111"}).encode()


SENT = [_value(i) for i in range(6)] + [b"plain text, not JSON"]


def as_user(server: ServerProcess, user: str) -> dict[str, Any]:
    return confluent(server, "SCRAM-SHA-512", user, PASSWORD)


def _allow(resource: ResourceType, name: str, user: str) -> AclBinding:
    return AclBinding(
        resource, name, ResourcePatternType.LITERAL, f"User:{user}", "*",
        AclOperation.READ, AclPermissionType.ALLOW,
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("masked-replay")
    process = sasl_server(root)
    config = root / "tidelog.toml"
    config.write_text('[server]\nauthorizer = "acl"\n"super.users" = ["User:admin"]\n')
    process.args = [*process.args, "--config", str(config)]
    for user in ("admin", "evaluator", "auditor"):
        add_user(process.data_dir, user, PASSWORD, "SCRAM-SHA-512")
    process.start()
    admin = AdminClient(as_user(process, "admin"))
    masked = {"tidelog.masking.rules": RULES}
    for future in admin.create_topics(
        [NewTopic(TOPIC, 1, config=masked), NewTopic(TXN_TOPIC, 1, config=masked)]
    ).values():
        future.result(TIMEOUT)
    grants = [
        _allow(resource, name, user)
        for user in ("evaluator", "auditor")
        for resource, name in (
            (ResourceType.TOPIC, TOPIC),
            (ResourceType.TOPIC, TXN_TOPIC),
            (ResourceType.GROUP, "*"),
        )
    ]
    # the unmask permission: READ on the reserved resource name of the topic
    grants.append(_allow(ResourceType.TOPIC, f"tidelog.unmask:{TOPIC}", "auditor"))
    for future in admin.create_acls(grants).values():
        future.result(TIMEOUT)
    producer = Producer(
        {**as_user(process, "admin"), "compression.type": "lz4", "linger.ms": 20, "acks": "all"}
    )
    for value in SENT:
        producer.produce(TOPIC, value, key=b'{"user": "ann"}', headers=[("token", b"bearer x")])
    assert producer.flush(TIMEOUT) == 0
    del producer, admin  # their connections close now, not after the server is gone
    yield process
    process.end_at_teardown(graceful=True)


def read_confluent(
    server: ServerProcess, user: str, topic: str, count: int, **extra: Any
) -> list[Any]:
    consumer = Consumer(
        {
            **as_user(server, user),
            "group.id": f"read-{user}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            **extra,
        }
    )
    consumer.assign([ConfluentPartition(topic, 0, OFFSET_BEGINNING)])
    messages: list[Any] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count
    return messages


def read_kafka_python(server: ServerProcess, user: str, count: int) -> list[Any]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KafkaPartition

    consumer = KafkaConsumer(
        bootstrap_servers=sasl_bootstrap(server),
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=PASSWORD,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    consumer.assign([KafkaPartition(TOPIC, 0)])
    records: list[Any] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert len(records) == count
    return records


def _check_masked(values: list[bytes], keys: list[bytes], tokens: list[bytes]) -> None:
    """What the rules say the evaluator reads."""
    for i, raw in enumerate(values[:6]):
        document = json.loads(raw)
        assert set(document) == {"customer"}  # card dropped
        customer = document["customer"]
        assert customer["email"] == "***" and customer["tier"] == i
        assert len(customer["name"]) == 32 and "Name" not in customer["name"]
    names = [json.loads(raw)["customer"]["name"] for raw in values[:6]]
    assert names[0::2] == [names[0]] * 3 and names[1::2] == [names[1]] * 3
    assert names[0] != names[1]  # equal values hash equal, others differ
    assert values[6] == b'"***"'  # not JSON: masked whole
    assert all(b"ann" not in key and len(json.loads(key)["user"]) == 32 for key in keys)
    assert set(tokens) == {b'"***"'}


def test_confluent_reads_masked_for_one_principal_and_clear_for_the_other(
    server: ServerProcess,
) -> None:
    masked = read_confluent(server, "evaluator", TOPIC, len(SENT))
    values = [m.value() for m in masked]
    _check_masked(values, [m.key() for m in masked], [dict(m.headers())["token"] for m in masked])
    assert [m.offset() for m in masked] == list(range(len(SENT)))
    clear = read_confluent(server, "auditor", TOPIC, len(SENT))
    assert [m.value() for m in clear] == SENT
    assert {m.key() for m in clear} == {b'{"user": "ann"}'}
    assert [m.timestamp() for m in clear] == [m.timestamp() for m in masked]
    again = read_confluent(server, "evaluator", TOPIC, len(SENT))
    assert [m.value() for m in again] == values  # hashes are stable across fetches


def test_kafka_python_reads_what_confluent_reads(server: ServerProcess) -> None:
    masked = read_kafka_python(server, "evaluator", len(SENT))
    values = [r.value for r in masked]
    _check_masked(values, [r.key for r in masked], [dict(r.headers)["token"] for r in masked])
    assert values == [m.value() for m in read_confluent(server, "evaluator", TOPIC, len(SENT))]
    assert [r.value for r in read_kafka_python(server, "auditor", len(SENT))] == SENT


def test_read_committed_reads_masked_without_aborted_records(server: ServerProcess) -> None:
    producer = Producer({**as_user(server, "admin"), "transactional.id": "agent-run"})
    producer.init_transactions(TIMEOUT)
    for value, commit in ((_value(0), True), (_value(1), False), (_value(2), True)):
        producer.begin_transaction()
        producer.produce(TXN_TOPIC, value)
        producer.flush(TIMEOUT)
        if commit:
            producer.commit_transaction(TIMEOUT)
        else:
            producer.abort_transaction(TIMEOUT)
    del producer
    committed = read_confluent(
        server, "evaluator", TXN_TOPIC, 2, **{"isolation.level": "read_committed"}
    )
    tiers = [json.loads(m.value())["customer"]["tier"] for m in committed]
    assert tiers == [0, 2]  # the aborted record is filtered out, masked or not
    assert [json.loads(m.value())["customer"]["email"] for m in committed] == ["***", "***"]
    assert [m.offset() for m in committed] == [0, 4]


def test_rules_that_do_not_parse_are_invalid_config(server: ServerProcess) -> None:
    admin = AdminClient(as_user(server, "admin"))
    bad = NewTopic("bad-rules", 1, config={"tidelog.masking.rules": '[{"path": "x"}]'})
    with pytest.raises(KafkaException) as refused:
        admin.create_topics([bad])["bad-rules"].result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_hashes_survive_a_restart(server: ServerProcess) -> None:
    before = [m.value() for m in read_confluent(server, "evaluator", TOPIC, len(SENT))]
    server.restart()
    after = [m.value() for m in read_confluent(server, "evaluator", TOPIC, len(SENT))]
    assert after == before
