"""ACLs over the wire with the ACL authorizer on: administered through
confluent-kafka's AdminClient (create_acls, describe_acls, delete_acls) and
enforced on real clients. Each principal has its own server on the one
engine (InProcessServer's principal), as if it had authenticated as it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as KafkaResourceType
from kafka.errors import ClusterAuthorizationFailedError, InvalidRequestError
from kio.index import load_request_schema as request_schema

import engine
import native
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ConfigFileError, ServerConfig, load_config_file
from tests.server.confluent_helpers import wait_until
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, response_schema_for

TIMEOUT = 30
ADMIN = "User:admin"
ACL_CONFIG = ServerConfig(authorizer="acl", super_users=(ADMIN,))


class Cluster:
    """One engine; a server per principal."""

    def __init__(self, opened: engine.Engine) -> None:
        self.engine = opened
        self.servers: dict[str, InProcessServer] = {}

    def bootstrap(self, principal: str) -> str:
        if principal not in self.servers:
            self.servers[principal] = InProcessServer(
                self.engine, config=ACL_CONFIG, principal=principal
            )
        return self.servers[principal].bootstrap

    def admin(self, principal: str = ADMIN) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap(principal), **quiet_librdkafka()})

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@contextmanager
def open_cluster(path: Path) -> Iterator[Cluster]:
    """An engine at ``path`` and the servers its principals connect to.
    A group's first rebalance does not wait Kafka's 3 s for more members:
    each group here has one."""
    one_member_groups = engine.GroupConfig(group_initial_rebalance_delay_ms=0)
    with engine.open(path, config=engine.EngineConfig(groups=one_member_groups)) as opened:
        running = Cluster(opened)
        try:
            yield running
        finally:
            running.stop()


@contextmanager
def cluster_of_topics(path: Path, topics: dict[str, int], allowed: AclBinding) -> Iterator[Cluster]:
    """open_cluster with ``topics`` (name: partitions) and one ACL."""
    with open_cluster(path) as running:
        for name, partitions in topics.items():
            running.engine.create_topic(name, partitions)
        _create(running.admin(), allowed)
        yield running


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with open_cluster(tmp_path / "node") as running:
        yield running


def _allow(
    resource: ResourceType,
    name: str,
    principal: str,
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
    permission: AclPermissionType = AclPermissionType.ALLOW,
) -> AclBinding:
    return AclBinding(resource, name, pattern, principal, "*", operation, permission)


def _create_topic(cluster: Cluster, name: str) -> None:
    admin = cluster.admin()
    admin.create_topics([NewTopic(name, 1)])[name].result(TIMEOUT)


def _create(admin: AdminClient, *bindings: AclBinding) -> None:
    for future in admin.create_acls(list(bindings), request_timeout=TIMEOUT).values():
        future.result(TIMEOUT)


def _produce(bootstrap: str, topic: str) -> KafkaError | None:
    """The error a one-record produce ends with, or None once acknowledged."""
    errors: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    producer.produce(topic, b"v", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(TIMEOUT)
    assert errors, "the produce was never answered"
    return errors[0]


def _first_message(
    conf: dict[str, object],
    start: Callable[[Consumer], None],
    stop_on: int | None = None,
) -> KafkaError | bytes:
    """The first record's value a consumer started by ``start`` polls, or
    the first error it polls (only an error of code ``stop_on``, if given)."""
    consumer = Consumer({**conf, **quiet_librdkafka()})
    try:
        start(consumer)
        for _ in range(TIMEOUT * 4):
            message = consumer.poll(0.25)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if stop_on is None or error.code() == stop_on:
                    return error
                continue
            value = message.value()
            assert value is not None
            return value
        raise AssertionError("neither a record nor the error waited for")
    finally:
        consumer.close()


def _everything(admin: AdminClient) -> AclBindingFilter:
    return AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip


def test_acls_round_trip_through_the_admin_client(cluster: Cluster) -> None:
    admin = cluster.admin()
    read = _allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.READ)
    prefixed = _allow(
        ResourceType.GROUP, "app-", "User:bob", AclOperation.READ, ResourcePatternType.PREFIXED
    )
    _create(admin, read, prefixed)
    described = admin.describe_acls(_everything(admin), request_timeout=TIMEOUT).result(TIMEOUT)
    assert set(described) == {read, prefixed}
    only_topics = AclBindingFilter(
        ResourceType.TOPIC, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    assert admin.describe_acls(only_topics).result(TIMEOUT) == [read]
    # MATCH: the bindings that apply to group "app-1" (the prefix)
    matching = AclBindingFilter(
        ResourceType.GROUP, "app-1", ResourcePatternType.MATCH, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    assert admin.describe_acls(matching).result(TIMEOUT) == [prefixed]
    deleted = admin.delete_acls([only_topics], request_timeout=TIMEOUT)
    assert deleted[only_topics].result(TIMEOUT) == [read]
    assert admin.describe_acls(_everything(admin)).result(TIMEOUT) == [prefixed]


def test_acl_administration_needs_alter_and_describe_on_the_cluster(cluster: Cluster) -> None:
    stranger = cluster.admin("User:mallory")
    binding = _allow(ResourceType.TOPIC, "t", "User:mallory", AclOperation.ALL)
    with pytest.raises(KafkaException) as refused:
        _create(stranger, binding)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # librdkafka drops DescribeAcls' top-level error (it yields no bindings):
    # kafka-python reports it
    reader = KafkaAdminClient(bootstrap_servers=cluster.bootstrap("User:mallory"))
    everything = ACLFilter(
        principal=None, host="*", operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(
            KafkaResourceType.ANY, None, ACLResourcePatternType.ANY
        ),
    )  # fmt: skip
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            reader.describe_acls(everything)
    finally:
        reader.close()
    assert cluster.engine.catalog.state.acls == {}


def test_scram_credentials_need_alter_and_describe_on_the_cluster(cluster: Cluster) -> None:
    stranger = cluster.admin("User:mallory")
    upsert = UserScramCredentialUpsertion(
        "mallory", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pencil"
    )
    futures = stranger.alter_user_scram_credentials([upsert], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as refused:
        futures["mallory"].result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert cluster.engine.credentials.users() == []
    # over the wire: librdkafka 2.16 crashes on a top-level error here
    describe = build(request_schema(ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, 0), users=None)
    with Wire(cluster.bootstrap("User:mallory"), timeout=TIMEOUT) as wire:
        answer = wire.request(describe)
    assert answer.error_code == KafkaCode.CLUSTER_AUTHORIZATION_FAILED
    assert answer.results == ()
    # the super user may
    admin = cluster.admin()
    admin.alter_user_scram_credentials([upsert], request_timeout=TIMEOUT)["mallory"].result(TIMEOUT)
    assert cluster.engine.credentials.users() == ["mallory"]


def test_produce_needs_write_on_the_topic(cluster: Cluster) -> None:
    _create_topic(cluster, "orders")
    admin = cluster.admin()
    _create(
        admin,
        _allow(ResourceType.TOPIC, "orders", "User:alice", AclOperation.WRITE),
        _allow(ResourceType.TOPIC, "orders", "User:bob", AclOperation.READ),
    )
    assert _produce(cluster.bootstrap("User:alice"), "orders") is None
    refused = _produce(cluster.bootstrap("User:bob"), "orders")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert cluster.engine.offsets("orders", 0) == (0, 1)


def test_deny_beats_allow_and_super_users_pass(cluster: Cluster) -> None:
    _create_topic(cluster, "logs-a")
    admin = cluster.admin()
    _create(
        admin,
        _allow(
            ResourceType.TOPIC, "logs-", "User:*", AclOperation.ALL, ResourcePatternType.PREFIXED
        ),
        _allow(
            ResourceType.TOPIC,
            "logs-a",
            "User:carol",
            AclOperation.WRITE,
            permission=AclPermissionType.DENY,
        ),
    )
    assert _produce(cluster.bootstrap("User:dave"), "logs-a") is None
    refused = _produce(cluster.bootstrap("User:carol"), "logs-a")
    assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _produce(cluster.bootstrap(ADMIN), "logs-a") is None


def test_delete_topics_needs_delete(cluster: Cluster) -> None:
    _create_topic(cluster, "kept")
    admin = cluster.admin()
    _create(admin, _allow(ResourceType.TOPIC, "kept", "User:eve", AclOperation.DESCRIBE))
    eve = cluster.admin("User:eve")
    with pytest.raises(KafkaException) as refused:
        eve.delete_topics(["kept"], request_timeout=TIMEOUT)["kept"].result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert cluster.engine.has_topic("kept")


def test_consuming_in_a_group_needs_read_on_topic_and_group(cluster: Cluster) -> None:
    _create_topic(cluster, "events")
    assert _produce(cluster.bootstrap(ADMIN), "events") is None
    admin = cluster.admin()
    _create(
        admin,
        _allow(ResourceType.TOPIC, "events", "User:frank", AclOperation.READ),
    )

    def consume(group: str) -> KafkaError | bytes:
        return _first_message(
            {
                "bootstrap.servers": cluster.bootstrap("User:frank"),
                "group.id": group,
                "auto.offset.reset": "earliest",
            },
            lambda consumer: consumer.subscribe(["events"]),
            stop_on=KafkaError.GROUP_AUTHORIZATION_FAILED,
        )

    refused = consume("readers")
    assert isinstance(refused, KafkaError)
    assert refused.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    _create(admin, _allow(ResourceType.GROUP, "readers", "User:frank", AclOperation.READ))
    assert consume("readers") == b"v"


def test_acls_survive_a_killed_server(tmp_path: Path) -> None:
    """ACLs created through `tidelog serve` are in the catalog once
    acknowledged: after SIGKILL the server restarts with them, and enforces
    them on a principal that is no super user any more."""
    first = tmp_path / "first.toml"
    first.write_text('[server]\nauthorizer = "acl"\n"super.users" = ["User:ANONYMOUS"]\n')
    second = tmp_path / "second.toml"
    second.write_text('[server]\nauthorizer = "acl"\n')
    server = ServerProcess(tmp_path / "node", args=["--config", str(first)]).start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        for name in ("open", "closed"):
            admin.create_topics([NewTopic(name, 1)])[name].result(TIMEOUT)
        kept = [
            _allow(ResourceType.TOPIC, "open", "User:*", AclOperation.ALL),
            # librdkafka's BROKER is Kafka's ACL resource type 4, the cluster
            _allow(ResourceType.BROKER, "kafka-cluster", "User:ANONYMOUS", AclOperation.DESCRIBE),
        ]
        _create(admin, *kept)
        del admin
        server.kill()
        server.args = ["--config", str(second)]
        server.start()
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        described = admin.describe_acls(_everything(admin)).result(TIMEOUT)
        assert set(described) == set(kept)
        assert _produce(server.bootstrap, "open") is None
        refused = _produce(server.bootstrap, "closed")
        assert refused is not None and refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        server.kill()


def test_metadata_lists_only_describable_topics_and_creates_none_without_create(
    cluster: Cluster,
) -> None:
    for name in ("seen", "unseen"):
        _create_topic(cluster, name)
    admin = cluster.admin()
    _create(admin, _allow(ResourceType.TOPIC, "seen", "User:gina", AclOperation.READ))
    gina = cluster.admin("User:gina")
    listed = gina.list_topics(timeout=TIMEOUT)
    assert set(listed.topics) == {"seen"}
    named = gina.list_topics("never-made", timeout=TIMEOUT).topics["never-made"]
    assert named.error is not None
    assert named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert not cluster.engine.has_topic("never-made")


def test_delete_records_needs_delete_on_the_topic(cluster: Cluster) -> None:
    _create_topic(cluster, "ledger")
    assert _produce(cluster.bootstrap(ADMIN), "ledger") is None
    admin = cluster.admin()
    _create(admin, _allow(ResourceType.TOPIC, "ledger", "User:hal", AclOperation.READ))
    hal = cluster.admin("User:hal")
    futures = hal.delete_records([TopicPartition("ledger", 0, 1)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as refused:
        next(iter(futures.values())).result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert cluster.engine.offsets("ledger", 0) == (0, 1)


def test_a_transactional_producer_needs_write_on_its_transactional_id(cluster: Cluster) -> None:
    """Without WRITE on the id another application's id cannot be taken
    over (fencing its producer); with it, the transaction commits."""
    _create_topic(cluster, "payments")
    admin = cluster.admin()
    _create(
        admin,
        _allow(ResourceType.TOPIC, "payments", "User:*", AclOperation.WRITE),
        _allow(ResourceType.TRANSACTIONAL_ID, "billing", "User:ivan", AclOperation.WRITE),
    )

    def producer(principal: str) -> Producer:
        return Producer(
            {
                "bootstrap.servers": cluster.bootstrap(principal),
                "transactional.id": "billing",
                **quiet_librdkafka(),
            }
        )

    with pytest.raises(KafkaException) as refused:
        producer("User:judy").init_transactions(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    owner = producer("User:ivan")
    owner.init_transactions(TIMEOUT)
    owner.begin_transaction()
    owner.produce("payments", b"paid")
    owner.commit_transaction(TIMEOUT)
    assert cluster.engine.offsets("payments", 0)[1] == 2  # the record and its marker


def test_kafka_python_administers_acls(cluster: Cluster) -> None:
    client = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(ADMIN))
    try:
        acl = ACL(
            principal="User:kim", host="*", operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                KafkaResourceType.TOPIC, "kim-", ACLResourcePatternType.PREFIXED
            ),
        )  # fmt: skip
        created = client.create_acls([acl])
        assert created["succeeded"] == [acl] and not created["failed"]
        found, _ = client.describe_acls(
            ACLFilter(
                principal="User:kim",
                host=None,
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(
                    KafkaResourceType.ANY, None, ACLResourcePatternType.ANY
                ),
            )
        )
        assert [a.resource_pattern.resource_name for a in found] == ["kim-"]
        unknown = ACL(
            principal="User:kim", host="*", operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                KafkaResourceType.TOPIC, "", ACLResourcePatternType.LITERAL
            ),
        )  # fmt: skip
        refused = client.create_acls([unknown])
        # kafka-python lists the error class of each failure
        assert refused["failed"] == [InvalidRequestError] and not refused["succeeded"]
    finally:
        client.close()


def test_a_cluster_binding_must_name_kafka_cluster(cluster: Cluster) -> None:
    """Kafka's AclApis refuses a CLUSTER binding named other than
    kafka-cluster with INVALID_REQUEST: it could never apply. The other
    bindings of the request are created."""
    admin = cluster.admin()
    wrong = _allow(ResourceType.BROKER, "prod", "User:kim", AclOperation.ALTER)
    right = _allow(ResourceType.BROKER, "kafka-cluster", "User:kim", AclOperation.DESCRIBE)
    futures = admin.create_acls([wrong, right], request_timeout=TIMEOUT)
    futures[right].result(TIMEOUT)
    with pytest.raises(KafkaException) as refused:
        futures[wrong].result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST
    assert admin.describe_acls(_everything(admin)).result(TIMEOUT) == [right]


def _creations(names: range, prefix: str, principal: str = "User:kim") -> Any:
    return build(
        request_schema(ApiKey.CREATE_ACLS, 3),
        creations=[
            {
                "resource_type": 2,  # TOPIC
                "resource_name": f"{prefix}{i}",
                "resource_pattern_type": 3,  # LITERAL
                "principal": principal,
                "host": "*",
                "operation": 3,  # READ
                "permission_type": 3,  # ALLOW
            }
            for i in names
        ],
    )


def _deletions(*principals: str) -> Any:
    return build(
        request_schema(ApiKey.DELETE_ACLS, 3),
        filters=[
            {
                "resource_type_filter": 1,  # ANY
                "resource_name_filter": None,
                "pattern_type_filter": 1,  # ANY
                "principal_filter": principal,
                "host_filter": None,
                "operation": 1,  # ANY
                "permission_type": 1,  # ANY
            }
            for principal in principals
        ],
    )


def test_one_request_adds_or_removes_at_most_kafkas_bound_of_bindings(cluster: Cluster) -> None:
    """Kafka's controller writes at most 10,000 records for one request: a
    CreateAcls adding more is refused whole (POLICY_VIOLATION), and a
    DeleteAcls filter that would remove more is refused and removes nothing,
    while the request's other filters are carried out."""
    bound = 10_000
    with Wire(cluster.bootstrap(ADMIN), timeout=TIMEOUT) as wire:
        refused = wire.request(_creations(range(bound + 1), "many-"))
        assert {r.error_code for r in refused.results} == {KafkaCode.POLICY_VIOLATION}
        assert not cluster.engine.catalog.state.acls
        accepted = wire.request(_creations(range(bound), "many-"))
        assert {r.error_code for r in accepted.results} == {KafkaCode.NONE}
        # Bindings already stored are no new records: with one more they pass.
        again = wire.request(_creations(range(bound + 1), "many-"))
        assert {r.error_code for r in again.results} == {KafkaCode.NONE}
        wire.request(_creations(range(2), "few-", "User:lee"))
        deleted = wire.request(_deletions(None, "User:lee"))
    too_many, few = deleted.filter_results
    assert too_many.error_code == KafkaCode.POLICY_VIOLATION and too_many.matching_acls == ()
    assert few.error_code == KafkaCode.NONE and len(few.matching_acls) == 2
    assert len(cluster.engine.catalog.state.acls) == bound + 1


