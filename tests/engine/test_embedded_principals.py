"""Principals in the embedded API: an engine opened with authorization on
asks its ACL authorizer (the catalog's ACLs, super users) for the principal
each embedded producer, transactional producer and consumer was opened
with, as the wire server asks it for a connection's, and refuses with the
typed errors whose Kafka codes the server answers. Without authorization
nothing is asked and the principal only names the writer."""

from __future__ import annotations

import dataclasses

import pytest

import engine
from engine.acl_bindings import AclBinding, AclPermission, PatternType
from engine.authorization import (
    AclOperation,
    AllowAll,
    AuthorizationConfig,
    ClusterAuthorizationFailed,
    GroupAuthorizationFailed,
    ResourceType,
    TopicAuthorizationFailed,
    TransactionalIdAuthorizationFailed,
)
from engine.protocol.kafka_code import KafkaCode
from engine.server.acl_authorizer import authorizer_for
from engine.server.config import ServerConfig
from tests.engine.conftest import FAST_STORE, EngineFactory

TIMEOUT = 10.0
AUTHORIZED = engine.EngineConfig(
    store=FAST_STORE,
    cleaner_interval_s=3600.0,
    authorization=AuthorizationConfig(super_users=("User:admin",)),
)


def allow(
    resource_type: ResourceType,
    name: str,
    principal: str,
    operation: AclOperation,
    permission: AclPermission = AclPermission.ALLOW,
) -> AclBinding:
    return AclBinding(
        resource_type, name, PatternType.LITERAL, principal, "*", operation, permission
    )


@pytest.fixture
def secured(engine_factory: EngineFactory) -> engine.Engine:
    e = engine_factory(config=AUTHORIZED)
    e.create_topic("orders", 1)
    e.create_topic("secrets", 1)
    e.catalog.add_acls(
        [
            allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.WRITE),
            allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.READ),
            allow(ResourceType.GROUP, "readers", "User:alice", AclOperation.READ),
            allow(ResourceType.TRANSACTIONAL_ID, "tx-alice", "User:alice", AclOperation.WRITE),
            allow(ResourceType.TOPIC, "secrets", "User:bob", AclOperation.READ),
            allow(ResourceType.TOPIC, "secrets", "User:bob", AclOperation.READ, AclPermission.DENY),
        ]
    )
    return e


