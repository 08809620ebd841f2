"""Broker configs: the node-wide settings a broker's DescribeConfigs lists,
and the dynamic ones IncrementalAlterConfigs and AlterConfigs change while
the engine runs (Kafka's DynamicBrokerConfig, KIP-226).

A value comes, in Kafka's order, from this broker's dynamic config
(DYNAMIC_BROKER_CONFIG, the resource named by its node id), the cluster's
dynamic default (DYNAMIC_DEFAULT_BROKER_CONFIG, the resource named ""), the
config file or flags (STATIC_BROKER_CONFIG), else the default
(DEFAULT_CONFIG). Dynamic values are kept in the catalog
(docs/engine-format.md), so a process opening the same bucket keeps them.

``BrokerConfigs`` is the one place the running components read these values
from: the engine's auto-creation (num.partitions, auto.create.topics.enable),
the server's connection limit (max.connections), and every topic without an
override of its own (the log.* settings, through their topic config
synonyms, as Kafka's ServerTopicConfigSynonyms). Those that derive state
from a value (every topic's effective configs) subscribe to its changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from engine.config import ConfigEntry, ConfigSource, ConfigType, normalize
from engine.delegation_tokens import (
    DEFAULT_EXPIRY_CHECK_INTERVAL_MS,
    DEFAULT_EXPIRY_TIME_MS,
    DEFAULT_MAX_LIFETIME_MS,
    DelegationTokenConfig,
)
from engine.errors import EngineError, InvalidConfig
from engine.protocol.kafka_code import KafkaCode

CLUSTER_DEFAULT = ""
"""The resource name of the cluster-wide dynamic defaults (kafka-configs'
``--entity-default``)."""


@dataclass(frozen=True)
class BrokerConfigDef:
    name: str
    type: ConfigType
    default: str
    dynamic: bool
    """Alterable while running; the others are read-only (set at start)."""
    topic: str | None = None
    """The topic config this broker config is the default of (its synonym)."""
    minimum: int | None = None
    doc: str = ""


_L, _I, _B, _S = ConfigType.LONG, ConfigType.INT, ConfigType.BOOLEAN, ConfigType.STRING
_DEFS = [
    BrokerConfigDef("broker.id", _I, "1", False, doc="this node's id (--node-id)"),
    BrokerConfigDef(
        "auto.create.topics.enable",
        _B,
        "true",
        True,
        doc="create an unknown topic on its first Metadata or Produce",
    ),
    BrokerConfigDef(
        "num.partitions", _I, "1", True, minimum=1, doc="partitions of an auto-created topic"
    ),
    BrokerConfigDef(
        "default.replication.factor",
        _I,
        "1",
        False,
        doc="one node: durability comes from the WAL and the object store",
    ),
    BrokerConfigDef(
        "max.connections",
        _I,
        "2147483647",
        True,
        minimum=0,
        doc="connections open at once; one more is closed at once",
    ),
    BrokerConfigDef(
        "socket.request.max.bytes", _I, "104857600", False, doc="the largest request read"
    ),
    BrokerConfigDef(
        "connections.max.reauth.ms",
        _L,
        "0",
        False,
        doc="a SASL session's lifetime; clients reauthenticate within it (0: never expires)",
    ),
    BrokerConfigDef(
        "delegation.token.expiry.time.ms",
        _L,
        str(DEFAULT_EXPIRY_TIME_MS),
        False,
        minimum=1,
        doc="how long a delegation token lives unless renewed",
    ),
    BrokerConfigDef(
        "delegation.token.max.lifetime.ms",
        _L,
        str(DEFAULT_MAX_LIFETIME_MS),
        False,
        minimum=1,
        doc="no renewal takes a delegation token past this from its creation",
    ),
    BrokerConfigDef(
        "delegation.token.expiry.check.interval.ms",
        _L,
        str(DEFAULT_EXPIRY_CHECK_INTERVAL_MS),
        False,
        minimum=1,
        doc="how often expired delegation tokens are removed",
    ),
    BrokerConfigDef("log.retention.ms", _L, "604800000", True, topic="retention.ms"),
    BrokerConfigDef("log.retention.bytes", _L, "-1", True, topic="retention.bytes"),
    BrokerConfigDef("log.cleanup.policy", ConfigType.LIST, "delete", True, topic="cleanup.policy"),
    BrokerConfigDef("compression.type", _S, "producer", True, topic="compression.type"),
    BrokerConfigDef("message.max.bytes", _I, "1048588", True, topic="max.message.bytes"),
    BrokerConfigDef(
        "log.cleaner.delete.retention.ms", _L, "86400000", True, topic="delete.retention.ms"
    ),
    BrokerConfigDef(
        "log.cleaner.min.compaction.lag.ms", _L, "0", True, topic="min.compaction.lag.ms"
    ),
    BrokerConfigDef(
        "log.cleaner.max.compaction.lag.ms",
        _L,
        "9223372036854775807",
        True,
        topic="max.compaction.lag.ms",
    ),
    BrokerConfigDef(
        "log.cleaner.min.cleanable.ratio",
        ConfigType.DOUBLE,
        "0.5",
        True,
        topic="min.cleanable.dirty.ratio",
    ),
    BrokerConfigDef(
        "log.message.timestamp.type", _S, "CreateTime", True, topic="message.timestamp.type"
    ),
]
BROKER_CONFIG_DEFS: dict[str, BrokerConfigDef] = {d.name: d for d in _DEFS}
BY_TOPIC_CONFIG: dict[str, BrokerConfigDef] = {d.topic: d for d in _DEFS if d.topic}


class ConfigNotDynamic(EngineError):
    """Configs that are set at start only, named in an alteration."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self, names: list[str]) -> None:
        # Kafka's words (DynamicBrokerConfig.validateConfigs), Scala's Set(...) included.
        super().__init__(f"Cannot update these configs dynamically: Set({', '.join(names)})")
        self.names = names


