"""Topic configs: Kafka's names, types, defaults and validation.

A topic stores only its overrides, as strings (Kafka's own representation);
``TopicConfig`` resolves them against the engine's defaults and Kafka's, and
``describe`` lists every config with its value and source, as a broker's
DescribeConfigs does. Configs that have no meaning on a single node with
object storage (replication, segment files, flushing) are accepted and
described so tools that set them keep working; docs/engine.md says which.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from engine.errors import InvalidConfig
from engine.header_index import INDEX_HEADERS, check_index_headers, index_header_names
from engine.masking.rules import MASKING_RULES, check_rules
from engine.tables.settings import (
    TABLE_COMMIT_INTERVAL,
    TABLE_ENABLE,
    TABLE_PARTITION,
    TABLE_PARTITIONS,
)

LONG_MAX = 2**63 - 1
_INTEGER = re.compile(r"[+-]?[0-9]+")
INT_MAX = 2**31 - 1


class ConfigType(enum.Enum):
    BOOLEAN = "boolean"
    STRING = "string"
    INT = "int"
    LONG = "long"
    DOUBLE = "double"
    LIST = "list"


class ConfigSource(enum.IntEnum):
    """Kafka's DescribeConfigs source values."""

    TOPIC = 1
    DYNAMIC_BROKER = 2
    """This broker's value, altered while running (broker_config.py)."""
    DYNAMIC_DEFAULT_BROKER = 3
    """The cluster's default, altered while running (the resource named "")."""
    STATIC_BROKER = 4
    DEFAULT = 5
    BROKER_LOGGER = 6
    """A logger's level (the BROKER_LOGGER resource)."""
    GROUP = 8
    """A group's own config (a GROUP resource, KIP-848): Kafka's GROUP_CONFIG."""


@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: ConfigType
    default: str
    check: Callable[[str], str | None] | None = None
    """Returns why a (well-typed) value is invalid, or None."""
    doc: str = ""


def _at_least(low: float) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if float(value) >= low else f"must be at least {low:g}"

    return check


def _between(low: float, high: float) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if low <= float(value) <= high else f"must be in [{low:g}, {high:g}]"

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _cleanup_policy(value: str) -> str | None:
    policies = _split_list(value)
    if not policies or not set(policies) <= {"delete", "compact"}:
        return "must be a non-empty list of delete and compact"
    return None


PROVENANCE = "tidelog.provenance"
"""tidelog's own topic config: whether the broker stamps who wrote each
record into its headers (engine/provenance.py, docs/governance.md)."""

ACK_DURABILITY = "tidelog.ack.durability"
"""tidelog's own topic config: the durability an acknowledgement waits for
(docs/durability.md)."""

SCHEMA_VALIDATION_MODES = ("none", "id", "full", "raw")
"""tidelog.{key,value}.schema.validation (engine/schemas/record_check.py)."""

COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")

