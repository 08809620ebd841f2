"""The ranges the [engine] table's group, transaction and producer-state
settings take, checked when the config file is read.

Kafka's broker refuses these outside the ranges of its config definitions
(GroupCoordinatorConfig.CONFIG_DEF, TransactionStateManagerConfig,
TransactionLogConfig, ProducerStateManagerConfig); the few it leaves open
(group.min.session.timeout.ms, group.max.session.timeout.ms,
group.initial.rebalance.delay.ms, offset.metadata.max.bytes) take 0 or
more here, since a negative one has no meaning. A float setting must also
be finite: a NaN compares false with every bound and would pass them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.groups.config import MIGRATION_POLICIES

AT_LEAST_ONE = (
    "group_max_size",
    "offsets_retention_minutes",
    "offsets_retention_check_interval_ms",
    "group_consumer_session_timeout_ms",
    "group_consumer_heartbeat_interval_ms",
    "group_consumer_min_session_timeout_ms",
    "group_consumer_max_session_timeout_ms",
    "group_consumer_min_heartbeat_interval_ms",
    "group_consumer_max_heartbeat_interval_ms",
    "group_consumer_max_size",
    "group_consumer_regex_batch_refresh_interval_ms",
    "transaction_max_timeout_ms",
    "transactional_id_expiration_ms",
    "transaction_abort_timed_out_transaction_cleanup_interval_ms",
    "transaction_remove_expired_transaction_cleanup_interval_ms",
    "producer_id_expiration_ms",
    "add_partitions_to_txn_retry_backoff_ms",
    "checkpoint_bytes",
    "checkpoint_replay_bytes",
)
AT_LEAST_ZERO = (
    "group_min_session_timeout_ms",
    "group_max_session_timeout_ms",
    "group_initial_rebalance_delay_ms",
    "offset_metadata_max_bytes",
    "add_partitions_to_txn_retry_backoff_max_ms",
)
LEAST: dict[str, float] = {
    **dict.fromkeys(AT_LEAST_ONE, 1),
    **dict.fromkeys(AT_LEAST_ZERO, 0),
    "group_consumer_regex_refresh_interval_ms": 10_000,  # Kafka's atLeast(10 * 1000)
}
"""Each key's least accepted value."""
ABOVE_ZERO = ("checkpoint_interval_s", "cleaner_interval_s", "checkpoint_max_interval_s")
"""Intervals of the engine's own threads: a zero one would spin."""


def check_engine_ranges(settings: Mapping[str, object]) -> None:
    """Raises ValueError naming the first key of ``settings`` outside its
    range (keys without one are left to their type check)."""
    for key, value in settings.items():
        if key == "group_consumer_migration_policy" and isinstance(value, str):
            if value.lower() not in MIGRATION_POLICIES:
                raise ValueError(
                    f"{key} must be one of {', '.join(MIGRATION_POLICIES)}, not {value!r}"
                )
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, not {value!r}")
        least = LEAST.get(key)
        if least is not None and value < least:
            raise ValueError(f"{key} must be {least:g} or more, not {value!r}")
        if key in ABOVE_ZERO and value <= 0:
            raise ValueError(f"{key} must be above 0, not {value!r}")
