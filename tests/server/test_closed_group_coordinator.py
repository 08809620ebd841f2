"""A closed group coordinator answers every group API
COORDINATOR_NOT_AVAILABLE on the wire, as Kafka 4's GroupCoordinatorService
answers while it is not active (docs/design/0109); the process keeps
serving the other APIs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema

import engine
from engine.engine import Engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.engine.conftest import FAST_STORE
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

NOT_AVAILABLE = KafkaCode.COORDINATOR_NOT_AVAILABLE


@pytest.fixture
def closed(tmp_path: Path) -> Iterator[tuple[Engine, InProcessServer]]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600)
    e = engine.open(tmp_path / "data", f"file://{tmp_path / 'objects'}", config)
    e.create_topic("t", 1)
    server = InProcessServer(e)
    e.groups.close()
    try:
        yield e, server
    finally:
        server.stop()
        e.close()


def _ask(server: InProcessServer, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(server.bootstrap) as wire:
        return wire.request(build(load_request_schema(key, version), **values))


def test_every_group_api_of_a_closed_coordinator_is_coordinator_not_available(
    closed: tuple[Engine, InProcessServer],
) -> None:
    _, server = closed
    member = {"group_id": "g", "member_id": "m", "generation_id": 1}
    joined = _ask(
        server, ApiKey.JOIN_GROUP, 5, group_id="g", session_timeout_ms=10_000,
        rebalance_timeout_ms=10_000, member_id="", protocol_type="consumer",
        protocols=[{"name": "range", "metadata": b""}],
    )  # fmt: skip
    assert joined.error_code == NOT_AVAILABLE
    synced = _ask(server, ApiKey.SYNC_GROUP, 5, **member, assignments=[])
    assert synced.error_code == NOT_AVAILABLE
    assert _ask(server, ApiKey.HEARTBEAT, 4, **member).error_code == NOT_AVAILABLE
    left = _ask(server, ApiKey.LEAVE_GROUP, 3, group_id="g", members=[{"member_id": "m"}])
    assert left.error_code == NOT_AVAILABLE
    assert _ask(server, ApiKey.LIST_GROUPS, 4).error_code == NOT_AVAILABLE
    (described,) = _ask(server, ApiKey.DESCRIBE_GROUPS, 5, groups=["g"]).groups
    assert described.error_code == NOT_AVAILABLE
    committed = _ask(
        server, ApiKey.OFFSET_COMMIT, 8, **member,
        topics=[{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1}]}],
    )  # fmt: skip
    assert committed.topics[0].partitions[0].error_code == NOT_AVAILABLE
    fetched = _ask(server, ApiKey.OFFSET_FETCH, 7, group_id="g", topics=None)
    assert fetched.error_code == NOT_AVAILABLE
    heartbeat = _ask(
        server, ApiKey.CONSUMER_GROUP_HEARTBEAT, 0, group_id="g", member_id="",
        member_epoch=0, rebalance_timeout=timedelta(seconds=10),
        subscribed_topic_names=["t"], topic_partitions=[],
    )  # fmt: skip
    assert heartbeat.error_code == NOT_AVAILABLE
    # The node goes on serving what is not the group coordinator's.
    assert _ask(server, ApiKey.METADATA, 12, topics=None).topics[0].error_code == KafkaCode.NONE
