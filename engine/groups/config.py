"""The group coordinator's settings: Kafka's broker configs of the same
names (in snake case), with Kafka's defaults."""

from __future__ import annotations

from dataclasses import dataclass

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
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")
    """The server-side assignors offered; the first is the default."""
    group_consumer_max_size: int = INT32_MAX

    @property
    def offsets_retention_ms(self) -> int:
        return round(self.offsets_retention_minutes * 60_000)
