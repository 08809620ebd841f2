"""DescribeGroups v6 (KIP-1043) over a real socket: a group that does not
exist is GROUP_ID_NOT_FOUND with Kafka 4.0's message and state Dead, where
v5 describes it as Dead with no error; kafka-python negotiates v6."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kio.index import load_request_schema

from engine.authorization import AUTHORIZED_OPERATIONS_OMITTED
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import GROUP_SERVER_CONFIG, ServerProcess, free_port
from tests.server.request_versions import versions_answered
from tests.server.wire import Wire, build, standalone_commit


class Served(ServerProcess):
    http: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("describe-groups")
    (root / "tidelog.toml").write_text(GROUP_SERVER_CONFIG)
    port = free_port()
    running = Served(
        root / "data",
        args=["--config", str(root / "tidelog.toml"), "--http", f"127.0.0.1:{port}"],
    )
    running.http = f"http://127.0.0.1:{port}"
    running.start()
    yield running
    running.end_at_teardown(graceful=True)


def _describe(server: Served, version: int, *groups: str, **values: Any) -> Any:
    with Wire(server.bootstrap) as wire:
        return wire.request(
            build(
                load_request_schema(ApiKey.DESCRIBE_GROUPS, version),
                groups=list(groups),
                **values,
            )
        )


def test_a_group_that_does_not_exist_is_not_found_from_v6(server: Served) -> None:
    (described,) = _describe(server, 6, "no-such-group").groups
    assert described.error_code == KafkaCode.GROUP_ID_NOT_FOUND
    assert described.error_message == "Group no-such-group not found."
    assert described.group_state == "Dead"
    assert described.members == ()


def test_before_v6_a_group_that_does_not_exist_is_dead_without_an_error(server: Served) -> None:
    for version in (0, 5):
        (described,) = _describe(server, version, "no-such-group").groups
        assert described.error_code == KafkaCode.NONE
        assert described.group_state == "Dead"


def test_a_group_that_exists_is_described_at_v6_without_an_error(server: Served) -> None:
    with Wire(server.bootstrap) as wire:  # the topic, auto-created, then a group's offset
        wire.request(build(load_request_schema(ApiKey.METADATA, 12), topics=[{"name": "v6-t"}]))
        committed = wire.request(standalone_commit("v6-group", {("v6-t", 0): 1}))
    assert committed.topics[0].partitions[0].error_code == KafkaCode.NONE
    (described,) = _describe(server, 6, "v6-group").groups
    assert described.error_code == KafkaCode.NONE
    assert described.error_message is None
    assert described.group_state == "Empty"


def test_only_a_group_described_without_an_error_gets_its_authorized_operations(
    server: Served,
) -> None:
    """As KafkaApis: the operations are filled in for a group answered with
    no error; one answered GROUP_ID_NOT_FOUND (v6) keeps the sentinel."""
    with Wire(server.bootstrap) as wire:
        wire.request(build(load_request_schema(ApiKey.METADATA, 12), topics=[{"name": "ops-t"}]))
        wire.request(standalone_commit("ops-group", {("ops-t", 0): 1}))
    asked = {"include_authorized_operations": True}
    missing, existing = _describe(server, 6, "ops-missing", "ops-group", **asked).groups
    assert missing.error_code == KafkaCode.GROUP_ID_NOT_FOUND
    assert missing.authorized_operations == AUTHORIZED_OPERATIONS_OMITTED
    assert existing.error_code == KafkaCode.NONE
    assert existing.authorized_operations not in (0, AUTHORIZED_OPERATIONS_OMITTED)
    # Before v6 the missing group is described with no error: it gets them.
    (dead,) = _describe(server, 5, "ops-missing", **asked).groups
    assert dead.error_code == KafkaCode.NONE
    assert dead.authorized_operations == existing.authorized_operations


def test_kafka_python_negotiates_v6_and_learns_the_group_is_not_found(server: Served) -> None:
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap, request_timeout_ms=30_000)
    try:
        described = admin.describe_groups(["kafka-python-missing"])["kafka-python-missing"]
    finally:
        admin.close()
    assert described["error"] is not None
    assert "GroupIdNotFound" in described["error"]
    assert "Group kafka-python-missing not found." in described["error"]
    assert max(versions_answered(server.http, "DescribeGroups")) == 6
