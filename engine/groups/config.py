"""The group coordinator's settings: Kafka's broker configs of the same
names (in snake case), with Kafka's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config_ranges import GROUP_ORDER, GROUP_RANGES, GROUP_TEXTS
from s3stream.ranges import check_order, check_ranges, check_texts

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class GroupConfig:
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1_800_000
    group_initial_rebalance_delay_ms: int = 3000
    group_max_size: int = INT32_MAX
    offsets_retention_minutes: float = 10080
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096
    # Consumer groups of the KIP-848 protocol (group.consumer.*).
    group_consumer_session_timeout_ms: int = 45_000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_min_session_timeout_ms: int = 45_000
    group_consumer_max_session_timeout_ms: int = 60_000
    group_consumer_min_heartbeat_interval_ms: int = 5000
    group_consumer_max_heartbeat_interval_ms: int = 15_000
    """The bounds of a group's own consumer.session.timeout.ms and
    consumer.heartbeat.interval.ms (group_configs.py)."""
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")
    """The server-side assignors offered; the first is the default."""
    group_consumer_max_size: int = INT32_MAX
    group_consumer_regex_refresh_interval_ms: int = 600_000
    """How long a resolution of the group's regexes stands before a heartbeat
    has them resolved again (Kafka's group.consumer.regex.refresh.interval.ms)."""
    group_consumer_regex_batch_refresh_interval_ms: int = 10_000
    """The least time between two resolutions of a group's regexes for topics
    created or deleted: a burst of them makes one rebalance (Kafka's fixed
    REGEX_BATCH_REFRESH_MIN_INTERVAL_MS)."""
    group_consumer_migration_policy: str = "bidirectional"
    """Kafka's group.consumer.migration.policy: whether a consumer-protocol
    member joining a classic group with members converts it online
    ("upgrade", "bidirectional") or is refused ("downgrade", "disabled");
    and whether the last consumer-protocol member leaving a group of
    classic members converts it back ("downgrade", "bidirectional")."""

    def __post_init__(self) -> None:
        check_ranges(self, GROUP_RANGES)
        check_order(self, GROUP_ORDER)
        check_texts(self, GROUP_TEXTS)

    @property
    def online_upgrade_enabled(self) -> bool:
        return self.group_consumer_migration_policy.lower() in ("upgrade", "bidirectional")

    @property
    def online_downgrade_enabled(self) -> bool:
        return self.group_consumer_migration_policy.lower() in ("downgrade", "bidirectional")

    @property
    def offsets_retention_ms(self) -> int:
        return round(self.offsets_retention_minutes * 60_000)