def test_the_config_file_names_the_authorizer_and_super_users(tmp_path: Path) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(
        '[server]\nauthorizer = "acl"\n"super.users" = "User:a; User:b"\n'
        '"allow.everyone.if.no.acl.found" = true\n'
    )
    loaded = load_config_file(path).server
    assert loaded.authorizer == "acl"
    assert loaded.super_users == ("User:a", "User:b")
    assert loaded.allow_everyone_if_no_acl_found
    assert ServerConfig().authorizer == ""  # none by default: everything allowed
    path.write_text('[server]\nauthorizer = "kafka.security.authorizer.AclAuthorizer"\n')
    with pytest.raises(ConfigFileError, match="authorizer"):
        load_config_file(path)


def test_fetch_needs_read_which_describe_does_not_imply(cluster: Cluster) -> None:
    _create_topic(cluster, "secrets")
    assert _produce(cluster.bootstrap(ADMIN), "secrets") is None
    admin = cluster.admin()
    _create(
        admin,
        _allow(ResourceType.TOPIC, "secrets", "User:lee", AclOperation.DESCRIBE),
        # librdkafka looks its group's coordinator up, even when it only assigns
        _allow(ResourceType.GROUP, "unused", "User:lee", AclOperation.DESCRIBE),
    )

    def first_fetch(principal: str) -> KafkaError | bytes:
        return _first_message(
            {
                "bootstrap.servers": cluster.bootstrap(principal),
                "group.id": "unused",  # assigned, never joined
                "enable.auto.commit": False,
            },
            lambda consumer: consumer.assign([TopicPartition("secrets", 0, 0)]),
        )

    refused = first_fetch("User:lee")
    assert isinstance(refused, KafkaError)
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert first_fetch(ADMIN) == b"v"


