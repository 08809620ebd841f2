"""GROUP config resources (KIP-848) through confluent-kafka's AdminClient
against ``tidelog serve``: DescribeConfigs lists a group's configs with
their source (the broker's DEFAULT, or the group's GROUP_CONFIG),
IncrementalAlterConfigs sets and deletes them, refuses values out of the
broker's bounds with INVALID_CONFIG, and what it sets survives a restart."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

from tests.server.configured_servers import server_fixtures
from tests.server.conftest import ServerProcess, quiet_librdkafka

TIMEOUT = 30.0
"""Seconds any one admin call may take."""
SESSION = "consumer.session.timeout.ms"
INTERVAL = "consumer.heartbeat.interval.ms"

SERVER_CONFIG = """
[engine]
group_consumer_session_timeout_ms = 3000
group_consumer_heartbeat_interval_ms = 500
group_consumer_min_session_timeout_ms = 1000
group_consumer_max_session_timeout_ms = 10000
group_consumer_min_heartbeat_interval_ms = 100
group_consumer_max_heartbeat_interval_ms = 2000
"""


server, own_server = server_fixtures(SERVER_CONFIG, "group-configs")


def admin(server: ServerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})


def describe(client: AdminClient, group: str) -> dict[str, tuple[str, Any]]:
    resource = ConfigResource(ResourceType.GROUP, group)
    entries = client.describe_configs([resource])[resource].result(TIMEOUT)
    return {name: (entry.value, entry.source) for name, entry in entries.items()}


def alter(client: AdminClient, group: str, *entries: ConfigEntry) -> None:
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=list(entries))
    client.incremental_alter_configs([resource])[resource].result(TIMEOUT)


def test_a_groups_configs_are_described_altered_and_kept(own_server: ServerProcess) -> None:
    server = own_server
    client = admin(server)
    default = ConfigSource.DEFAULT_CONFIG.value
    assert describe(client, "orders-app") == {
        SESSION: ("3000", default),
        INTERVAL: ("500", default),
    }

    alter(
        client,
        "orders-app",
        ConfigEntry(SESSION, "6000", incremental_operation=AlterConfigOpType.SET),
    )
    alter(
        client,
        "orders-app",
        ConfigEntry(INTERVAL, "250", incremental_operation=AlterConfigOpType.SET),
    )
    group = ConfigSource.GROUP_CONFIG.value
    assert describe(client, "orders-app") == {SESSION: ("6000", group), INTERVAL: ("250", group)}
    assert describe(client, "other-app") == {SESSION: ("3000", default), INTERVAL: ("500", default)}

    alter(
        client,
        "orders-app",
        ConfigEntry(INTERVAL, None, incremental_operation=AlterConfigOpType.DELETE),
    )
    assert describe(client, "orders-app") == {SESSION: ("6000", group), INTERVAL: ("500", default)}

    assert server.stop() == 0, server.log()
    server.start()
    client = admin(server)
    assert describe(client, "orders-app") == {SESSION: ("6000", group), INTERVAL: ("500", default)}


@pytest.mark.parametrize(
    ("name", "value", "operation"),
    [
        (SESSION, "999", AlterConfigOpType.SET),  # below group.consumer.min.session.timeout.ms
        (SESSION, "10001", AlterConfigOpType.SET),  # above the max
        (INTERVAL, "2001", AlterConfigOpType.SET),  # above group.consumer.max.heartbeat.interval.ms
        (INTERVAL, "3000", AlterConfigOpType.SET),  # not below the session timeout
        (SESSION, "soon", AlterConfigOpType.SET),
        ("consumer.assignors", "range", AlterConfigOpType.SET),
        (SESSION, "4000", AlterConfigOpType.APPEND),  # not a list
    ],
)
def test_a_group_config_out_of_bounds_is_invalid_config(
    server: ServerProcess, name: str, value: str, operation: AlterConfigOpType
) -> None:
    client = admin(server)
    with pytest.raises(KafkaException) as raised:
        alter(client, "orders-app", ConfigEntry(name, value, incremental_operation=operation))
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    default = ConfigSource.DEFAULT_CONFIG.value
    assert describe(client, "orders-app") == {
        SESSION: ("3000", default),
        INTERVAL: ("500", default),
    }
