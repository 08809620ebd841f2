"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.

Each resource type has its own functions, and the handlers only dispatch:
topics (the engine's topic configs, docs/engine.md), the broker (Kafka's
dynamic broker configs, engine/broker_config.py: the resource named by this
node's id, or "" for the cluster's defaults) and BROKER_LOGGER (log levels,
engine/server/broker_loggers.py). DescribeConfigs returns every config with
its value and source, defaults included, as Kafka does: clients and UIs
read defaults from it. Checks that Kafka's ConfigAdminManager makes of every
resource (named once, each config once, no null value to set) come first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from engine.broker_config import BROKER_CONFIG_DEFS, Synonym
from engine.config import CONFIG_DEFS, ConfigEntry, ConfigSource, ConfigType, normalize
from engine.errors import EngineError, InvalidConfig, UnknownTopic, error_code
from engine.masking.rules import MASKING_APPLIES, MASKING_APPLIES_DOC
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize, broker_loggers, masked_fetch
from engine.server.authorizer import AclOperation
from engine.server.context import Body, RequestContext, Response, error_message, off_loop
from engine.server.handlers.common import MAX_RECORDS_PER_REQUEST, TOO_LARGE_BATCH_OPERATION
from engine.server.handlers.group_configs import GROUP, alter_group, describe_group
from engine.server.handlers.registry import handles, handles_off_loop

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import (
        AlterConfigsRequest,
        DescribeConfigsRequest,
        IncrementalAlterConfigsRequest,
    )

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8
DESCRIBE_CONFIGS, ALTER_CONFIGS = AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS

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
_OPERATION_NAMES = {_SET: "SET", _DELETE: "DELETE", _APPEND: "APPEND", _SUBTRACT: "SUBTRACT"}


class _Resource(Protocol):
    """A resource as every version of AlterConfigs and IncrementalAlterConfigs
    names it."""

    @property
    def resource_type(self) -> int: ...
    @property
    def resource_name(self) -> str: ...


