"""What a mirror is told: the two clusters, which topics and groups, each
side's client properties, and how often it checkpoints. Shared by
``tidelog mirror`` and the ``[mirror]`` section of ``tidelog serve``'s
config file; importing it does not import confluent-kafka."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.config_ranges import MIRROR_RANGES, MIRROR_TEXTS
from s3stream.errors import ConfigOutOfRange
from s3stream.ranges import check_ranges, check_texts

DEFAULT_CHECKPOINT_INTERVAL_S = 10.0
DEFAULT_TOPIC_REFRESH_S = 5.0

INTERNAL_PREFIXES = ("__", "tidelog.mirror.", "_schemas", "_confluent")
"""Topics and groups never mirrored: the clusters' own (offsets, transaction
state), the mirror's own (offset syncs, progress) and schema registries'."""


class MirrorSettingsError(ValueError):
    """A mirror setting is missing or malformed (one of a wrong type or out
    of its range is refused as every config's is: ConfigOutOfRange, also a
    ValueError)."""


@dataclass(frozen=True)
class MirrorSettings:
    source: str
    """Bootstrap servers of the cluster mirrored from."""
    target: str
    """Bootstrap servers of the cluster mirrored to."""
    topics: str = ".*"
    """A regular expression a topic's whole name must match."""
    groups: str = ".*"
    """A regular expression a consumer group's whole id must match."""
    source_config: dict[str, str] = field(default_factory=dict)
    """librdkafka properties of the source's clients (security settings)."""
    target_config: dict[str, str] = field(default_factory=dict)
    """librdkafka properties of the target's clients."""
    checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S
    topic_refresh_s: float = DEFAULT_TOPIC_REFRESH_S
    masked_copies: bool = False
    """Whether topics the source masks for the mirror's principal are
    copied as masked (engine/mirror/masked.py): off, they are refused."""

    def __post_init__(self) -> None:
        check_texts(self, MIRROR_TEXTS)
        for name in ("topics", "groups"):
            try:
                re.compile(getattr(self, name))
            except re.error as error:
                raise MirrorSettingsError(f"{name}: not a regular expression: {error}") from error
        check_ranges(self, MIRROR_RANGES)

    def mirrors_topic(self, name: str) -> bool:
        return (
            not name.startswith(INTERNAL_PREFIXES) and re.fullmatch(self.topics, name) is not None
        )

    def mirrors_group(self, group: str) -> bool:
        return (
            not group.startswith(INTERNAL_PREFIXES) and re.fullmatch(self.groups, group) is not None
        )


def parse_properties(items: list[str], flag: str) -> dict[str, str]:
    """``["K=V", ...]`` as a dict; a malformed item is a MirrorSettingsError."""
    properties: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise MirrorSettingsError(f"{flag} {item!r}: expected KEY=VALUE")
        properties[key.strip()] = value
    return properties


SECTION_KEYS = {
    "masked_copies",
    "to",
    "topics",
    "groups",
    "to_config",
    "from_config",
    "checkpoint_interval_s",
    "topic_refresh_s",
}


def settings_from_table(table: dict[str, Any], source: str) -> MirrorSettings:
    """The ``[mirror]`` section of a ``tidelog serve`` config file, with
    ``source`` (the server's own listener) as the cluster mirrored from."""
    unknown = set(table) - SECTION_KEYS
    if unknown:
        raise MirrorSettingsError(f"unknown keys {sorted(unknown)}")
    target = table.get("to")
    if not isinstance(target, str) or not target:
        raise MirrorSettingsError("to must be the target's bootstrap servers, host:port[,...]")
    # Numbers and strings of the wrong type are MirrorSettings' to refuse,
    # in the words it refuses them in from Python (MIRROR_RANGES, MIRROR_TEXTS).
    numbers = {key: value for key, value in table.items() if key in MIRROR_RANGES}
    masked_copies = table.get("masked_copies", False)
    if not isinstance(masked_copies, bool):
        raise MirrorSettingsError("masked_copies must be true or false")
    try:
        return MirrorSettings(
            source=source,
            target=target,
            topics=table.get("topics", ".*"),
            groups=table.get("groups", ".*"),
            source_config=_properties(table.get("from_config", {})),
            target_config=_properties(table.get("to_config", {})),
            masked_copies=masked_copies,
            **numbers,
        )
    except ConfigOutOfRange as refused:  # named by the table's key
        raise refused.named(_TABLE_KEYS.get(refused.setting, refused.setting)) from None


_TABLE_KEYS = {"target": "to", "source_config": "from_config", "target_config": "to_config"}
"""MirrorSettings' fields the [mirror] table sets by other keys."""


def _properties(value: object) -> Any:  # dict[str, str], or what MirrorSettings refuses
    """A [mirror] table of librdkafka properties with its TOML numbers and
    booleans as the strings librdkafka reads (``true``, ``5``), which
    ``"linger.ms" = 5`` means; anything else as it is, for MirrorSettings
    to refuse (an array, a table, a table that is no table)."""
    if not isinstance(value, dict):
        return value
    return {
        key: ("true" if item else "false")
        if isinstance(item, bool)
        else str(item)
        if isinstance(item, int | float)
        else item
        for key, item in value.items()
    }