_L, _I, _B, _S, _D = (
    ConfigType.LONG,
    ConfigType.INT,
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.DOUBLE,
)
_DEFS = [
    ConfigDef(
        "cleanup.policy", ConfigType.LIST, "delete", _cleanup_policy, "delete, compact or both"
    ),
    ConfigDef("compression.type", _S, "producer", _one_of(*COMPRESSION_TYPES)),
    ConfigDef("delete.retention.ms", _L, "86400000", _at_least(0)),
    ConfigDef("file.delete.delay.ms", _L, "60000", _at_least(0)),
    ConfigDef("flush.messages", _L, str(LONG_MAX), _at_least(1)),
    ConfigDef("flush.ms", _L, str(LONG_MAX), _at_least(0)),
    ConfigDef("follower.replication.throttled.replicas", ConfigType.LIST, ""),
    ConfigDef("index.interval.bytes", _I, "4096", _at_least(0)),
    ConfigDef("leader.replication.throttled.replicas", ConfigType.LIST, ""),
    ConfigDef("local.retention.bytes", _L, "-2", _at_least(-2)),
    ConfigDef("local.retention.ms", _L, "-2", _at_least(-2)),
    ConfigDef("max.compaction.lag.ms", _L, str(LONG_MAX), _at_least(1)),
    ConfigDef("max.message.bytes", _I, "1048588", _at_least(0)),
    ConfigDef("message.downconversion.enable", _B, "true"),
    # Kafka 4's default (KIP-1030): a record dated more than an hour past
    # the broker's clock is refused, its batch's maxTimestamp with it.
    ConfigDef("message.timestamp.after.max.ms", _L, "3600000", _at_least(0)),
    ConfigDef("message.timestamp.before.max.ms", _L, str(LONG_MAX), _at_least(0)),
    ConfigDef("message.timestamp.difference.max.ms", _L, str(LONG_MAX), _at_least(0)),
    ConfigDef("message.timestamp.type", _S, "CreateTime", _one_of("CreateTime", "LogAppendTime")),
    ConfigDef("min.cleanable.dirty.ratio", _D, "0.5", _between(0, 1)),
    ConfigDef("min.compaction.lag.ms", _L, "0", _at_least(0)),
    ConfigDef("min.insync.replicas", _I, "1", _at_least(1)),
    ConfigDef("preallocate", _B, "false"),
    ConfigDef("remote.storage.enable", _B, "false"),
    ConfigDef("retention.bytes", _L, "-1", _at_least(-1)),
    ConfigDef("retention.ms", _L, "604800000", _at_least(-1)),
    ConfigDef("segment.bytes", _I, "1073741824", _at_least(14)),
    ConfigDef("segment.index.bytes", _I, "10485760", _at_least(4)),
    ConfigDef("segment.jitter.ms", _L, "0", _at_least(0)),
    ConfigDef("segment.ms", _L, "604800000", _at_least(1)),
    ConfigDef("unclean.leader.election.enable", _B, "false"),
    ConfigDef(
        PROVENANCE,
        _S,
        "none",
        _one_of("none", "stamp"),
        "stamp: the broker adds tidelog.* headers naming each record's writer "
        "(principal, client id, listener, address, receive time)",
    ),
    ConfigDef(
        ACK_DURABILITY,
        _S,
        "local",
        _one_of("local", "remote"),
        "when acks=1/all and embedded produces are answered: local (fsynced in the WAL) "
        "or remote (in an object committed to the object store's manifest)",
    ),
    ConfigDef(
        MASKING_RULES,
        _S,
        "",
        check_rules,
        "a JSON list of masking rules applied on fetch for principals without unmask "
        "(docs/governance.md)",
    ),
]
for _field in ("key", "value"):
    _DEFS += [
        ConfigDef(
            f"tidelog.{_field}.schema.validation",
            _S,
            "none",
            _one_of(*SCHEMA_VALIDATION_MODES),
            f"how produced records' {_field}s are held to the schema registry's schemas: "
            "none, id (framed with a registered schema id), full (and valid by that schema) "
            "or raw (unframed, valid by the subject's latest schema)",
        ),
        ConfigDef(
            f"tidelog.{_field}.schema.subject",
            _S,
            "",
            None,
            f"the subject whose latest schema raw {_field} validation uses "
            f"(empty: <topic>-{_field})",
        ),
    ]
_DEFS += [
    ConfigDef(
        TABLE_ENABLE,
        _B,
        "false",
        None,
        "keep an Apache Iceberg table of the topic's committed records in the object store "
        "(docs/tables.md)",
    ),
    ConfigDef(
        TABLE_COMMIT_INTERVAL,
        _L,
        "60000",
        _at_least(100),
        "the most time between two commits of the topic's table while records wait",
    ),
    ConfigDef(
        TABLE_PARTITION,
        _S,
        "day",
        _one_of(*TABLE_PARTITIONS),
        "how a new table of the topic is partitioned: by the day or hour of the record's "
        "timestamp, or none (a table keeps the partitioning it was created with)",
    ),
]
_DEFS.append(
    ConfigDef(
        INDEX_HEADERS,
        ConfigType.LIST,
        "",
        check_index_headers,
        "header names whose values the topic's objects index, for lookups by header "
        "(docs/memory.md)",
    )
)
CONFIG_DEFS: dict[str, ConfigDef] = {d.name: d for d in _DEFS}


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def normalize(name: str, value: object) -> str:
    """Checks one config value and returns its canonical string form."""
    definition = CONFIG_DEFS.get(name)
    if definition is None:
        raise InvalidConfig(name, value, "unknown topic config")
    text = _to_text(value)
    try:
        canonical = _typed(definition.type, text)
    except ValueError:
        raise InvalidConfig(name, value, f"not a valid {definition.type.value}") from None
    if definition.check is not None:
        reason = definition.check(canonical)
        if reason is not None:
            raise InvalidConfig(name, value, reason)
    return canonical


def _to_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value).strip()


def _typed(kind: ConfigType, text: str) -> str:
    if kind in (ConfigType.INT, ConfigType.LONG):
        if not _INTEGER.fullmatch(text):  # Python's int() also takes "1_000"; Java's does not
            raise ValueError(text)
        number = int(text)
        limit = INT_MAX if kind is ConfigType.INT else LONG_MAX
        if not -limit - 1 <= number <= limit:
            raise ValueError(text)
        return str(number)
    if kind is ConfigType.DOUBLE:
        return repr(float(text))
    if kind is ConfigType.BOOLEAN:
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ValueError(text)
        return lowered
    if kind is ConfigType.LIST:
        return ",".join(_split_list(text))
    return text


