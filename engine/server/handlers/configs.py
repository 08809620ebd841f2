"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

Topic configs are the engine's (docs/engine.md lists them). DescribeConfigs
returns every config with its value and source, defaults included, as Kafka
does: clients and UIs read defaults from it. The broker resource describes
the settings this node runs with; they are static (set at start) and so not
alterable over the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from engine.config import CONFIG_DEFS, ConfigEntry, ConfigSource, ConfigType, normalize
from engine.errors import EngineError, InvalidConfig, error_code
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.context import RequestContext, error_message
from engine.server.handlers.group_configs import GROUP, alter_group, describe_group
from engine.server.handlers.registry import handles
from engine.server.handlers.requests import (
    AlterConfigsRequest,
    DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
)

TOPIC = 2
BROKER = 4

_CONFIG_TYPE_CODES = {
    ConfigType.BOOLEAN: 1,
    ConfigType.STRING: 2,
    ConfigType.INT: 3,
    ConfigType.LONG: 5,
    ConfigType.DOUBLE: 6,
    ConfigType.LIST: 7,
}

# IncrementalAlterConfigs operations.
_SET, _DELETE, _APPEND, _SUBTRACT = 0, 1, 2, 3


class _Resource(Protocol):
    """A resource as every version of AlterConfigs and IncrementalAlterConfigs
    names it."""

    @property
    def resource_type(self) -> int: ...
    @property
    def resource_name(self) -> str: ...


class _IncrementalConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config_operation(self) -> int: ...
    @property
    def value(self) -> str | None: ...


class _IncrementalResource(_Resource, Protocol):
    @property
    def configs(self) -> Sequence[_IncrementalConfig]: ...


def config_type_code(entry: ConfigEntry) -> int:
    return _CONFIG_TYPE_CODES[entry.type]


@handles(
    ApiKey.DESCRIBE_CONFIGS,
    1,
    4,
    notes={
        1: "synonyms: topic override, engine default, Kafka default",
        3: "type and documentation",
        4: "flexible encoding",
    },
)
def handle_describe_configs(
    context: RequestContext, request: DescribeConfigsRequest
) -> dict[str, Any]:
    results = []
    synonyms = getattr(request, "include_synonyms", False)
    documentation = getattr(request, "include_documentation", False)
    for resource in request.resources:
        result: dict[str, Any] = {
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "error_code": KafkaCode.NONE,
            "error_message": None,
            "configs": [],
        }
        try:
            entries = _entries(context, resource.resource_type, resource.resource_name)
        except EngineError as error:
            result.update(error_code=error_code(error), error_message=error_message(error))
            results.append(result)
            continue
        keys = resource.configuration_keys
        if keys is not None:
            entries = [e for e in entries if e.name in keys]
        result["configs"] = [_described(e, synonyms, documentation) for e in entries]
        results.append(result)
    return {"throttle_time": 0, "results": results}


def _entries(context: RequestContext, resource_type: int, name: str) -> list[ConfigEntry]:
    if resource_type == TOPIC:
        return context.engine.describe_topic(name).configs
    if resource_type == GROUP:
        return describe_group(context, name)
    if resource_type == BROKER:
        if name not in ("", str(context.server.broker.node_id)):
            node = context.server.broker.node_id
            raise _InvalidRequest(f"this cluster's only broker is node {node}")
        return _broker_entries(context)
    raise _InvalidRequest(f"config resource type {resource_type} is not served here")


class _InvalidRequest(EngineError):
    code = KafkaCode.INVALID_REQUEST


def _broker_entries(context: RequestContext) -> list[ConfigEntry]:
    """The node's own settings that clients look for; topic defaults are
    described on each topic, with their source."""
    engine = context.engine

    def static(name: str, value: object, kind: ConfigType) -> ConfigEntry:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return ConfigEntry(name, text, ConfigSource.STATIC_BROKER, False, True, False, kind)

    return [
        static("broker.id", context.server.broker.node_id, ConfigType.INT),
        static("auto.create.topics.enable", engine.config.auto_create_topics, ConfigType.BOOLEAN),
        static("num.partitions", engine.config.default_partitions, ConfigType.INT),
        static("default.replication.factor", 1, ConfigType.INT),
        static("socket.request.max.bytes", context.server.config.max_request_bytes, ConfigType.INT),
    ]