def test_without_authorization_every_principal_may_do_everything(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    assert isinstance(e.authorizer, AllowAll)
    e.create_topic("t", 1)
    with e.producer(principal="User:nobody") as producer:
        producer.send("t", b"v", partition=0).result(TIMEOUT)
    with e.consumer(group_id="g", auto_offset_reset="earliest") as consumer:
        assert consumer.principal == "User:ANONYMOUS"
        consumer.assign([("t", 0)])
        assert [r.value for r in consumer.poll(TIMEOUT)] == [b"v"]


def test_a_producer_writes_only_where_its_principal_may(secured: engine.Engine) -> None:
    with secured.producer(principal="User:alice") as producer:
        assert producer.send("orders", b"ok", partition=0).result(TIMEOUT).offset == 0
        refused = producer.send("secrets", b"no", partition=0)
        with pytest.raises(TopicAuthorizationFailed) as raised:
            refused.result(TIMEOUT)
    assert raised.value.error_code == KafkaCode.TOPIC_AUTHORIZATION_FAILED
    assert (raised.value.principal, raised.value.topic) == ("User:alice", "secrets")
    assert secured.offsets("secrets", 0) == (0, 0)


def test_an_idempotent_producer_needs_idempotent_write_or_write_on_some_topic(
    secured: engine.Engine,
) -> None:
    with pytest.raises(ClusterAuthorizationFailed) as raised:
        secured.producer(principal="User:carol")
    assert raised.value.error_code == KafkaCode.CLUSTER_AUTHORIZATION_FAILED
    with (
        secured.producer(principal="User:carol", idempotent=False) as producer,
        pytest.raises(TopicAuthorizationFailed),
    ):
        producer.send("orders", b"no", partition=0).result(TIMEOUT)
    secured.catalog.add_acls(
        [allow(ResourceType.CLUSTER, "kafka-cluster", "User:carol", AclOperation.IDEMPOTENT_WRITE)]
    )
    secured.producer(principal="User:carol").close()


def test_a_consumer_reads_only_topics_with_read_and_deny_beats_allow(
    secured: engine.Engine,
) -> None:
    with secured.producer(principal="User:admin") as producer:
        producer.send("secrets", b"s", partition=0).result(TIMEOUT)
    with secured.consumer(principal="User:alice", auto_offset_reset="earliest") as consumer:
        assert consumer.principal == "User:alice"
        with pytest.raises(TopicAuthorizationFailed) as raised:
            consumer.assign([("secrets", 0)])
        assert raised.value.operation == AclOperation.READ
        assert consumer.assignment() == set()
        with pytest.raises(TopicAuthorizationFailed):
            consumer.subscribe(["secrets"])
    with (
        secured.consumer(principal="User:bob", auto_offset_reset="earliest") as consumer,
        pytest.raises(TopicAuthorizationFailed),  # bob's DENY beats his ALLOW
    ):
        consumer.assign([("secrets", 0)])
    with secured.consumer(principal="User:admin", auto_offset_reset="earliest") as consumer:
        consumer.assign([("secrets", 0)])  # a super user
        assert [r.value for r in consumer.poll(TIMEOUT)] == [b"s"]


def test_a_consumer_in_a_group_needs_read_on_the_group(secured: engine.Engine) -> None:
    with pytest.raises(GroupAuthorizationFailed) as raised:
        secured.consumer(group_id="others", principal="User:alice")
    assert raised.value.error_code == KafkaCode.GROUP_AUTHORIZATION_FAILED
    assert raised.value.group_id == "others"
    with secured.producer(principal="User:alice") as producer:
        producer.send("orders", b"o", partition=0).result(TIMEOUT)
    with secured.consumer(
        "orders", group_id="readers", principal="User:alice", auto_offset_reset="earliest"
    ) as consumer:
        values: list[bytes] = []
        for _ in range(50):
            values += [r.value for r in consumer.poll(0.2) if r.value is not None]
            if values:
                break
        assert values == [b"o"]


def test_a_transactional_producer_needs_write_on_its_transactional_id(
    secured: engine.Engine,
) -> None:
    with (
        secured.producer(transactional_id="tx-other", principal="User:alice") as producer,
        pytest.raises(TransactionalIdAuthorizationFailed) as raised,
    ):
        producer.init_transactions(TIMEOUT)
    assert raised.value.error_code == KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert raised.value.transactional_id == "tx-other"
    with secured.producer(transactional_id="tx-alice", principal="User:alice") as producer:
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        producer.send("orders", b"in a transaction", partition=0)
        producer.commit_transaction(TIMEOUT)
        producer.begin_transaction()
        with pytest.raises(GroupAuthorizationFailed):
            producer.send_offsets_to_transaction({("orders", 0): 1}, "others")
        producer.abort_transaction(TIMEOUT)
    assert secured.offsets("orders", 0)[1] >= 2  # the record and its commit marker


def test_the_server_asks_the_engines_authorizer(secured: engine.Engine) -> None:
    assert authorizer_for(ServerConfig(), secured) is secured.authorizer
    assert authorizer_for(ServerConfig(authorizer="acl"), secured) is secured.authorizer


@pytest.mark.parametrize("partition", [0, None], ids=["to a partition", "partitioned"])
def test_a_producer_creates_a_topic_only_where_its_principal_may_create(
    engine_factory: EngineFactory, partition: int | None
) -> None:
    e = engine_factory(config=dataclasses.replace(AUTHORIZED, auto_create_topics=True))
    e.catalog.add_acls(
        [
            allow(ResourceType.TOPIC, "fresh", "User:alice", AclOperation.WRITE),
            allow(ResourceType.TOPIC, "fresh", "User:bob", AclOperation.WRITE),
            allow(ResourceType.TOPIC, "fresh", "User:bob", AclOperation.CREATE),
        ]
    )
    with (
        e.producer(principal="User:alice", idempotent=False) as producer,
        pytest.raises(TopicAuthorizationFailed) as raised,
    ):
        producer.send("fresh", b"no", partition=partition).result(TIMEOUT)
    assert raised.value.operation == AclOperation.CREATE
    assert e.list_topics() == []
    with e.producer(principal="User:bob", idempotent=False) as producer:
        assert producer.send("fresh", b"ok", partition=partition).result(TIMEOUT).offset == 0
    assert e.list_topics() == ["fresh"]


@pytest.mark.parametrize("partition", [0, None], ids=["to a partition", "partitioned"])
def test_a_batch_queued_before_its_topic_is_deleted_recreates_it_only_where_allowed(
    engine_factory: EngineFactory, partition: int | None
) -> None:
    """A send looks its topic up when it is queued; its batch is appended
    after linger_ms. A topic deleted in between is created again by that
    append only for a principal that may create it: one that may only WRITE
    has the send refused (TopicAuthorizationFailed, as Kafka's producer is
    refused the auto-creation its metadata refresh asks for) and no topic."""
    e = engine_factory(config=dataclasses.replace(AUTHORIZED, auto_create_topics=True))
    e.create_topic("fresh", 1)
    e.catalog.add_acls(
        [
            allow(ResourceType.TOPIC, "fresh", "User:alice", AclOperation.WRITE),
            allow(ResourceType.TOPIC, "fresh", "User:bob", AclOperation.WRITE),
            allow(ResourceType.TOPIC, "fresh", "User:bob", AclOperation.CREATE),
        ]
    )
    with e.producer(principal="User:alice", idempotent=False, linger_ms=3_600_000) as producer:
        sent = producer.send("fresh", b"no", partition=partition)
        e.delete_topic("fresh")
        producer.flush(TIMEOUT)
        with pytest.raises(TopicAuthorizationFailed) as raised:
            sent.result(TIMEOUT)
    assert raised.value.operation == AclOperation.CREATE
    assert e.list_topics() == []
    e.create_topic("fresh", 1)
    with e.producer(principal="User:bob", idempotent=False, linger_ms=3_600_000) as producer:
        sent = producer.send("fresh", b"ok", partition=partition)
        e.delete_topic("fresh")
        producer.flush(TIMEOUT)
        assert sent.result(TIMEOUT).offset == 0
    assert e.list_topics() == ["fresh"]