class _Config(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str | None: ...


class _LegacyResource(_Resource, Protocol):
    @property
    def configs(self) -> Sequence[_Config]: ...


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


_AlteredResource = TypeVar("_AlteredResource", _LegacyResource, _IncrementalResource)


def config_type_code(entry: ConfigEntry) -> int:
    return _CONFIG_TYPE_CODES[entry.type]


@handles(
    ApiKey.DESCRIBE_CONFIGS,
    1,
    4,
    notes={
        1: "synonyms: topic override, dynamic broker, dynamic default, static and default values",
        3: "type and documentation",
        4: "flexible encoding",
    },
)
def handle_describe_configs(context: RequestContext, request: DescribeConfigsRequest) -> Response:
    # Each resource once, however often named: a topic's description is
    # some fifty entries with their synonyms and documentation (Kafka
    # answers every copy; its clients never ask twice), and a request of
    # 14 KB naming one topic 2,000 times took the event loop a second.
    first: dict[tuple[int, str, tuple[str, ...] | None], Any] = {}
    for resource in request.resources:
        key = (resource.resource_type, resource.resource_name, resource.configuration_keys)
        first.setdefault(key, resource)
    resources = list(first.values())
    if len(resources) > _MANY_RESOURCES:
        return off_loop(context, lambda: _describe_configs(context, request, resources))
    return _describe_configs(context, request, resources)


def _describe_configs(
    context: RequestContext, request: DescribeConfigsRequest, resources: Sequence[Any]
) -> Body:
    results = []
    synonyms = getattr(request, "include_synonyms", False)
    documentation = getattr(request, "include_documentation", False)
    for resource in resources:
        result: dict[str, Any] = {
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "error_code": KafkaCode.NONE,
            "error_message": None,
            "configs": [],
        }
        keys = resource.configuration_keys
        denied = authorize.config_refused(
            context, DESCRIBE_CONFIGS, resource.resource_type, resource.resource_name
        )
        if denied is not None:
            result["error_code"] = denied
            results.append(result)
            continue
        try:
            described = _described_resource(
                context, resource.resource_type, resource.resource_name, synonyms, documentation
            )
        except EngineError as error:
            result.update(error_code=error_code(error), error_message=error_message(error))
            results.append(result)
            continue
        if keys is not None:
            described = [d for d in described if d["name"] in keys]
        result["configs"] = described
        results.append(result)
    return {"throttle_time": 0, "results": results}


def _described_resource(
    context: RequestContext, resource_type: int, name: str, synonyms: bool, documentation: bool
) -> list[dict[str, Any]]:
    if resource_type == TOPIC:
        return _described_topic(context, name, synonyms, documentation)
    if resource_type == GROUP:
        return [_described(entry, [], documentation) for entry in describe_group(context, name)]
    if resource_type == BROKER:
        return _described_broker(context, name, synonyms, documentation)
    if resource_type == BROKER_LOGGER:
        return _described_loggers(context, name)
    raise _InvalidRequest(f"config resource type {resource_type} is not served here")


class _InvalidRequest(EngineError):
    code = KafkaCode.INVALID_REQUEST


_MANY_RESOURCES = 16
"""Past this many resources, a DescribeConfigs is answered on the admin
thread (context.off_loop): a topic's description takes about half a
millisecond, which the event loop owes every other connection."""


# -- topics --------------------------------------------------------------------------


def _described_topic(
    context: RequestContext, name: str, synonyms: bool, documentation: bool
) -> list[dict[str, Any]]:
    config = context.engine.topic_config(name)
    brokers = context.engine.broker_configs
    described = []
    for entry in config.describe():
        chain: list[Synonym] = []
        if synonyms:
            if entry.source is ConfigSource.TOPIC:
                chain.append(Synonym(entry.name, entry.value, ConfigSource.TOPIC))
            inherited = brokers.topic_synonyms(entry.name)
            chain += inherited
            if not inherited or inherited[-1].source is not ConfigSource.DEFAULT:
                default = CONFIG_DEFS[entry.name].default
                chain.append(Synonym(entry.name, default, ConfigSource.DEFAULT))
        described.append(_described(entry, chain, documentation))
    if context.engine.masking(name) is not None:
        described.append(_masking_applies(context, name, documentation))
    return described


def _masking_applies(context: RequestContext, name: str, documentation: bool) -> dict[str, Any]:
    """Whether the asking principal reads the masked topic masked: read
    only, and the asker's own answer, so that a client copying the topic
    (the mirror, engine/mirror/masked.py) can tell masks from data. Only
    a topic with masking rules has it."""
    applies = masked_fetch.masking_for(context, name) is not None
    return _described(masking_applies_entry(applies), [], documentation)


def masking_applies_entry(applies: bool) -> ConfigEntry:
    """The tidelog.masking.applies entry: no config sets it, so its source
    is DEFAULT, from which a client derives is_default (DescribeConfigs
    v1 and later carry no is_default)."""
    return ConfigEntry(
        MASKING_APPLIES,
        "true" if applies else "false",
        ConfigSource.DEFAULT,
        True,
        read_only=True,
        type=ConfigType.BOOLEAN,
        documentation=MASKING_APPLIES_DOC,
    )


# -- the broker ----------------------------------------------------------------------


def _described_broker(
    context: RequestContext, name: str, synonyms: bool, documentation: bool
) -> list[dict[str, Any]]:
    """This broker's configs, or for "" the cluster's dynamic defaults set
    (Kafka's ConfigHelper.describeConfigs)."""
    brokers = context.engine.broker_configs
    brokers.check_scope(name)
    return [
        _described(entry, chain if synonyms else [], documentation)
        for entry, chain in brokers.describe(name)
    ]


def _described(entry: ConfigEntry, synonyms: list[Synonym], documentation: bool) -> dict[str, Any]:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": int(entry.source),
        "is_sensitive": entry.sensitive,
        "synonyms": [{"name": s.name, "value": s.value, "source": int(s.source)} for s in synonyms],
        "config_type": config_type_code(entry),
        "documentation": entry.documentation if documentation else None,
    }


