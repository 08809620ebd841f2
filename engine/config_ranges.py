"""The ranges of the engine's settings: EngineConfig's own, GroupConfig's
and TransactionConfig's, each checked when its config is made and by the
config file's reader for its [engine] table (docs/design/0132).

Where Kafka's broker has the setting, its range is the one of Kafka's
config definition (GroupCoordinatorConfig.CONFIG_DEF,
TransactionStateManagerConfig, TransactionLogConfig,
ProducerStateManagerConfig, ServerLogConfigs: ``atLeast(1)`` for most); the
few it leaves open (group.min.session.timeout.ms,
group.max.session.timeout.ms, group.initial.rebalance.delay.ms,
offset.metadata.max.bytes, add.partitions.to.txn.retry.backoff.max.ms) take
0 or more here, since a negative one has no meaning.
"""

from __future__ import annotations

from s3stream.ranges import Range, at_least, seconds

ENGINE_RANGES: dict[str, Range] = {
    "default_partitions": at_least(1),  # Kafka's num.partitions
    "checkpoint_interval_s": seconds(),  # the engine's own threads: 0 would spin
    "checkpoint_bytes": at_least(1),
    "checkpoint_replay_bytes": at_least(1),
    "checkpoint_max_interval_s": seconds(),
    "producer_id_expiration_ms": at_least(1),  # Kafka's producer.id.expiration.ms
    "cleaner_interval_s": seconds(),
}
"""EngineConfig's own numbers."""

GROUP_RANGES: dict[str, Range] = {
    "group_min_session_timeout_ms": at_least(0),
    "group_max_session_timeout_ms": at_least(0),
    "group_initial_rebalance_delay_ms": at_least(0),
    "group_max_size": at_least(1),
    "offsets_retention_minutes": at_least(1, integer=False),
    "offsets_retention_check_interval_ms": at_least(1),
    "offset_metadata_max_bytes": at_least(0),
    # Kafka's atLeast(1), but a session timeout is above a heartbeat
    # interval of at least 1 (GROUP_ORDER), and its max at least it.
    "group_consumer_session_timeout_ms": at_least(2),
    "group_consumer_heartbeat_interval_ms": at_least(1),
    "group_consumer_min_session_timeout_ms": at_least(1),
    "group_consumer_max_session_timeout_ms": at_least(2),
    "group_consumer_min_heartbeat_interval_ms": at_least(1),
    "group_consumer_max_heartbeat_interval_ms": at_least(1),
    "group_consumer_max_size": at_least(1),
    "group_consumer_regex_refresh_interval_ms": at_least(10_000),  # atLeast(10 * 1000)
    "group_consumer_regex_batch_refresh_interval_ms": at_least(1),
}
"""GroupConfig's numbers (Kafka's group.* and offsets.* settings)."""

GROUP_ORDER: tuple[tuple[str, str, str], ...] = (
    (
        "group_consumer_max_heartbeat_interval_ms",
        "at least",
        "group_consumer_min_heartbeat_interval_ms",
    ),
    (
        "group_consumer_heartbeat_interval_ms",
        "at least",
        "group_consumer_min_heartbeat_interval_ms",
    ),
    ("group_consumer_heartbeat_interval_ms", "at most", "group_consumer_max_heartbeat_interval_ms"),
    ("group_consumer_max_session_timeout_ms", "at least", "group_consumer_min_session_timeout_ms"),
    ("group_consumer_session_timeout_ms", "at least", "group_consumer_min_session_timeout_ms"),
    ("group_consumer_session_timeout_ms", "at most", "group_consumer_max_session_timeout_ms"),
    ("group_consumer_heartbeat_interval_ms", "below", "group_consumer_session_timeout_ms"),
)
"""How GroupConfig's consumer-group bounds order one another, each as
(setting, relation, other setting): Kafka's GroupCoordinatorConfig requires
the same of its group.consumer.* settings when the broker starts."""

TRANSACTION_RANGES: dict[str, Range] = {
    "transaction_max_timeout_ms": at_least(1),
    "transactional_id_expiration_ms": at_least(1),
    "transaction_abort_timed_out_transaction_cleanup_interval_ms": at_least(1),
    "transaction_remove_expired_transaction_cleanup_interval_ms": at_least(1),
    "add_partitions_to_txn_retry_backoff_max_ms": at_least(0),
    "add_partitions_to_txn_retry_backoff_ms": at_least(1),
}
"""TransactionConfig's numbers (Kafka's transaction.* settings)."""

ENGINE_TABLE_RANGES = {**ENGINE_RANGES, **GROUP_RANGES, **TRANSACTION_RANGES}
"""What the config file's [engine] table sets, by key: the three configs' fields."""