def test_a_produce_with_a_refused_transactional_id_fails_every_partition(
    cluster: Cluster,
) -> None:
    """As Kafka's KafkaApis.handleProduceRequest: when a partition's first
    batch is transactional, a transactional id the principal may not WRITE
    fails the whole request with TRANSACTIONAL_ID_AUTHORIZATION_FAILED for
    every partition, before any topic is authorized, created or written. A
    request without transactional records is not asked for the id."""
    for name in ("open", "closed"):
        _create_topic(cluster, name)
    _create(cluster.admin(), _allow(ResourceType.TOPIC, "open", "User:judy", AclOperation.WRITE))
    transactional = native.encode_batch(
        [native.RecordSpec(0, None, b"v", ())],
        producer_id=1,
        producer_epoch=0,
        base_sequence=0,
        is_transactional=True,
    )
    plain = native.encode_batch([native.RecordSpec(0, None, b"v", ())])

    def codes(first_records: bytes) -> dict[tuple[str, int], int]:
        produce = build(
            request_schema(ApiKey.PRODUCE, 9),
            transactional_id="billing",
            acks=-1,
            timeout_ms=TIMEOUT * 1000,
            topic_data=[
                {"name": name, "partition_data": [{"index": 0, "records": records}]}
                for name, records in (
                    ("open", first_records),
                    ("closed", None),
                    ("never-made", None),
                )
            ],
        )
        with Wire(cluster.bootstrap("User:judy"), timeout=TIMEOUT) as wire:
            answer = wire.request(produce)
        return {
            (topic.name, partition.index): partition.error_code
            for topic in answer.responses
            for partition in topic.partition_responses
        }

    refused = KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    assert codes(transactional) == {
        ("open", 0): refused,
        ("closed", 0): refused,
        ("never-made", 0): refused,
    }
    assert not cluster.engine.has_topic("never-made")
    assert cluster.engine.offsets("open", 0) == (0, 0)
    # No transactional records: each partition gets its own answer.
    plain_codes = codes(plain)
    assert plain_codes[("open", 0)] == KafkaCode.NONE
    assert plain_codes[("closed", 0)] == KafkaCode.TOPIC_AUTHORIZATION_FAILED
    assert cluster.engine.offsets("open", 0) == (0, 1)


