"""The engine's broker configs without a server: a dynamic default reaches
every topic without an override at once, and a reopened engine on the same
storage still has it; the precedence and refusals of broker_config.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine.broker_config import BrokerConfigs, ConfigNotDynamic, InvalidBrokerConfig
from engine.config import ConfigSource
from engine.errors import InvalidConfig


def test_a_dynamic_default_reaches_topics_at_once_and_survives_a_reopen(tmp_path: Path) -> None:
    store = "file://" + str(tmp_path / "bucket")
    config = engine.EngineConfig(topic_defaults={"retention.bytes": "5000"})
    with engine.open(tmp_path / "a", store, config) as opened:
        opened.create_topic("plain", 1)
        opened.create_topic("own", 1, configs={"retention.ms": "1000"})
        opened.broker_configs.alter(
            "", {"log.retention.ms": "60000"}, incremental=True, validate_only=False
        )
        assert opened.topic_config("plain").retention_ms == 60_000
        assert opened.topic_config("own").retention_ms == 1000
        assert opened.topic_config("plain").retention_bytes == 5000  # the static default
    with engine.open(tmp_path / "b", store, config) as reopened:
        assert reopened.topic_config("plain").retention_ms == 60_000
        entries = {e.name: e for e in reopened.describe_topic("plain").configs}
        assert entries["retention.ms"].source is ConfigSource.DYNAMIC_DEFAULT_BROKER
        assert entries["retention.bytes"].source is ConfigSource.STATIC_BROKER


def configs() -> tuple[BrokerConfigs, list[tuple[str, dict[str, str | None]]]]:
    written: list[tuple[str, dict[str, str | None]]] = []
    brokers = BrokerConfigs(
        {"num.partitions": "2"},
        {},
        written.extend,
    )
    return brokers, written


def test_the_broker_value_wins_over_the_default_which_wins_over_the_static_one() -> None:
    brokers, written = configs()
    assert brokers.resolved("num.partitions") == ("num.partitions", "2", ConfigSource.STATIC_BROKER)
    brokers.alter("", {"num.partitions": "3"}, incremental=True, validate_only=False)
    brokers.alter("1", {"num.partitions": " 4 "}, incremental=True, validate_only=False)
    assert [(s.value, s.source) for s in brokers.synonyms("num.partitions", "1")] == [
        ("4", ConfigSource.DYNAMIC_BROKER),
        ("3", ConfigSource.DYNAMIC_DEFAULT_BROKER),
        ("2", ConfigSource.STATIC_BROKER),
        ("1", ConfigSource.DEFAULT),
    ]
    assert brokers.num_partitions == 4
    brokers.alter("1", {}, incremental=False, validate_only=False)  # replaces: none left
    assert brokers.num_partitions == 3
    assert written == [
        ("", {"num.partitions": "3"}),
        ("1", {"num.partitions": "4"}),
        ("1", {"num.partitions": None}),
    ]


def test_refusals_write_nothing() -> None:
    brokers, written = configs()
    with pytest.raises(ConfigNotDynamic, match=r"Set\(broker.id, default.replication.factor\)"):
        brokers.alter(
            "1",
            {"default.replication.factor": "2", "broker.id": "2"},
            incremental=True,
            validate_only=False,
        )
    with pytest.raises(InvalidConfig):
        brokers.alter("1", {"log.dirs": "/x"}, incremental=True, validate_only=False)
    with pytest.raises(InvalidBrokerConfig):
        brokers.alter("1", {"log.retention.ms": "soon"}, incremental=True, validate_only=False)
    with pytest.raises(InvalidBrokerConfig):
        brokers.alter("1", {"max.connections": "1_000"}, incremental=True, validate_only=False)
    brokers.alter("1", {"num.partitions": "9"}, incremental=True, validate_only=True)
    assert written == []
    assert brokers.num_partitions == 2