def _broker_changes(
    context: RequestContext, resource: _IncrementalResource
) -> dict[str, str | None]:
    """IncrementalAlterConfigs' operations on a broker resource as values
    to set (None: to remove); APPEND and SUBTRACT act on the resource's own
    dynamic value, else the default (Kafka's prepareIncrementalConfigs)."""
    brokers = context.engine.broker_configs
    changes: dict[str, str | None] = {}
    for config in resource.configs:
        operation = config.config_operation
        if operation == _SET:
            changes[config.name] = config.value
        elif operation == _DELETE:
            changes[config.name] = None
        elif operation in (_APPEND, _SUBTRACT):
            definition = BROKER_CONFIG_DEFS.get(config.name)
            if definition is None or definition.type is not ConfigType.LIST:
                verb = "append" if operation == _APPEND else "subtract"
                raise _InvalidRequest(
                    f"Config value {verb} is not allowed for config key: {config.name}"
                )
            own = brokers.dynamic(resource.resource_name).get(config.name, definition.default)
            items = [i for i in own.split(",") if i]
            given = [i.strip() for i in (config.value or "").split(",") if i.strip()]
            if operation == _APPEND:
                items += [i for i in given if i not in items]
            else:
                items = [i for i in items if i not in given]
            changes[config.name] = ",".join(items)
        else:
            raise _InvalidRequest(f"Unknown operations type {operation}")
    return changes


# -- loggers -------------------------------------------------------------------------


def _check_logger_resource(context: RequestContext, name: str) -> None:
    if name == "":
        raise _InvalidRequest("Broker id must not be empty")
    context.engine.broker_configs.check_scope(name)


def _described_loggers(context: RequestContext, name: str) -> list[dict[str, Any]]:
    _check_logger_resource(context, name)
    return [
        {
            "name": logger,
            "value": level,
            "read_only": False,
            "config_source": int(ConfigSource.BROKER_LOGGER),
            "is_sensitive": False,
            "synonyms": [],
            "config_type": 0,  # UNKNOWN, as Kafka leaves it for loggers
            "documentation": None,
        }
        for logger, level in broker_loggers.levels().items()
    ]


def _alter_loggers(
    context: RequestContext, resource: _IncrementalResource, validate_only: bool
) -> None:
    """Checks every operation first, then applies them all (Kafka's
    ConfigAdminManager.preprocess for BROKER_LOGGER)."""
    _check_logger_resource(context, resource.resource_name)
    operations = []
    for config in resource.configs:
        operation = _OPERATION_NAMES.get(config.config_operation, str(config.config_operation))
        broker_loggers.check(config.name, operation, config.value)
        operations.append((config.name, None if operation == "DELETE" else config.value))
    if not validate_only:
        for name, level in operations:
            broker_loggers.set_level(name, level)


# -- alterations ---------------------------------------------------------------------


def _refused_resources(
    resources: Sequence[_LegacyResource | _IncrementalResource],
) -> dict[int, str]:
    """Why a resource is refused before anything is done, by its index in
    the request: named twice, a config named twice, an unknown operation, a
    null value to set."""
    refused: dict[int, str] = {}
    seen: dict[tuple[int, str], int] = {}
    for index, resource in enumerate(resources):
        key = (resource.resource_type, resource.resource_name)
        if key in seen:
            refused[seen[key]] = refused[index] = "Each resource must appear at most once."
        seen.setdefault(key, index)
    for index, resource in enumerate(resources):
        if index in refused:
            continue
        names = [c.name for c in resource.configs]
        if len(set(names)) != len(names):
            refused[index] = "Error due to duplicate config keys"
            continue
        # Kafka's ControllerApis and ConfigAdminManager: an operation code
        # that is none of Kafka's is a malformed request, whatever the resource.
        unknown = [
            getattr(c, "config_operation", _SET)
            for c in resource.configs
            if getattr(c, "config_operation", _SET) not in _OPERATION_NAMES
        ]
        if unknown:
            refused[index] = f"Unknown operations type {unknown[0]}"
            continue
        nulls = [
            c.name
            for c in resource.configs
            if c.value is None and getattr(c, "config_operation", _SET) != _DELETE
        ]
        if nulls:
            refused[index] = "Null value not supported for : " + ", ".join(nulls)
    return refused