def test_an_acks0_produce_refused_closes_its_connection_after_the_answers_before_it(
    cluster: Cluster,
) -> None:
    """acks=0 has no answer to carry an error; as Kafka's KafkaApis does, a
    refused one closes the connection (the producer learns of it by
    reconnecting), once the requests before it are answered. An accepted
    acks=0 produce leaves the connection open and unanswered."""
    _create_topic(cluster, "open")
    _create(cluster.admin(), _allow(ResourceType.TOPIC, "open", "User:judy", AclOperation.WRITE))
    versions = request_schema(ApiKey.API_VERSIONS, 0)()

    def produce(topic: str, transactional_id: str | None = None) -> Any:
        # A transactional id is asked for only with transactional records.
        records = native.encode_batch(
            [native.RecordSpec(0, None, b"v", ())],
            producer_id=1 if transactional_id else -1,
            producer_epoch=0 if transactional_id else -1,
            base_sequence=0 if transactional_id else -1,
            is_transactional=transactional_id is not None,
        )
        return build(
            request_schema(ApiKey.PRODUCE, 9),
            transactional_id=transactional_id,
            acks=0,
            timeout_ms=TIMEOUT * 1000,
            topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
        )

    with Wire(cluster.bootstrap("User:judy"), timeout=TIMEOUT) as wire:
        wire.send(produce("open"))  # accepted: no answer, and the connection stays
        assert wire.request(versions).error_code == 0
    for refused in (produce("open", transactional_id="billing"), produce("closed")):
        with Wire(cluster.bootstrap("User:judy"), timeout=TIMEOUT) as wire:
            before = wire.send(versions)
            wire.send(refused)
            answered, _ = wire.receive(response_schema_for(versions))
            assert answered == before
            assert wire.closed_by_server()
    # The accepted acks=0 record lands when its WAL group is synced, which
    # nothing here waits for (no answer): a loaded machine may not be there yet.
    wait_until(lambda: cluster.engine.offsets("open", 0) == (0, 1), "the acks=0 record landed")


