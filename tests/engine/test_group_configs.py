"""Group configs (KIP-848 GROUP config resources, engine/groups/group_configs.py):
a group's own consumer.session.timeout.ms and consumer.heartbeat.interval.ms,
validated against the broker's bounds as Kafka's GroupConfig does, durable
across a restart, and timing the group's members from their next
heartbeat (the interval they are told, the session their expiry waits)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.clock import ManualClock
from engine.config import ConfigSource
from engine.errors import InvalidConfig
from engine.groups.config import GroupConfig
from engine.groups.consumer_heartbeat import Heartbeat, HeartbeatResult
from engine.groups.group_configs import (
    CONSUMER_HEARTBEAT_INTERVAL_MS,
    CONSUMER_SESSION_TIMEOUT_MS,
    EmptyGroupName,
    GroupConfigs,
)
from engine.protocol.kafka_code import KafkaCode
from tests.engine.conftest import EngineFactory

TIMEOUT = 10.0
SESSION = CONSUMER_SESSION_TIMEOUT_MS
INTERVAL = CONSUMER_HEARTBEAT_INTERVAL_MS

BOUNDS: dict[str, Any] = {
    "group_consumer_session_timeout_ms": 45_000,
    "group_consumer_heartbeat_interval_ms": 500,
    "group_consumer_min_session_timeout_ms": 1000,
    "group_consumer_max_session_timeout_ms": 60_000,
    "group_consumer_min_heartbeat_interval_ms": 100,
    "group_consumer_max_heartbeat_interval_ms": 15_000,
}


def described(configs: GroupConfigs, group: str = "g") -> dict[str, tuple[str, ConfigSource]]:
    return {e.name: (e.value, e.source) for e in configs.describe(group)}


def test_a_group_has_the_brokers_settings_until_it_has_its_own() -> None:
    configs = GroupConfigs(GroupConfig(**BOUNDS))
    assert described(configs) == {
        SESSION: ("45000", ConfigSource.DEFAULT),
        INTERVAL: ("500", ConfigSource.DEFAULT),
    }
    overrides = configs.altered("g", {SESSION: " 3000"})
    assert overrides == {SESSION: "3000"}
    configs.store("g", overrides)
    assert described(configs) == {
        SESSION: ("3000", ConfigSource.GROUP),
        INTERVAL: ("500", ConfigSource.DEFAULT),
    }
    assert configs.settings("g") == (3000, 500)
    assert configs.settings("other") == (45_000, 500)
    # Removing it returns the group to the broker's setting.
    puts, deletes = configs.store("g", configs.altered("g", {SESSION: None}))
    assert (puts, deletes) == ({}, [("group_config", "g")])
    assert described(configs)[SESSION] == ("45000", ConfigSource.DEFAULT)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({SESSION: "999"}, "greater than or equal to group.consumer.min.session.timeout.ms"),
        ({SESSION: "60001"}, "less than or equal to group.consumer.max.session.timeout.ms"),
        ({INTERVAL: "99"}, "greater than or equal to group.consumer.min.heartbeat.interval.ms"),
        ({INTERVAL: "15001"}, "less than or equal to group.consumer.max.heartbeat.interval.ms"),
        # Each in bounds, but the session must outlast the heartbeat interval.
        ({SESSION: "2000", INTERVAL: "2000"}, "greater than consumer.heartbeat.interval.ms"),
        ({SESSION: "2000", INTERVAL: "3000"}, "greater than consumer.heartbeat.interval.ms"),
        ({SESSION: "ten"}, "not an integer"),
        ({SESSION: "0"}, "at least 1"),
        ({SESSION: str(2**31)}, "at least 1"),
        ({"consumer.assignors": "range"}, "unknown group config"),
    ],
)
def test_a_group_config_out_of_kafkas_bounds_is_invalid(
    changes: dict[str, str], reason: str
) -> None:
    configs = GroupConfigs(GroupConfig(**BOUNDS))
    with pytest.raises(InvalidConfig, match=reason) as raised:
        configs.altered("g", changes)
    assert raised.value.code == KafkaCode.INVALID_CONFIG
    assert described(configs)[SESSION] == ("45000", ConfigSource.DEFAULT)


def test_a_group_resource_needs_a_name() -> None:
    configs = GroupConfigs(GroupConfig(**BOUNDS))
    with pytest.raises(EmptyGroupName) as raised:
        configs.describe("")
    assert raised.value.code == KafkaCode.INVALID_REQUEST
    with pytest.raises(EmptyGroupName):
        configs.altered("", {SESSION: "3000"})


# -- through an engine ---------------------------------------------------------------------


@pytest.fixture
def open_engine(engine_factory: EngineFactory) -> Callable[..., engine.Engine]:
    def make(data_dir: Path, clock: ManualClock | None = None) -> engine.Engine:
        extra = {} if clock is None else {"clock": clock}
        opened = engine_factory(data_dir=data_dir, groups=engine.GroupConfig(**BOUNDS), **extra)
        if "orders" not in opened.list_topics():
            opened.create_topic("orders", 2)
        return opened

    return make


def beat(opened: engine.Engine, member_id: str, epoch: int, **fields: Any) -> HeartbeatResult:
    request = Heartbeat("g", member_id, epoch, **fields)
    result = opened.groups.consumer_group_heartbeat(request).result(TIMEOUT)
    assert isinstance(result, HeartbeatResult)
    return result


def join(opened: engine.Engine, member_id: str) -> HeartbeatResult:
    return beat(
        opened,
        member_id,
        0,
        rebalance_timeout_ms=5000,
        subscribed_topic_names=["orders"],
        owned_partitions={},
    )


def test_the_next_heartbeat_is_timed_by_the_groups_configs(
    open_engine: Callable[..., engine.Engine], tmp_path: Path
) -> None:
    clock = ManualClock()
    opened = open_engine(tmp_path / "node", clock)
    groups = opened.groups
    assert join(opened, "a").heartbeat_interval_ms == 500
    groups.alter_group_configs("g", {INTERVAL: "700", SESSION: "2000"}).result(TIMEOUT)
    assert beat(opened, "a", 1).heartbeat_interval_ms == 700
    # The session it renewed is the group's: 2 s, not the broker's 45 s.
    clock.advance(1.9)
    assert groups.consumer_group_describe(["g"])[0].state == "Stable"
    clock.advance(0.2)
    deadline = time.monotonic() + TIMEOUT
    while groups.consumer_group_describe(["g"])[0].state != "Empty":
        assert time.monotonic() < deadline, "the member outlived the group's session timeout"
        time.sleep(0.01)


def test_validate_only_changes_nothing(
    open_engine: Callable[..., engine.Engine], tmp_path: Path
) -> None:
    groups = open_engine(tmp_path / "node").groups
    groups.alter_group_configs("g", {SESSION: "3000"}, validate_only=True).result(TIMEOUT)
    assert {e.name: e.source for e in groups.describe_group_configs("g")}[SESSION] == (
        ConfigSource.DEFAULT
    )
    with pytest.raises(InvalidConfig):
        groups.alter_group_configs("g", {SESSION: "1"}, validate_only=True)


def test_a_groups_configs_survive_a_restart_and_time_its_loaded_members(
    open_engine: Callable[..., engine.Engine], tmp_path: Path
) -> None:
    data = tmp_path / "node"
    first = open_engine(data)
    join(first, "a")
    first.groups.alter_group_configs("g", {INTERVAL: "900"}).result(TIMEOUT)
    first.groups.alter_group_configs("unborn", {SESSION: "4000"}).result(TIMEOUT)
    first.close()

    second = open_engine(data)
    values = {
        group: {e.name: (e.value, e.source) for e in second.groups.describe_group_configs(group)}
        for group in ("g", "unborn")
    }
    assert values == {
        "g": {SESSION: ("45000", ConfigSource.DEFAULT), INTERVAL: ("900", ConfigSource.GROUP)},
        "unborn": {SESSION: ("4000", ConfigSource.GROUP), INTERVAL: ("500", ConfigSource.DEFAULT)},
    }
    assert beat(second, "a", 1).heartbeat_interval_ms == 900
