"""A topic's governance configs (masking, schemas, provenance) change only
for a principal with ALTER_CONFIGS (or ALTER) on the cluster, however the
change is asked for: IncrementalAlterConfigs, AlterConfigs, CreateTopics
overriding the broker's defaults, DeleteTopics; validateOnly is refused
alike. Every change goes into the governance history (docs/design/0047)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclOperation,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from kio.index import load_request_schema as request_schema

import engine
from engine.authorization import AuthorizationConfig, ClusterAuthorizationFailed
from engine.governance_gate import GovernanceChangeRefused
from engine.masking.rules import MASKING_RULES
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.engine.helpers_records import batch
from tests.server.test_acls import TIMEOUT, Cluster, _allow, _create
from tests.server.wire import Wire, build

OWNER = "User:team"
"""The topic's admin: every right on the topic, none on the cluster."""
GOVERNOR = "User:governor"
"""ALTER_CONFIGS on the cluster."""
RULES = '[{"path": "/email", "action": "redact"}]'
TOPIC_RIGHTS = (
    AclOperation.ALTER_CONFIGS,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.DESCRIBE,
    AclOperation.CREATE,
    AclOperation.DELETE,
)


def _open(path: Path, auto_create: bool = False, **topic_defaults: str) -> Iterator[Cluster]:
    config = engine.EngineConfig(topic_defaults=topic_defaults, auto_create_topics=auto_create)
    with engine.open(path, config=config) as opened:
        running = Cluster(opened)
        try:
            admin = running.admin()
            _create(
                admin,
                *(_allow(ResourceType.TOPIC, "chats", OWNER, op) for op in TOPIC_RIGHTS),
                _allow(ResourceType.BROKER, "kafka-cluster", GOVERNOR, AclOperation.ALTER_CONFIGS),
                _allow(ResourceType.TOPIC, "chats", GOVERNOR, AclOperation.ALTER_CONFIGS),
                _allow(ResourceType.TOPIC, "chats", GOVERNOR, AclOperation.DELETE),
            )
            yield running
        finally:
            running.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    yield from _open(tmp_path / "node")


def _masked_topic(cluster: Cluster) -> None:
    cluster.engine.create_topic("chats", 1, {MASKING_RULES: RULES, "tidelog.provenance": "stamp"})


def _incremental(
    cluster: Cluster,
    principal: str,
    name: str,
    op: AlterConfigOpType,
    *,
    validate_only: bool = False,
) -> KafkaError | None:
    value = None if op is AlterConfigOpType.DELETE else "none"
    entry = ConfigEntry(name, value, incremental_operation=op)
    resource = ConfigResource("TOPIC", "chats", incremental_configs=[entry])
    admin = cluster.admin(principal)  # kept: a collected client ends its requests
    future = admin.incremental_alter_configs(
        [resource], validate_only=validate_only, request_timeout=TIMEOUT
    )[resource]
    try:
        future.result(TIMEOUT)
    except KafkaException as error:
        refused: KafkaError = error.args[0]
        return refused
    return None


def test_a_topic_admin_cannot_remove_masking_nor_validate_removing_it(cluster: Cluster) -> None:
    _masked_topic(cluster)
    for validate_only in (True, False):
        refused = _incremental(
            cluster, OWNER, MASKING_RULES, AlterConfigOpType.DELETE, validate_only=validate_only
        )
        assert refused is not None
        assert refused.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        assert MASKING_RULES in refused.str()
    assert cluster.engine.topic_config("chats").get(MASKING_RULES) == RULES
    assert [c.action for c in cluster.engine.governance_history("chats")] == ["create"]