@handles_off_loop(
    ApiKey.ALTER_CONFIGS,
    0,
    2,
    notes={
        0: "replaces a topic's overrides, or a broker resource's dynamic configs",
        2: "flexible encoding",
    },
)
def handle_alter_configs(context: RequestContext, request: AlterConfigsRequest) -> dict[str, Any]:
    """Replaces a resource's configs with the given set (configs left out
    return to their defaults). On the admin thread, as IncrementalAlterConfigs:
    each resource's change is a durable write (2,000 topics altered in one
    request held the event loop for a second)."""

    def replace(resource: _LegacyResource) -> dict[str, Any] | _Checked:
        changes = {c.name: c.value for c in resource.configs}
        return _checked(context, resource, changes, incremental=False)

    resources: Sequence[_LegacyResource] = request.resources
    return _alter_each(context, resources, replace, request.validate_only)


@handles_off_loop(
    ApiKey.INCREMENTAL_ALTER_CONFIGS,
    0,
    1,
    notes={
        0: "SET, DELETE, APPEND, SUBTRACT; topics, the broker, and loggers (BROKER_LOGGER)",
        1: "flexible encoding",
    },
)
def handle_incremental_alter_configs(
    context: RequestContext, request: IncrementalAlterConfigsRequest
) -> dict[str, Any]:
    def apply(resource: _IncrementalResource) -> dict[str, Any] | _Checked:
        # Group configs live in the group coordinator's log and log levels
        # in the process, not in the catalog: applied each on its own.
        if resource.resource_type == GROUP:
            code, message = alter_group(context, resource, request.validate_only)
            return _alter_result(resource, code, message)
        try:
            if resource.resource_type == BROKER_LOGGER:
                _alter_loggers(context, resource, request.validate_only)
                return _alter_result(resource, KafkaCode.NONE, None)
            changes = _incremental_changes(context, resource)
        except EngineError as error:
            return _alter_result(resource, error_code(error), error_message(error))
        return _checked(context, resource, changes, incremental=True)

    resources: Sequence[_IncrementalResource] = request.resources
    return _alter_each(context, resources, apply, request.validate_only)


class _Checked(NamedTuple):
    """A topic or broker resource's changes, checked, to be written with
    the request's others."""

    resource: _Resource
    changes: dict[str, str | None]
    incremental: bool


def _alter_each(
    context: RequestContext,
    resources: Sequence[_AlteredResource],
    alter_one: Callable[[_AlteredResource], dict[str, Any] | _Checked],
    validate_only: bool,
) -> dict[str, Any]:
    """The response of both AlterConfigs versions of the request: each
    resource refused as malformed or unauthorized, else checked by
    ``alter_one``; the topics' and broker resources' changes that pass are
    then written as one catalog record (Kafka's controller commits one
    request's config records in one atomic batch): after a store failure
    or a crash none of them is in force, and each is answered with it."""
    denials = [
        authorize.config_refused(context, ALTER_CONFIGS, r.resource_type, r.resource_name)
        for r in resources
    ]
    counted = (r for r, denied in zip(resources, denials, strict=True) if denied is None)
    if sum(max(len(r.configs), 1) for r in counted) > MAX_RECORDS_PER_REQUEST:
        # Kafka's ConfigurationControlManager: a record per config changed,
        # at most MAX_RECORDS_PER_USER_OP for a request, else all of it is
        # refused.
        # Its KafkaApis refuses the unauthorized resources first: only the
        # others reach the controller's count.
        code, message = KafkaCode.POLICY_VIOLATION, TOO_LARGE_BATCH_OPERATION
        return {
            "throttle_time": 0,
            "responses": [
                _alter_result(r, code, message)
                if denied is None
                else _alter_result(r, denied, None)
                for r, denied in zip(resources, denials, strict=True)
            ],
        }
    refused = _refused_resources(resources)
    responses: list[dict[str, Any]] = []
    checked: dict[int, _Checked] = {}
    for index, resource in enumerate(resources):
        if index in refused:
            responses.append(_alter_result(resource, KafkaCode.INVALID_REQUEST, refused[index]))
            continue
        denied = denials[index]
        if denied is not None:
            responses.append(_alter_result(resource, denied, None))
            continue
        outcome = alter_one(resource)
        if isinstance(outcome, _Checked):
            checked[index] = outcome
            outcome = _alter_result(resource, KafkaCode.NONE, None)
        responses.append(outcome)
    if not validate_only:
        _write_checked(context, checked, responses)
    return {"throttle_time": 0, "responses": responses}


