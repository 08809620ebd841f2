"""Authentication and authorization together, as an operator runs them:
``tidelog serve`` with a SASL_PLAINTEXT listener and the ACL authorizer,
users added with ``tidelog users``, and confluent-kafka clients whose
SASL user is the principal the ACLs name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
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
from tests.server.test_sasl import PASSWORD, TIMEOUT, add_user, confluent, sasl_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("sasl-acls")
    process = sasl_server(root)
    config = root / "tidelog.toml"
    config.write_text('[server]\nauthorizer = "acl"\n"super.users" = ["User:admin"]\n')
    process.args = [*process.args, "--config", str(config)]
    for user in ("admin", "alice", "bob"):
        add_user(process.data_dir, user, PASSWORD, "SCRAM-SHA-512")
    process.start()
    yield process
    process.end_at_teardown(graceful=True)


def as_user(server: ServerProcess, user: str) -> dict[str, Any]:
    return confluent(server, "SCRAM-SHA-512", user, PASSWORD)


def produce(settings: dict[str, Any], topic: str) -> KafkaError | None:
    """The delivery error of one record, None once it is acknowledged."""
    errors: list[KafkaError | None] = []
    producer = Producer({**settings, "acks": "all", "message.timeout.ms": 10_000})
    producer.produce(topic, b"v", on_delivery=lambda error, _message: errors.append(error))
    producer.flush(TIMEOUT)
    assert len(errors) == 1
    return errors[0]


def test_the_authenticated_user_is_the_principal_acls_name(server: ServerProcess) -> None:
    admin = AdminClient(as_user(server, "admin"))  # a super user
    admin.create_topics([NewTopic("ledger", 1)])["ledger"].result(TIMEOUT)
    allow = AclBinding(
        ResourceType.TOPIC, "ledger", ResourcePatternType.LITERAL, "User:alice", "*",
        AclOperation.WRITE, AclPermissionType.ALLOW,
    )  # fmt: skip
    for future in admin.create_acls([allow]).values():
        future.result(TIMEOUT)

    assert produce(as_user(server, "alice"), "ledger") is None
    refused = produce(as_user(server, "bob"), "ledger")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # bob may not grant himself what alice has
    grant = AclBinding(
        ResourceType.TOPIC, "ledger", ResourcePatternType.LITERAL, "User:bob", "*",
        AclOperation.WRITE, AclPermissionType.ALLOW,
    )  # fmt: skip
    bob = AdminClient(as_user(server, "bob"))
    with pytest.raises(KafkaException) as denied:
        for future in bob.create_acls([grant]).values():
            future.result(TIMEOUT)
    assert denied.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert produce(as_user(server, "bob"), "ledger") is not None