def test_a_topic_admin_cannot_stop_stamping_but_may_tune_retention(cluster: Cluster) -> None:
    _masked_topic(cluster)
    refused = _incremental(cluster, OWNER, "tidelog.provenance", AlterConfigOpType.SET)
    assert refused is not None and refused.code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert cluster.engine.topic_config("chats").stamp_provenance
    entry = ConfigEntry("retention.ms", "60000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("TOPIC", "chats", incremental_configs=[entry])
    admin = cluster.admin(OWNER)
    admin.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    assert cluster.engine.topic_config("chats").retention_ms == 60000


def test_legacy_alter_configs_that_leaves_out_the_rules_is_refused(cluster: Cluster) -> None:
    # AlterConfigs replaces every override: one naming only retention.ms
    # removes the masking rules, which is a governance change.
    _masked_topic(cluster)
    request = build(
        request_schema(ApiKey.ALTER_CONFIGS, 2),
        resources=[
            {
                "resource_type": 2,
                "resource_name": "chats",
                "configs": [{"name": "retention.ms", "value": "1000"}],
            }
        ],
        validate_only=False,
    )
    with Wire(cluster.bootstrap(OWNER), timeout=TIMEOUT) as wire:
        (answer,) = wire.request(request).responses
    assert answer.error_code == KafkaCode.CLUSTER_AUTHORIZATION_FAILED
    assert MASKING_RULES in answer.error_message
    assert cluster.engine.topic_config("chats").get(MASKING_RULES) == RULES


def test_the_cluster_right_changes_governance_and_the_history_says_who(cluster: Cluster) -> None:
    _masked_topic(cluster)
    cluster.engine.produce("chats", 0, batch([b"{}"]))
    assert _incremental(cluster, GOVERNOR, "tidelog.provenance", AlterConfigOpType.SET) is None
    assert not cluster.engine.topic_config("chats").stamp_provenance
    change = cluster.engine.governance_history("chats")[-1]
    assert (change.action, change.principal, change.listener) == ("alter", GOVERNOR, "PLAINTEXT")
    assert (change.before["tidelog.provenance"], change.after["tidelog.provenance"]) == (
        "stamp",
        "none",
    )
    assert change.offsets == [1]
    assert cluster.engine.stamped_ranges("chats", 0) == [(0, 1)]


def test_create_topics_cannot_turn_off_what_the_defaults_turn_on(tmp_path: Path) -> None:
    for running in _open(tmp_path / "node", **{"tidelog.provenance": "stamp"}):
        admin = running.admin(OWNER)
        unstamped = NewTopic("chats", 1, config={"tidelog.provenance": "none"})
        for validate_only in (True, False):
            future = admin.create_topics([unstamped], validate_only=validate_only)["chats"]
            with pytest.raises(KafkaException) as refused:
                future.result(TIMEOUT)
            assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
        assert not running.engine.has_topic("chats")
        masked = NewTopic("chats", 1, config={MASKING_RULES: RULES})
        admin.create_topics([masked])["chats"].result(TIMEOUT)  # adds governance: allowed
        (created,) = running.engine.governance_history("chats")
        assert created.principal == OWNER and created.after[MASKING_RULES] == RULES


def test_deleting_a_governed_topic_needs_the_cluster_right(cluster: Cluster) -> None:
    _masked_topic(cluster)
    owner, governor = cluster.admin(OWNER), cluster.admin(GOVERNOR)
    with pytest.raises(KafkaException) as refused:
        owner.delete_topics(["chats"])["chats"].result(TIMEOUT)
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert cluster.engine.has_topic("chats")
    governor.delete_topics(["chats"])["chats"].result(TIMEOUT)
    deleted = cluster.engine.governance_history("chats")[-1]
    assert (deleted.action, deleted.principal, deleted.after) == ("delete", GOVERNOR, {})


def test_the_embedded_api_raises_for_a_principal_without_the_cluster_right(
    tmp_path: Path,
) -> None:
    config = engine.EngineConfig(authorization=AuthorizationConfig())
    with engine.open(tmp_path / "node", config=config) as opened:
        opened.create_topic("chats", 1, {MASKING_RULES: RULES})
        with pytest.raises(GovernanceChangeRefused) as refused:
            opened.alter_configs("chats", {MASKING_RULES: None}, principal=OWNER)
        assert isinstance(refused.value, ClusterAuthorizationFailed)
        assert refused.value.configs == [MASKING_RULES]
        opened.alter_configs("chats", {"retention.ms": 1000}, principal=OWNER)
        opened.alter_configs("chats", {MASKING_RULES: None})  # the Engine's holder may
        assert opened.topic_config("chats").get(MASKING_RULES) == ""


def test_an_auto_created_topic_records_who_asked_for_it(tmp_path: Path) -> None:
    for running in _open(tmp_path / "node", True, **{"tidelog.provenance": "stamp"}):
        request = build(
            request_schema(ApiKey.METADATA, 12),
            topics=[{"name": "chats"}],
            allow_auto_topic_creation=True,
        )
        with Wire(running.bootstrap(OWNER), timeout=TIMEOUT) as wire:
            (described,) = wire.request(request).topics
        assert described.error_code in (KafkaCode.NONE, KafkaCode.LEADER_NOT_AVAILABLE)
        (created,) = running.engine.governance_history("chats")
        assert (created.action, created.principal, created.listener) == (
            "create",
            OWNER,
            "PLAINTEXT",
        )