def _write_checked(
    context: RequestContext, checked: dict[int, _Checked], responses: list[dict[str, Any]]
) -> None:
    """Writes the checked resources' changes as one catalog record,
    answering each resource its outcome in ``responses``. A topic deleted
    between its check and the write is answered UNKNOWN_TOPIC_OR_PARTITION
    and the others written without it, as Kafka's controller, which checks
    and commits in one step, would have; any other refusal, or a store
    failure, answers every resource with it, none written."""
    pending = dict(checked)
    while pending:
        try:
            context.engine.alter_configs_many(
                [
                    (c.resource.resource_name, c.changes, c.incremental)
                    for c in pending.values()
                    if c.resource.resource_type == TOPIC
                ],
                [
                    (c.resource.resource_name, c.changes, c.incremental)
                    for c in pending.values()
                    if c.resource.resource_type == BROKER
                ],
                principal=authorize.actor(context),
            )
            return
        except EngineError as error:  # refused or the store failed: none was written
            deleted = [
                index
                for index, c in pending.items()
                if isinstance(error, UnknownTopic)
                and c.resource.resource_type == TOPIC
                and c.resource.resource_name == error.topic
            ]
            for index in deleted or list(pending):
                responses[index] = _alter_result(
                    pending.pop(index).resource, error_code(error), error_message(error)
                )


def _incremental_changes(
    context: RequestContext, resource: _IncrementalResource
) -> dict[str, str | None]:
    if resource.resource_type == BROKER:
        return _broker_changes(context, resource)
    if resource.resource_type != TOPIC:
        return {}
    return _topic_changes(context, resource)


def _topic_changes(
    context: RequestContext, resource: _IncrementalResource
) -> dict[str, str | None]:
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
            raise _InvalidRequest(f"Unknown operations type {operation}")
    return changes


def _checked(
    context: RequestContext,
    resource: _Resource,
    changes: dict[str, str | None],
    *,
    incremental: bool,
) -> dict[str, Any] | _Checked:
    """The resource's changes once checked (nothing written), or its
    refusal."""
    try:
        if resource.resource_type == TOPIC:
            context.engine.alter_configs(
                resource.resource_name,
                changes,
                incremental=incremental,
                validate_only=True,
                principal=authorize.actor(context),
            )
        elif resource.resource_type == BROKER:
            context.engine.broker_configs.alter(
                resource.resource_name,
                changes,
                incremental=incremental,
                validate_only=True,
            )
        else:
            # Legacy AlterConfigs has no BROKER_LOGGER (ConfigAdminManager).
            raise _InvalidRequest(f"Unknown resource type {resource.resource_type}")
    except EngineError as error:
        return _alter_result(resource, error_code(error), error_message(error))
    return _Checked(resource, changes, incremental)


def _alter_result(resource: _Resource, code: int, message: str | None) -> dict[str, Any]:
    return {
        "error_code": code,
        "error_message": message,
        "resource_type": resource.resource_type,
        "resource_name": resource.resource_name,
    }
