"""The BROKER_LOGGER config resource through kafka-python's admin client
(librdkafka has no such resource type): DescribeConfigs lists the
process's loggers with Kafka's level names, IncrementalAlterConfigs SET and
DELETE change a level at once, and what Kafka refuses is refused with
Kafka's codes and words. Levels are the process's, so each test puts back
the ones it found."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

import engine
from engine.server import broker_loggers
from tests.server.in_process import InProcessServer


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[KafkaAdminClient]:
    saved = {name: broker_loggers.logger(name).level for name in broker_loggers.logger_names()}
    opened = engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket"))
    server = InProcessServer(opened)
    client = KafkaAdminClient(bootstrap_servers=server.bootstrap)
    try:
        yield client
    finally:
        client.close()
        server.stop()
        opened.close()
        for name, level in saved.items():
            broker_loggers.logger(name).setLevel(level)


def loggers(admin: KafkaAdminClient, name: str = "1") -> dict[str, Any]:
    resource = ConfigResource(ConfigResourceType.BROKER_LOGGER, name)
    described = admin.describe_configs([resource], config_filter="all")
    result: dict[str, Any] = described["broker_logger"][name]
    return result


def alter(admin: KafkaAdminClient, configs: dict[str, Any], *, incremental: bool = True) -> str:
    resource = ConfigResource(ConfigResourceType.BROKER_LOGGER, "1", configs=configs)
    result = admin.alter_configs([resource], raise_on_unknown=False, incremental=incremental)
    outcome: str = result["broker_logger"]["1"]
    return outcome


def test_the_loggers_of_the_code_are_listed_with_their_levels(admin: KafkaAdminClient) -> None:
    logging.getLogger("tidelog.wal").setLevel(logging.ERROR)
    listed = loggers(admin)
    assert {"root", "tidelog", "tidelog.engine", "tidelog.wal", "tidelog.server"} <= set(listed)
    assert "tidelog.s3stream" in listed
    assert listed["tidelog.wal"]["value"] == "ERROR"
    assert listed["tidelog.wal"]["config_source"] == "DYNAMIC_BROKER_LOGGER_CONFIG"
    assert not listed["tidelog.wal"]["read_only"]
    assert set(entry["value"] for entry in listed.values()) <= set(broker_loggers.LEVELS)


def test_set_and_delete_change_a_level_at_once(admin: KafkaAdminClient) -> None:
    wal = logging.getLogger("tidelog.wal")
    assert alter(admin, {"tidelog.wal": "TRACE"}) == "OK"
    assert wal.level == broker_loggers.TRACE
    assert loggers(admin)["tidelog.wal"]["value"] == "TRACE"
    assert alter(admin, {"tidelog.wal": "WARN"}) == "OK"
    assert wal.level == logging.WARNING
    logging.getLogger("tidelog").setLevel(logging.INFO)
    assert alter(admin, {"tidelog.wal": ("DELETE", None)}) == "OK"
    assert wal.level == logging.NOTSET  # its parent's again
    assert loggers(admin)["tidelog.wal"]["value"] == "INFO"


def test_validate_only_changes_nothing(admin: KafkaAdminClient) -> None:
    wal = logging.getLogger("tidelog.wal")
    before = wal.level
    resource = ConfigResource(
        ConfigResourceType.BROKER_LOGGER, "1", configs={"tidelog.wal": "DEBUG"}
    )
    result = admin.alter_configs([resource], validate_only=True, raise_on_unknown=False)
    assert result["broker_logger"]["1"] == "OK"
    assert wal.level == before


def test_what_kafka_refuses(admin: KafkaAdminClient) -> None:
    assert alter(admin, {"tidelog.nothing": "DEBUG"}).startswith("[Error 40]")
    bad_level = alter(admin, {"tidelog.wal": "VERBOSE"})
    assert bad_level.startswith("[Error 40]")
    assert "Valid log levels are FATAL, ERROR, WARN, INFO, DEBUG, TRACE" in bad_level
    root = alter(admin, {"root": ("DELETE", None)})
    assert root == (
        "[Error 42] InvalidRequestError: Removing the log level of the root logger is not allowed"
    )
    append = alter(admin, {"tidelog.wal": ("APPEND", "DEBUG")})
    assert append.startswith("[Error 42]")
    assert "APPEND operation is not allowed for the BROKER_LOGGER resource" in append
    legacy = alter(admin, {"tidelog.wal": "DEBUG"}, incremental=False)
    assert legacy == "[Error 42] InvalidRequestError: Unknown resource type 8"
    assert logging.getLogger("tidelog.wal").level != logging.DEBUG


def test_python_levels_take_the_kafka_name_of_what_they_let_through() -> None:
    assert broker_loggers.level_name(logging.WARNING + 5) == "WARN"
    assert broker_loggers.level_name(1) == "TRACE"
    assert broker_loggers.level_name(logging.CRITICAL) == "FATAL"