def normalize_all(configs: Mapping[str, object]) -> dict[str, str]:
    return {name: normalize(name, value) for name, value in configs.items()}


def check_combination(config: TopicConfig) -> None:
    """Refuses a topic config whose values are each valid but contradict
    each other once the broker's defaults are merged in, as Kafka's
    LogConfig.validate does."""
    if config.min_compaction_lag_ms > config.max_compaction_lag_ms:
        raise InvalidConfig(
            "min.compaction.lag.ms",
            config.min_compaction_lag_ms,
            f"conflict: greater than max.compaction.lag.ms ({config.max_compaction_lag_ms})",
        )


class ConfigEntry(NamedTuple):
    name: str
    value: str
    source: ConfigSource
    is_default: bool
    read_only: bool = False
    sensitive: bool = False
    type: ConfigType = ConfigType.STRING
    documentation: str = ""


class TopicConfig:
    """A topic's effective configs: its overrides, else the engine's, else Kafka's."""

    def __init__(
        self,
        overrides: Mapping[str, str],
        engine_defaults: Mapping[str, str],
        default_sources: Mapping[str, ConfigSource] | None = None,
    ) -> None:
        self.overrides = dict(overrides)
        self.engine_defaults = engine_defaults
        self.default_sources = default_sources or {}
        """Where each engine default comes from (STATIC_BROKER if not said)."""
        self.retention_ms = self._long("retention.ms")
        self.retention_bytes = self._long("retention.bytes")
        policies = _split_list(self.get("cleanup.policy"))
        self.delete = "delete" in policies
        self.compact = "compact" in policies
        self.max_message_bytes = self._long("max.message.bytes")
        self.log_append_time = self.get("message.timestamp.type") == "LogAppendTime"
        self.stamp_provenance = self.get(PROVENANCE) == "stamp"
        self.index_headers = index_header_names(self.get(INDEX_HEADERS))
        """The header names the topic's objects index (docs/memory.md)."""
        self.min_compaction_lag_ms = self._long("min.compaction.lag.ms")
        self.max_compaction_lag_ms = self._long("max.compaction.lag.ms")
        self.delete_retention_ms = self._long("delete.retention.ms")
        self.min_cleanable_dirty_ratio = float(self.get("min.cleanable.dirty.ratio"))
        self.index_interval_bytes = self._long("index.interval.bytes")
        self.compression_type = self.get("compression.type")
        self.remote_acks = self.get(ACK_DURABILITY) == "remote"
        self.table = self.get(TABLE_ENABLE) == "true"
        """Whether the topic has an Iceberg table (engine/tables/)."""
        self.table_commit_interval_ms = self._long(TABLE_COMMIT_INTERVAL)
        self.table_partition = self.get(TABLE_PARTITION)
        """How the topic's table is partitioned when it is created (day, hour, none)."""
        self.key_schema = (
            self.get("tidelog.key.schema.validation"),
            self.get("tidelog.key.schema.subject"),
        )
        """The key's schema validation mode and subject."""
        self.value_schema = (
            self.get("tidelog.value.schema.validation"),
            self.get("tidelog.value.schema.subject"),
        )
        difference = self._long("message.timestamp.difference.max.ms")
        self.timestamp_before_max_ms = min(
            self._long("message.timestamp.before.max.ms"), difference
        )
        self.timestamp_after_max_ms = min(self._long("message.timestamp.after.max.ms"), difference)

    def get(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        if name in self.engine_defaults:
            return self.engine_defaults[name]
        return CONFIG_DEFS[name].default

    def _long(self, name: str) -> int:
        return int(self.get(name))

    def describe(self, names: set[str] | None = None) -> list[ConfigEntry]:
        """Every topic config (or those named) with its value and where it comes from."""
        entries = []
        for definition in _DEFS:
            if names is not None and definition.name not in names:
                continue
            if definition.name in self.overrides:
                source = ConfigSource.TOPIC
            elif definition.name in self.engine_defaults:
                source = self.default_sources.get(definition.name, ConfigSource.STATIC_BROKER)
            else:
                source = ConfigSource.DEFAULT
            entries.append(
                ConfigEntry(
                    definition.name,
                    self.get(definition.name),
                    source,
                    source is ConfigSource.DEFAULT,
                    type=definition.type,
                    documentation=definition.doc,
                )
            )
        return entries