class InvalidBrokerConfig(EngineError):
    """A broker config value that cannot be used. Kafka answers these with
    INVALID_REQUEST, not INVALID_CONFIG (ConfigAdminManager, KAFKA-13609)."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self, name: str, value: object, reason: str) -> None:
        super().__init__(f"Invalid value {value} for configuration {name}: {reason}")
        self.name = name
        self.value = value


class Synonym(NamedTuple):
    name: str
    value: str
    source: ConfigSource


Persist = Callable[[list[tuple[str, dict[str, str | None]]]], None]
"""Makes resources' changes durable, as one catalog record."""
BrokerAlteration = tuple[str, Mapping[str, str | None], bool]
"""A resource, its configs to set (None: to remove), and whether
incrementally (else the given configs replace every dynamic one)."""
"""Makes a change of one resource's dynamic configs durable (the catalog)."""


class BrokerConfigs:
    """The broker configs in force: static values and the dynamic ones kept
    in the catalog. Reads take no lock: each map is replaced whole on a
    change, so a reader sees the old one or the new one."""

    def __init__(
        self,
        static: Mapping[str, str],
        dynamic: Mapping[str, Mapping[str, str]],
        persist: Persist,
        *,
        static_topic_defaults: Mapping[str, str] | None = None,
    ) -> None:
        self._static = dict(static)
        self._dynamic: dict[str, dict[str, str]] = {k: dict(v) for k, v in dynamic.items()}
        self._static_topic_defaults = dict(static_topic_defaults or {})
        self._persist = persist
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.node_id = int(self._static.get("broker.id", "1"))
        self._in_force = self._values_in_force()

    def set_static(self, values: Mapping[str, object]) -> None:
        """Adds what the owner of a setting was started with (the server's
        node id and connection limit), as it holds them: its own checks
        passed already; notifies as a change does."""
        static = dict(self._static)
        static.update(
            {name: str(v).lower() if isinstance(v, bool) else str(v) for name, v in values.items()}
        )
        self._static = static
        self.node_id = int(static.get("broker.id", str(self.node_id)))
        self._in_force = self._values_in_force()
        self._notify()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """``listener`` is called after each change of the values in force."""
        self._listeners.append(listener)

    # -- reading -------------------------------------------------------------------

    def resolved(self, name: str) -> Synonym:
        """The value in force and where it comes from."""
        return self.synonyms(name, str(self.node_id))[0]

    def value(self, name: str) -> str:
        """The value in force, from a map made at each change: read on
        every Produce and Metadata request (auto-creation), so a lookup."""
        return self._in_force[name]

    def _values_in_force(self) -> dict[str, str]:
        return {name: self.resolved(name).value for name in BROKER_CONFIG_DEFS}

    @property
    def auto_create_topics(self) -> bool:
        return self.value("auto.create.topics.enable") == "true"

    @property
    def num_partitions(self) -> int:
        return int(self.value("num.partitions"))

    @property
    def max_connections(self) -> int:
        return int(self.value("max.connections"))

    def synonyms(self, name: str, scope: str) -> list[Synonym]:
        """Every value ``name`` has, the one in force first (Kafka's
        DescribeConfigs synonyms): this broker's dynamic value, the dynamic
        default, the static value, the default. ``scope`` "" leaves out the
        broker's own, as Kafka does when describing the default resource."""
        definition = BROKER_CONFIG_DEFS[name]
        dynamic, static_values = self._dynamic, self._static  # one version of each, read once
        found = []
        own = dynamic.get(scope, {}).get(name) if scope != CLUSTER_DEFAULT else None
        if own is not None:
            found.append(Synonym(name, own, ConfigSource.DYNAMIC_BROKER))
        default = dynamic.get(CLUSTER_DEFAULT, {}).get(name)
        if default is not None:
            found.append(Synonym(name, default, ConfigSource.DYNAMIC_DEFAULT_BROKER))
        static = static_values.get(name)
        if static is None and definition.topic is not None:
            static = self._static_topic_defaults.get(definition.topic)
        if static is not None:
            found.append(Synonym(name, static, ConfigSource.STATIC_BROKER))
        found.append(Synonym(name, definition.default, ConfigSource.DEFAULT))
        return found

    def describe(self, scope: str) -> list[tuple[ConfigEntry, list[Synonym]]]:
        """The configs of a broker resource: every one for this broker, only
        the dynamic defaults set for "" (Kafka's ConfigHelper)."""
        described = []
        for definition in _DEFS:
            chain = self.synonyms(definition.name, scope)
            default_scope = scope == CLUSTER_DEFAULT
            if default_scope and chain[0].source is not ConfigSource.DYNAMIC_DEFAULT_BROKER:
                continue
            top = chain[0]
            entry = ConfigEntry(
                definition.name,
                top.value,
                top.source,
                top.source is ConfigSource.DEFAULT,
                read_only=not definition.dynamic,
                type=definition.type,
                documentation=definition.doc,
            )
            described.append((entry, chain))
        return described

    def dynamic(self, scope: str) -> dict[str, str]:
        """The dynamic configs set on a resource."""
        return dict(self._dynamic.get(scope, {}))

    def topic_defaults(self) -> tuple[dict[str, str], dict[str, ConfigSource]]:
        """The defaults of every topic without an override, and their
        sources: the static [topic_defaults], then the broker configs in
        force that are topic config synonyms."""
        values = dict(self._static_topic_defaults)
        sources = dict.fromkeys(values, ConfigSource.STATIC_BROKER)
        for topic_name, definition in BY_TOPIC_CONFIG.items():
            top = self.resolved(definition.name)
            if top.source is not ConfigSource.DEFAULT:
                values[topic_name], sources[topic_name] = top.value, top.source
        return values, sources

    def topic_synonyms(self, topic_name: str) -> list[Synonym]:
        """What a topic config without an override inherits, in order."""
        definition = BY_TOPIC_CONFIG.get(topic_name)
        if definition is not None:
            return self.synonyms(definition.name, str(self.node_id))
        static = self._static_topic_defaults.get(topic_name)
        return [Synonym(topic_name, static, ConfigSource.STATIC_BROKER)] if static else []

    # -- changing ------------------------------------------------------------------

    def check_scope(self, scope: str) -> None:
        """A broker resource's name is this node's id, or "" (Kafka's
        ConfigAdminManager.validateResourceNameIsCurrentNodeId)."""
        if scope == CLUSTER_DEFAULT:
            return
        try:
            node = int(scope)
        except ValueError:
            raise InvalidBrokerResource(f"Node id must be an integer, but it is: {scope}") from None
        if node != self.node_id:
            raise InvalidBrokerResource(
                f"Unexpected broker id, expected {self.node_id}, but received {scope}"
            )

    def alter(
        self,
        scope: str,
        changes: Mapping[str, str | None],
        *,
        incremental: bool,
        validate_only: bool,
    ) -> None:
        """Sets (None: removes) dynamic configs of a resource; not
        incremental, the given configs replace every dynamic one it had
        (AlterConfigs). Durable before it takes effect."""
        if validate_only:
            self.check_scope(scope)
            self._checked(changes)
            return
        self.alter_many([(scope, changes, incremental)])

    def alter_many(
        self,
        alterations: Sequence[BrokerAlteration],
        persist: Persist | None = None,
    ) -> None:
        """Alters several resources at once, made durable together by
        ``persist`` (by default the one given at construction), which may
        write them with other changes in the same record; raises before
        anything is written for a change Kafka refuses."""
        for scope, _, _ in alterations:
            self.check_scope(scope)
        with self._lock:
            dynamic = dict(self._dynamic)
            checked_all: list[tuple[str, dict[str, str | None]]] = []
            for scope, changes, incremental in alterations:
                checked = self._checked(changes)
                current = dynamic.get(scope, {})
                if not incremental:
                    checked = {**dict.fromkeys(current), **checked}
                checked_all.append((scope, checked))
                updated = dict(current)
                for name, value in checked.items():
                    if value is None:
                        updated.pop(name, None)
                    else:
                        updated[name] = value
                dynamic[scope] = updated
            (persist or self._persist)(checked_all)
            self._dynamic = dynamic
            self._in_force = self._values_in_force()
        self._notify()

    def _checked(self, changes: Mapping[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(n for n in changes if n not in BROKER_CONFIG_DEFS)
        if unknown:
            raise InvalidConfig(unknown[0], changes[unknown[0]], "unknown broker config")
        static = sorted(n for n in changes if not BROKER_CONFIG_DEFS[n].dynamic)
        if static:
            raise ConfigNotDynamic(static)
        return {
            name: None if value is None else _text(BROKER_CONFIG_DEFS[name], value)
            for name, value in changes.items()
        }

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


class InvalidBrokerResource(EngineError):
    """A broker resource named by something other than this node's id or ""."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _text(definition: BrokerConfigDef, value: object) -> str:
    """A broker config value checked and in its canonical form; one with a
    topic synonym is held to the topic config's rules."""
    try:
        if definition.topic is not None:
            return normalize(definition.topic, value)
        text = normalize_broker(definition, value)
    except InvalidConfig as error:
        raise InvalidBrokerConfig(definition.name, value, _reason(error)) from None
    return text


def _reason(error: InvalidConfig) -> str:
    return str(error).rsplit(": ", 1)[-1]


def normalize_broker(definition: BrokerConfigDef, value: object) -> str:
    """A value of a broker config that is no topic's default."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value).strip()
    if definition.type is ConfigType.BOOLEAN:
        if text.lower() not in ("true", "false"):
            raise InvalidConfig(definition.name, value, "not a valid boolean")
        return text.lower()
    if definition.type in (ConfigType.INT, ConfigType.LONG):
        invalid = InvalidConfig(definition.name, value, f"not a valid {definition.type.value}")
        if not text.lstrip("+-").isdigit() or not text.isascii():
            raise invalid
        number = int(text, 10)
        if not -(2**31) <= number < 2**31:
            raise invalid
        if definition.minimum is not None and number < definition.minimum:
            raise InvalidConfig(definition.name, value, f"must be at least {definition.minimum}")
        return str(number)
    return text


def engine_static(
    auto_create_topics: bool,
    num_partitions: int,
    delegation_tokens: DelegationTokenConfig | None = None,
) -> dict[str, str]:
    """The engine's settings that are broker configs, where they are not
    the default (so an untouched one is described as DEFAULT_CONFIG)."""
    static = {}
    if auto_create_topics is not True:
        static["auto.create.topics.enable"] = "false"
    if num_partitions != 1:
        static["num.partitions"] = str(num_partitions)
    tokens = delegation_tokens or DelegationTokenConfig()
    for name, value in (
        ("delegation.token.expiry.time.ms", tokens.expiry_time_ms),
        ("delegation.token.max.lifetime.ms", tokens.max_lifetime_ms),
        ("delegation.token.expiry.check.interval.ms", tokens.expiry_check_interval_ms),
    ):
        if str(value) != BROKER_CONFIG_DEFS[name].default:
            static[name] = str(value)
    return static
