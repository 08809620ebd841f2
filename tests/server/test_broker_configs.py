"""Broker config resources over the wire, through confluent-kafka's
AdminClient: DescribeConfigs of this broker and of the cluster's defaults
(""), IncrementalAlterConfigs and AlterConfigs of the dynamic ones, Kafka's
refusals, and each change taking effect at once: topic defaults on topics
without an override, num.partitions and auto.create.topics.enable on the
next auto-creation, max.connections on the next connection. The values
live in the catalog, so a new process on the same storage keeps them.

librdkafka and kafka-python refuse to name the cluster's default resource
(""), so requests about it are sent as raw frames (kio's writers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.server.config import ServerConfig
from tests.server.catalog_faults import fail_next_catalog_write
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.in_process import InProcessServer, ServedNode
from tests.server.wire import Wire, build

TOPIC, BROKER = 2, 4
SET, DELETE = 0, 1

TIMEOUT = 30
DYNAMIC_DEFAULT = ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
DYNAMIC_BROKER = ConfigSource.DYNAMIC_BROKER_CONFIG.value


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ServedNode]:
    opened = ServedNode(tmp_path, engine.EngineConfig(auto_create_topics=True))
    yield opened
    opened.close()


def describe(admin: AdminClient, name: str, kind: ResourceType = ResourceType.BROKER) -> Any:
    resource = ConfigResource(kind, name)
    [future] = admin.describe_configs([resource]).values()
    return future.result(TIMEOUT)


def alter(admin: AdminClient, name: str, *entries: ConfigEntry, validate: bool = False) -> None:
    resource = ConfigResource(ResourceType.BROKER, name, incremental_configs=list(entries))
    [future] = admin.incremental_alter_configs([resource], validate_only=validate).values()
    future.result(TIMEOUT)


def described(bootstrap: str, kind: int, name: str) -> dict[str, Any]:
    """A resource's configs by name, each with its synonyms, from a raw
    DescribeConfigs (confluent-kafka keys synonyms by name, and so keeps one
    of a broker config's several values)."""
    request = build(
        load_request_schema(ApiKey.DESCRIBE_CONFIGS, 4),
        resources=[{"resource_type": kind, "resource_name": name, "configuration_keys": None}],
        include_synonyms=True,
    )
    with Wire(bootstrap) as wire:
        [result] = wire.request(request).results
    assert result.error_code == 0, result
    return {c.name: c for c in result.configs}


def synonyms(config: Any) -> list[tuple[str, str, int]]:
    return [(s.name, s.value, s.source) for s in config.synonyms]


def default_resource(bootstrap: str) -> dict[str, tuple[str, int]]:
    """The cluster's default resource, described: name -> (value, source)."""
    return {n: (c.value, c.config_source) for n, c in described(bootstrap, BROKER, "").items()}


def alter_raw(
    bootstrap: str,
    kind: int,
    name: str,
    *configs: tuple[str, int, str | None],
    legacy: bool = False,
) -> Any:
    """The response to an IncrementalAlterConfigs (or AlterConfigs) of one resource."""
    key = ApiKey.ALTER_CONFIGS if legacy else ApiKey.INCREMENTAL_ALTER_CONFIGS
    request = build(
        load_request_schema(key, 2 if legacy else 1),
        resources=[
            {
                "resource_type": kind,
                "resource_name": name,
                "configs": [
                    {"name": n, "config_operation": op, "value": v} for n, op, v in configs
                ],
            }
        ],
    )
    with Wire(bootstrap) as wire:
        [response] = wire.request(request).responses
    return response


def alter_default(
    bootstrap: str, *configs: tuple[str, int, str | None], legacy: bool = False
) -> None:
    """Alters the cluster's default resource."""
    response = alter_raw(bootstrap, BROKER, "", *configs, legacy=legacy)
    assert response.error_code == 0, response


def set_(name: str, value: str) -> ConfigEntry:
    return ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)


def delete(name: str) -> ConfigEntry:
    return ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE)


def refusal(admin: AdminClient, name: str, *entries: ConfigEntry) -> KafkaError:
    with pytest.raises(KafkaException) as raised:
        alter(admin, name, *entries)
    error: KafkaError = raised.value.args[0]
    return error