def _described(entry: ConfigEntry, synonyms: bool, documentation: bool) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": int(entry.source),
        "is_default": entry.is_default,
        "is_sensitive": entry.sensitive,
        "synonyms": [],
        "config_type": config_type_code(entry),
        "documentation": entry.documentation if documentation else None,
    }
    if synonyms:
        described["synonyms"] = [
            {"name": entry.name, "value": entry.value, "source": int(entry.source)}
        ]
    return described


@handles(
    ApiKey.ALTER_CONFIGS,
    0,
    2,
    notes={
        0: "replaces a topic's overrides",
        2: "flexible encoding",
    },
)
def handle_alter_configs(context: RequestContext, request: AlterConfigsRequest) -> dict[str, Any]:
    """Replaces a topic's overrides with the given set (configs left out
    return to their defaults)."""
    responses = []
    for resource in request.resources:
        changes = {c.name: c.value for c in resource.configs}
        responses.append(
            _alter(
                context, resource, changes, incremental=False, validate_only=request.validate_only
            )
        )
    return {"throttle_time": 0, "responses": responses}


@handles(
    ApiKey.INCREMENTAL_ALTER_CONFIGS,
    0,
    1,
    notes={
        0: "SET, DELETE, APPEND, SUBTRACT",
        1: "flexible encoding",
    },
)
def handle_incremental_alter_configs(
    context: RequestContext, request: IncrementalAlterConfigsRequest
) -> dict[str, Any]:
    responses = []
    for resource in request.resources:
        if resource.resource_type == GROUP:
            code, message = alter_group(context, resource, request.validate_only)
            responses.append(_alter_result(resource, code, message))
            continue
        try:
            changes = _incremental_changes(context, resource)
        except EngineError as error:
            responses.append(_alter_result(resource, error_code(error), error_message(error)))
            continue
        responses.append(
            _alter(
                context, resource, changes, incremental=True, validate_only=request.validate_only
            )
        )
    return {"throttle_time": 0, "responses": responses}


def _incremental_changes(
    context: RequestContext, resource: _IncrementalResource
) -> dict[str, str | None]:
    if resource.resource_type != TOPIC:
        return {}
    current = context.engine.topic_config(resource.resource_name)
    changes: dict[str, str | None] = {}
    for config in resource.configs:
        operation = config.config_operation
        if operation == _SET:
            changes[config.name] = config.value
        elif operation == _DELETE:
            changes[config.name] = None
        elif operation in (_APPEND, _SUBTRACT):
            definition = CONFIG_DEFS.get(config.name)
            if definition is None or definition.type is not ConfigType.LIST:
                raise InvalidConfig(config.name, config.value, "not a list: it has no items")
            items = [i for i in current.get(config.name).split(",") if i]
            given = [i for i in normalize(config.name, config.value or "").split(",") if i]
            if operation == _APPEND:
                items += [i for i in given if i not in items]
            else:
                items = [i for i in items if i not in given]
            changes[config.name] = ",".join(items)
        else:
            raise InvalidConfig(config.name, config.value, f"unknown operation {operation}")
    return changes


def _alter(
    context: RequestContext,
    resource: _Resource,
    changes: dict[str, str | None],
    *,
    incremental: bool,
    validate_only: bool,
) -> dict[str, Any]:
    if resource.resource_type != TOPIC:
        code = KafkaCode.INVALID_REQUEST
        return _alter_result(resource, code, "only topic configs can be altered on this server")
    try:
        context.engine.alter_configs(
            resource.resource_name, changes, incremental=incremental, validate_only=validate_only
        )
    except EngineError as error:
        return _alter_result(resource, error_code(error), error_message(error))
    return _alter_result(resource, KafkaCode.NONE, None)


def _alter_result(resource: _Resource, code: int, message: str | None) -> dict[str, Any]:
    return {
        "error_code": code,
        "error_message": message,
        "resource_type": resource.resource_type,
        "resource_name": resource.resource_name,
    }
