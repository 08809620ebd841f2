"""Every admin change a server acknowledges survives SIGKILL right after
the answer: ACLs, SCRAM credentials, client quotas, topic and broker
configs, and partitions, each made through a real admin client (raw
requests for quotas, which confluent-kafka does not send) against
``tidelog serve`` in a child process, then read back after the restart."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.test_client_quotas import EXACT, alter, described
from tests.server.wire import Wire

TIMEOUT = 30


def _admin(server: ServerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})


def _set(name: str, value: str) -> ConfigEntry:
    return ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)


def _configs(admin: AdminClient, resource: ConfigResource) -> dict[str, str | None]:
    [future] = admin.describe_configs([resource], request_timeout=TIMEOUT).values()
    return {name: entry.value for name, entry in future.result(TIMEOUT).items()}


def test_each_acknowledged_admin_change_survives_a_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        admin = _admin(server)
        admin.create_topics([NewTopic("ledger", 1)])["ledger"].result(TIMEOUT)
        binding = AclBinding(
            ResourceType.TOPIC,
            "ledger",
            ResourcePatternType.LITERAL,
            "User:auditor",
            "*",
            AclOperation.READ,
            AclPermissionType.ALLOW,
        )
        [created] = admin.create_acls([binding], request_timeout=TIMEOUT).values()
        created.result(TIMEOUT)
        upsert = UserScramCredentialUpsertion(
            "auditor", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"secret", b"salt"
        )
        admin.alter_user_scram_credentials([upsert], request_timeout=TIMEOUT)["auditor"].result(
            TIMEOUT
        )
        with Wire(server.bootstrap) as wire:
            assert alter(wire, [({"user": "auditor"}, {"consumer_byte_rate": 4096.0})]) == [
                (0, None)
            ]
        topic = ConfigResource(
            ResourceType.TOPIC, "ledger", incremental_configs=[_set("retention.ms", "3600000")]
        )
        broker = ConfigResource(
            ResourceType.BROKER, "1", incremental_configs=[_set("message.max.bytes", "2000000")]
        )
        for future in admin.incremental_alter_configs([topic, broker]).values():
            future.result(TIMEOUT)
        grown = admin.create_partitions([NewPartitions("ledger", 3)], request_timeout=TIMEOUT)
        grown["ledger"].result(TIMEOUT)

        server.kill()  # no shutdown: only what was durable when answered is there
        server.start()

        admin = _admin(server)
        everything = AclBindingFilter(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        assert admin.describe_acls(everything).result(TIMEOUT) == [binding]
        [scram] = admin.describe_user_scram_credentials(["auditor"]).values()
        [info] = scram.result(TIMEOUT).scram_credential_infos
        assert (info.mechanism, info.iterations) == (ScramMechanism.SCRAM_SHA_512, 8192)
        with Wire(server.bootstrap) as wire:
            assert described(wire, [("user", EXACT, "auditor")]) == {
                (("user", "auditor"),): {"consumer_byte_rate": 4096.0}
            }
        assert _configs(admin, ConfigResource(ResourceType.TOPIC, "ledger"))["retention.ms"] == (
            "3600000"
        )
        node = _configs(admin, ConfigResource(ResourceType.BROKER, "1"))
        assert node["message.max.bytes"] == "2000000"
        metadata = admin.list_topics("ledger", timeout=TIMEOUT)
        assert len(metadata.topics["ledger"].partitions) == 3
    finally:
        server.kill()