def test_the_broker_resource_lists_its_configs_with_kafkas_names_types_and_sources(
    node: ServedNode,
) -> None:
    described = describe(node.admin, "1")
    assert described["broker.id"].value == "1"
    assert described["broker.id"].is_read_only
    retention = described["log.retention.ms"]
    assert (retention.value, retention.source) == ("604800000", ConfigSource.DEFAULT_CONFIG.value)
    assert not retention.is_read_only and not retention.is_sensitive
    assert described["default.replication.factor"].value == "1"
    assert described["default.replication.factor"].is_read_only
    # the server's own setting is static; the engine's auto-create is not Kafka's default
    connections = described["max.connections"]
    assert connections.source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert connections.value == "10000"
    assert described["auto.create.topics.enable"].source == ConfigSource.DEFAULT_CONFIG.value
    assert [(s.name, s.source) for s in retention.synonyms.values()] == [
        ("log.retention.ms", ConfigSource.DEFAULT_CONFIG.value)
    ]
    # the cluster's default resource lists only dynamic defaults: none yet
    assert default_resource(node.server.bootstrap) == {}


def test_a_dynamic_default_and_a_broker_value_take_effect_on_topics_without_overrides(
    node: ServedNode,
) -> None:
    node.engine.create_topic("plain", 1)
    node.engine.create_topic("own", 1, configs={"retention.ms": "1000"})
    alter_default(node.server.bootstrap, ("log.retention.ms", SET, "3600000"))
    assert node.engine.topic_config("plain").retention_ms == 3_600_000
    assert node.engine.topic_config("own").retention_ms == 1000
    topic = describe(node.admin, "plain", ResourceType.TOPIC)["retention.ms"]
    assert (topic.value, topic.source) == ("3600000", DYNAMIC_DEFAULT)
    own = describe(node.admin, "own", ResourceType.TOPIC)["retention.ms"]
    assert (own.value, own.source) == ("1000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert synonyms(described(node.server.bootstrap, TOPIC, "own")["retention.ms"]) == [
        ("retention.ms", "1000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        ("log.retention.ms", "3600000", DYNAMIC_DEFAULT),
        ("log.retention.ms", "604800000", ConfigSource.DEFAULT_CONFIG.value),
    ]
    assert default_resource(node.server.bootstrap) == {
        "log.retention.ms": ("3600000", DYNAMIC_DEFAULT)
    }

    alter(node.admin, "1", set_("log.retention.ms", "7200000"))  # the broker's own wins
    assert node.engine.topic_config("plain").retention_ms == 7_200_000
    broker = describe(node.admin, "1")["log.retention.ms"]
    assert (broker.value, broker.source) == ("7200000", DYNAMIC_BROKER)
    assert synonyms(described(node.server.bootstrap, BROKER, "1")["log.retention.ms"]) == [
        ("log.retention.ms", "7200000", DYNAMIC_BROKER),
        ("log.retention.ms", "3600000", DYNAMIC_DEFAULT),
        ("log.retention.ms", "604800000", ConfigSource.DEFAULT_CONFIG.value),
    ]
    topic = describe(node.admin, "plain", ResourceType.TOPIC)["retention.ms"]
    assert (topic.value, topic.source) == ("7200000", DYNAMIC_BROKER)

    alter(node.admin, "1", delete("log.retention.ms"))
    alter_default(node.server.bootstrap, ("log.retention.ms", DELETE, None))
    assert node.engine.topic_config("plain").retention_ms == 604_800_000
    plain = describe(node.admin, "plain", ResourceType.TOPIC)["retention.ms"]
    assert plain.source == ConfigSource.DEFAULT_CONFIG.value


def test_num_partitions_and_auto_create_apply_to_the_next_auto_created_topic(
    node: ServedNode,
) -> None:
    alter_default(node.server.bootstrap, ("num.partitions", SET, "3"))
    producer = Producer({"bootstrap.servers": node.server.bootstrap, **quiet_librdkafka()})
    producer.produce("auto-three", b"x")
    assert producer.flush(TIMEOUT) == 0
    assert node.engine.partition_count("auto-three") == 3

    alter(node.admin, "1", set_("auto.create.topics.enable", "false"))
    metadata = node.admin.list_topics("never-made", timeout=TIMEOUT)
    error = metadata.topics["never-made"].error
    assert error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert not node.engine.has_topic("never-made")


def test_max_connections_applies_to_the_next_connection(node: ServedNode) -> None:
    """The admin client holds a connection: with a limit of one, the next is
    closed at once (as Kafka does); raised again, the next is served."""
    alter(node.admin, "1", set_("max.connections", "1"))
    with Wire(node.server.bootstrap) as over:
        assert over.closed_by_server()
    alter(node.admin, "1", set_("max.connections", "100"))
    with Wire(node.server.bootstrap) as served:
        request = build(load_request_schema(ApiKey.API_VERSIONS, 3))
        assert served.request(request).error_code == 0


def test_kafkas_refusals(node: ServedNode) -> None:
    read_only = refusal(node.admin, "1", set_("default.replication.factor", "3"))
    assert read_only.code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically: Set(default.replication.factor)" in str(
        read_only
    )
    unknown = refusal(node.admin, "1", set_("no.such.config", "1"))
    assert unknown.code() == KafkaError.INVALID_CONFIG
    bad = refusal(node.admin, "1", set_("num.partitions", "0"))
    assert bad.code() == KafkaError.INVALID_REQUEST
    # librdkafka sends a broker resource to the broker it names: raw frames
    other = alter_raw(node.server.bootstrap, BROKER, "7", ("num.partitions", SET, "2"))
    assert other.error_code == KafkaError.INVALID_REQUEST
    assert other.error_message == "Unexpected broker id, expected 1, but received 7"
    request = build(
        load_request_schema(ApiKey.DESCRIBE_CONFIGS, 4),
        resources=[{"resource_type": BROKER, "resource_name": "x", "configuration_keys": None}],
    )
    with Wire(node.server.bootstrap) as wire:
        [result] = wire.request(request).results
    assert result.error_code == KafkaError.INVALID_REQUEST
    assert result.error_message == "Node id must be an integer, but it is: x"
    twice = alter_raw(
        node.server.bootstrap,
        BROKER,
        "1",
        ("num.partitions", SET, "2"),
        ("num.partitions", SET, "3"),
    )
    assert (twice.error_code, twice.error_message) == (
        KafkaError.INVALID_REQUEST,
        "Error due to duplicate config keys",
    )
    alter(node.admin, "1", set_("num.partitions", "5"), validate=True)  # checked, not applied
    assert node.engine.broker_configs.num_partitions == 1
    assert describe(node.admin, "1")["num.partitions"].source == ConfigSource.DEFAULT_CONFIG.value