def _filter_with(**codes: int) -> dict[str, Any]:
    """A DeleteAcls filter matching every binding but for ``codes``."""
    return {
        "resource_type_filter": 1,  # ANY
        "resource_name_filter": None,
        "pattern_type_filter": 1,  # ANY
        "principal_filter": None,
        "host_filter": None,
        "operation": 1,  # ANY
        "permission_type": 1,  # ANY
        **codes,
    }


_PAST_THE_TABLES = [
    {"resource_type_filter": 8},
    {"pattern_type_filter": 5},
    {"operation": 15},
    {"permission_type": 4},
]
"""One code past the end of each of Kafka's tables (ResourceType,
PatternType, AclOperation, AclPermissionType): fromCode reads it UNKNOWN."""


@pytest.mark.parametrize("codes", _PAST_THE_TABLES, ids=lambda c: next(iter(c)))
def test_filters_with_codes_past_kafkas_tables_are_invalid_requests(
    cluster: Cluster, codes: dict[str, int]
) -> None:
    """Kafka's AclControlManager.validateFilter refuses a DeleteAcls filter
    with an UNKNOWN code INVALID_REQUEST (the request's other filters are
    carried out); tidelog answers a DescribeAcls so filtered the same."""
    with Wire(cluster.bootstrap(ADMIN), timeout=TIMEOUT) as wire:
        wire.request(_creations(range(1), "kept-"))
        described = wire.request(
            build(
                request_schema(ApiKey.DESCRIBE_ACLS, 3),
                **_filter_with(**codes),
            )
        )
        deleted = wire.request(
            build(
                request_schema(ApiKey.DELETE_ACLS, 3),
                filters=[_filter_with(**codes), _filter_with(principal_filter="User:nobody")],
            )
        )
    assert described.error_code == KafkaCode.INVALID_REQUEST and described.resources == ()
    refused, other = deleted.filter_results
    assert refused.error_code == KafkaCode.INVALID_REQUEST and refused.matching_acls == ()
    assert other.error_code == KafkaCode.NONE
    assert len(cluster.engine.catalog.state.acls) == 1
