"""Group configs (KIP-848): the settings one group may have apart from the
broker's, as a GROUP config resource (DescribeConfigs and
IncrementalAlterConfigs, resource type 32) names them. These are Kafka's
GroupConfig for consumer groups:

- ``consumer.session.timeout.ms``: how long a member of the group lives
  without a heartbeat;
- ``consumer.heartbeat.interval.ms``: how often its members are told to
  heartbeat.

A group without an override has the broker's setting
(``group_consumer_session_timeout_ms``, ``group_consumer_heartbeat_interval_ms``).
An override is an integer of at least 1 within the broker's bounds
(``group_consumer_min/max_session_timeout_ms``,
``group_consumer_min/max_heartbeat_interval_ms``), and the session timeout
stays above the heartbeat interval, as Kafka's GroupConfig.validateValues
checks; anything else is INVALID_CONFIG. A group's overrides are one
record of the groups state log (records.py, ``["group_config", group_id]``),
kept whether or not the group exists, as Kafka keeps them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

from engine.config import ConfigEntry, ConfigSource, ConfigType
from engine.errors import EngineError, InvalidConfig
from engine.groups.config import GroupConfig
from engine.groups.records import StoredGroupConfig, group_config_key
from engine.protocol.kafka_code import KafkaCode

CONSUMER_SESSION_TIMEOUT_MS = "consumer.session.timeout.ms"
CONSUMER_HEARTBEAT_INTERVAL_MS = "consumer.heartbeat.interval.ms"

_DOCS = {
    CONSUMER_SESSION_TIMEOUT_MS: "The timeout to detect client failures when using the "
    "consumer group protocol.",
    CONSUMER_HEARTBEAT_INTERVAL_MS: "The heartbeat interval given to the members of a "
    "consumer group.",
}


class ConsumerGroupSettings(NamedTuple):
    """What a consumer group times its members by."""

    session_timeout_ms: int
    heartbeat_interval_ms: int


class EmptyGroupName(EngineError):
    """A GROUP config resource without a name (Kafka: "Group name must not be empty")."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self) -> None:
        super().__init__("the group name of a GROUP config resource must not be empty")


class GroupConfigs:
    """Every group's config overrides, as stored."""

    def __init__(self, config: GroupConfig) -> None:
        self.config = config
        self._overrides: dict[str, dict[str, str]] = {}

    def load(self, stored: Mapping[str, StoredGroupConfig]) -> None:
        self._overrides = {group_id: dict(s.configs) for group_id, s in stored.items()}

    def restore(self, group_id: str, stored: StoredGroupConfig | None) -> None:
        """Takes the group's stored configs back (a write of them failed)."""
        if stored is None:
            self._overrides.pop(group_id, None)
        else:
            self._overrides[group_id] = dict(stored.configs)

    def _defaults(self) -> dict[str, int]:
        return {
            CONSUMER_SESSION_TIMEOUT_MS: self.config.group_consumer_session_timeout_ms,
            CONSUMER_HEARTBEAT_INTERVAL_MS: self.config.group_consumer_heartbeat_interval_ms,
        }

    def _values(self, overrides: Mapping[str, str]) -> dict[str, int]:
        return self._defaults() | {name: int(value) for name, value in overrides.items()}

    def settings(self, group_id: str) -> ConsumerGroupSettings:
        values = self._values(self._overrides.get(group_id, {}))
        return ConsumerGroupSettings(
            values[CONSUMER_SESSION_TIMEOUT_MS], values[CONSUMER_HEARTBEAT_INTERVAL_MS]
        )

    def describe(self, group_id: str) -> list[ConfigEntry]:
        """Every group config with its value: GROUP_CONFIG for an override,
        DEFAULT for the broker's setting."""
        _check_name(group_id)
        overrides = self._overrides.get(group_id, {})
        return [
            ConfigEntry(
                name,
                str(value),
                ConfigSource.GROUP if name in overrides else ConfigSource.DEFAULT,
                name not in overrides,
                type=ConfigType.INT,
                documentation=_DOCS[name],
            )
            for name, value in sorted(self._values(overrides).items())
        ]

    def altered(self, group_id: str, changes: Mapping[str, str | None]) -> dict[str, str]:
        """The group's overrides after ``changes`` (a value: set; None: back
        to the broker's); raises InvalidConfig, EmptyGroupName."""
        _check_name(group_id)
        overrides = dict(self._overrides.get(group_id, {}))
        for name, value in changes.items():
            if name not in _DOCS:
                raise InvalidConfig(name, value, f"unknown group config; there are {sorted(_DOCS)}")
            if value is None:
                overrides.pop(name, None)
                continue
            try:
                number = int(value.strip())
            except ValueError:
                raise InvalidConfig(name, value, "not an integer") from None
            if not 1 <= number <= 2**31 - 1:
                raise InvalidConfig(name, value, "must be at least 1 (and an int32)")
            overrides[name] = str(number)
        self._check_bounds(self._values(overrides))
        return overrides

    def _check_bounds(self, values: Mapping[str, int]) -> None:
        config = self.config
        session = values[CONSUMER_SESSION_TIMEOUT_MS]
        interval = values[CONSUMER_HEARTBEAT_INTERVAL_MS]
        bounds = (
            (
                CONSUMER_HEARTBEAT_INTERVAL_MS,
                interval,
                (
                    "group.consumer.min.heartbeat.interval.ms",
                    "group.consumer.max.heartbeat.interval.ms",
                ),
                (
                    config.group_consumer_min_heartbeat_interval_ms,
                    config.group_consumer_max_heartbeat_interval_ms,
                ),
            ),
            (
                CONSUMER_SESSION_TIMEOUT_MS,
                session,
                ("group.consumer.min.session.timeout.ms", "group.consumer.max.session.timeout.ms"),
                (
                    config.group_consumer_min_session_timeout_ms,
                    config.group_consumer_max_session_timeout_ms,
                ),
            ),
        )
        for name, value, (low_name, high_name), (low, high) in bounds:
            if value < low:
                raise InvalidConfig(
                    name, value, f"must be greater than or equal to {low_name} ({low})"
                )
            if value > high:
                raise InvalidConfig(
                    name, value, f"must be less than or equal to {high_name} ({high})"
                )
        if session <= interval:
            raise InvalidConfig(
                CONSUMER_SESSION_TIMEOUT_MS,
                session,
                f"must be greater than {CONSUMER_HEARTBEAT_INTERVAL_MS} ({interval})",
            )

    def store(
        self, group_id: str, overrides: Mapping[str, str]
    ) -> tuple[dict[Hashable, Any], list[Hashable]]:
        """Takes ``overrides`` as the group's; returns the state log's puts
        and deletes that make them durable."""
        key = group_config_key(group_id)
        if not overrides:
            self._overrides.pop(group_id, None)
            return {}, [key]
        self._overrides[group_id] = dict(overrides)
        return {key: StoredGroupConfig(dict(overrides)).to_value()}, []


def _check_name(group_id: str) -> None:
    if not group_id:
        raise EmptyGroupName()