def test_alter_configs_replaces_every_dynamic_config_of_the_resource(node: ServedNode) -> None:
    bootstrap = node.server.bootstrap
    alter_default(bootstrap, ("num.partitions", SET, "4"), ("compression.type", SET, "zstd"))
    alter_default(bootstrap, ("log.retention.bytes", SET, "1000"), legacy=True)
    assert default_resource(bootstrap) == {"log.retention.bytes": ("1000", DYNAMIC_DEFAULT)}
    assert node.engine.broker_configs.num_partitions == 1
    assert node.engine.topic_defaults["retention.bytes"] == "1000"


def test_dynamic_configs_survive_a_restart_on_the_same_storage(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        [created] = admin.create_topics([NewTopic("kept", 1)]).values()
        created.result(TIMEOUT)
        alter_default(server.bootstrap, ("log.retention.bytes", SET, "123456"))
        alter(admin, "1", set_("message.max.bytes", "2000000"))
        assert server.stop() == 0
        server.start()
        admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        broker = describe(admin, "1")
        assert (broker["log.retention.bytes"].value, broker["log.retention.bytes"].source) == (
            "123456",
            DYNAMIC_DEFAULT,
        )
        assert broker["message.max.bytes"].source == DYNAMIC_BROKER
        topic = describe(admin, "kept", ResourceType.TOPIC)
        assert (topic["max.message.bytes"].value, topic["max.message.bytes"].source) == (
            "2000000",
            DYNAMIC_BROKER,
        )
    finally:
        server.end_at_teardown(graceful=False)


def test_append_and_subtract_act_on_the_resources_own_list(node: ServedNode) -> None:
    bootstrap = node.server.bootstrap
    append, subtract = 2, 3
    alter_default(bootstrap, ("log.cleanup.policy", append, "compact"))
    assert default_resource(bootstrap)["log.cleanup.policy"] == ("delete,compact", DYNAMIC_DEFAULT)
    node.engine.create_topic("both", 1)
    assert node.engine.topic_config("both").compact
    alter_default(bootstrap, ("log.cleanup.policy", subtract, "delete"))
    assert not node.engine.topic_config("both").delete
    refused = alter_raw(bootstrap, BROKER, "", ("num.partitions", append, "2"))
    assert (refused.error_code, refused.error_message) == (
        KafkaError.INVALID_REQUEST,
        "Config value append is not allowed for config key: num.partitions",
    )


def test_the_broker_resource_tells_clients_how_long_a_session_lasts(tmp_path: Path) -> None:
    # librdkafka's 0142_reauthentication learns the session lifetime it must
    # reauthenticate within from this config, as Kafka lists it (KIP-368)
    opened = engine.open(tmp_path / "node", f"file://{tmp_path / 'bucket'}")
    try:
        config = ServerConfig(connections_max_reauth_ms=10000)
        with InProcessServer(opened, config=config) as server:
            admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
            reauth = describe(admin, "1")["connections.max.reauth.ms"]
            assert (reauth.value, reauth.source) == (
                "10000",
                ConfigSource.STATIC_BROKER_CONFIG.value,
            )
            assert reauth.is_read_only
        with InProcessServer(opened) as server:
            admin = AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
            unset = describe(admin, "1")["connections.max.reauth.ms"]
            assert unset.value == "0"  # Kafka's default: sessions never expire
    finally:
        opened.close()


@pytest.mark.parametrize("kind", [TOPIC, BROKER], ids=["topic", "broker"])
def test_an_unknown_operation_is_an_invalid_request(node: ServedNode, kind: int) -> None:
    """Kafka's ControllerApis and ConfigAdminManager answer an operation
    code that is none of SET, DELETE, APPEND, SUBTRACT INVALID_REQUEST,
    whatever the resource, and change nothing of it."""
    node.engine.create_topic("orders", 1)
    name = "orders" if kind == TOPIC else "1"
    key = "retention.ms" if kind == TOPIC else "num.partitions"
    response = alter_raw(node.server.bootstrap, kind, name, (key, SET, "7"), (key + "x", 4, "1"))
    assert (response.error_code, response.error_message) == (
        KafkaError.INVALID_REQUEST,
        "Unknown operations type 4",
    )
    assert node.engine.topic_config("orders").get("retention.ms") != "7"
    assert node.engine.broker_configs.num_partitions == 1


def test_a_request_altering_several_resources_is_written_all_or_nothing(
    node: ServedNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's controller commits one IncrementalAlterConfigs' records as
    one atomic batch: a store failure while they are written leaves none of
    the topics' and broker's changes in force (each answered with it), and a
    resource refused on its own stays refused."""
    node.engine.create_topic("first", 1)
    node.engine.create_topic("second", 1)
    catalog = node.engine.catalog
    fail_next_catalog_write(monkeypatch, catalog)
    request = sets_one_config_each(
        [
            (TOPIC, "first", "retention.ms", "1000"),
            (TOPIC, "missing", "retention.ms", "1000"),
            (BROKER, "1", "num.partitions", "3"),
            (TOPIC, "second", "retention.ms", "2000"),
        ]
    )
    storage = KafkaError.KAFKA_STORAGE_ERROR
    with Wire(node.server.bootstrap) as wire:
        failed = [r.error_code for r in wire.request(request).responses]
        assert failed == [storage, KafkaError.UNKNOWN_TOPIC_OR_PART, storage, storage]
        assert node.engine.topic_config("first").overrides == {}
        assert node.engine.topic_config("second").overrides == {}
        assert node.engine.broker_configs.num_partitions == 1
        again = [r.error_code for r in wire.request(request).responses]
    assert again == [0, KafkaError.UNKNOWN_TOPIC_OR_PART, 0, 0]
    assert node.engine.topic_config("first").overrides == {"retention.ms": "1000"}
    assert node.engine.topic_config("second").overrides == {"retention.ms": "2000"}
    assert node.engine.broker_configs.num_partitions == 3


def test_a_topic_deleted_while_the_request_is_checked_is_refused_alone(
    node: ServedNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's controller checks and commits a request in one step: a topic
    is there for both or for neither. Here the resources are checked before
    they are written together; a topic deleted in between is answered
    UNKNOWN_TOPIC_OR_PARTITION, and the request's other resources are
    written without it, not refused with its error."""
    opened = node.engine
    opened.create_topic("kept", 1)
    opened.create_topic("deleted", 1)
    checked = opened.alter_configs

    def delete_once_checked(name: str, *args: Any, **kwargs: Any) -> None:
        checked(name, *args, **kwargs)
        if name == "deleted":
            opened.delete_topic("deleted")

    monkeypatch.setattr(opened, "alter_configs", delete_once_checked)
    request = sets_one_config_each(
        [
            (TOPIC, "deleted", "retention.ms", "1000"),
            (TOPIC, "kept", "retention.ms", "2000"),
            (BROKER, "1", "num.partitions", "3"),
        ]
    )
    with Wire(node.server.bootstrap) as wire:
        answered = [r.error_code for r in wire.request(request).responses]
    assert answered == [KafkaError.UNKNOWN_TOPIC_OR_PART, 0, 0]
    assert opened.topic_config("kept").overrides == {"retention.ms": "2000"}
    assert opened.broker_configs.num_partitions == 3


def sets_one_config_each(rows: list[tuple[int, str, str, str]]) -> Any:
    """An IncrementalAlterConfigs v1 request SETting one config of each
    resource: rows of (resource type, name, key, value)."""
    return build(
        load_request_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1),
        resources=[
            {
                "resource_type": kind,
                "resource_name": name,
                "configs": [{"name": key, "config_operation": SET, "value": value}],
            }
            for kind, name, key, value in rows
        ],
    )
