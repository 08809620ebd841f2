"""GROUP config resources (KIP-848, ConfigResource type 32) in
DescribeConfigs and IncrementalAlterConfigs: a group's own
consumer.session.timeout.ms and consumer.heartbeat.interval.ms, kept by
the group coordinator (engine/groups/group_configs.py). configs.py
dispatches a GROUP resource here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from engine.config import ConfigEntry
from engine.errors import EngineError, InvalidConfig, error_code
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext, error_message

GROUP = 32

WRITE_TIMEOUT_S = 30.0
"""How long the answer waits for the configs to be durable (a WAL write,
as a topic's configs are written in the request too)."""

# IncrementalAlterConfigs operations.
_SET, _DELETE = 0, 1


class _GroupConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config_operation(self) -> int: ...
    @property
    def value(self) -> str | None: ...


class _GroupResource(Protocol):
    @property
    def resource_name(self) -> str: ...
    @property
    def configs(self) -> Sequence[_GroupConfig]: ...


def describe_group(context: RequestContext, group_id: str) -> list[ConfigEntry]:
    return context.engine.groups.describe_group_configs(group_id)


def alter_group(
    context: RequestContext, resource: _GroupResource, validate_only: bool
) -> tuple[KafkaCode, str | None]:
    """(error code, message) of one GROUP resource of IncrementalAlterConfigs:
    SET and DELETE; APPEND and SUBTRACT are for lists, which no group
    config is (INVALID_CONFIG, as Kafka answers)."""
    try:
        changes: dict[str, str | None] = {}
        for config in resource.configs:
            if config.config_operation == _SET:
                changes[config.name] = config.value
            elif config.config_operation == _DELETE:
                changes[config.name] = None
            else:
                raise InvalidConfig(
                    config.name,
                    config.value,
                    f"operation {config.config_operation} is only for list configs",
                )
        context.engine.groups.alter_group_configs(
            resource.resource_name, changes, validate_only
        ).result(WRITE_TIMEOUT_S)
    except EngineError as error:
        return error_code(error), error_message(error)
    except TimeoutError:
        return KafkaCode.REQUEST_TIMED_OUT, "storing the group's configs took too long"
    return KafkaCode.NONE, None
