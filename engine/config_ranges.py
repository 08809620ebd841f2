"""The ranges of the engine's settings: EngineConfig's own, GroupConfig's,
TransactionConfig's, TablesConfig's and DelegationTokenConfig's, each
checked when its config is made and by the config file's reader for its
[engine] and [tables] tables (docs/design/0132, 0139).

Where Kafka's broker has the setting, its range is the one of Kafka's
config definition (GroupCoordinatorConfig.CONFIG_DEF,
TransactionStateManagerConfig, TransactionLogConfig,
ProducerStateManagerConfig, ServerLogConfigs: ``atLeast(1)`` for most); the
few it leaves open (group.min.session.timeout.ms,
group.max.session.timeout.ms, group.initial.rebalance.delay.ms,
offset.metadata.max.bytes, add.partitions.to.txn.retry.backoff.max.ms) take
0 or more here, since a negative one has no meaning. A size or count Kafka
holds in an INT is at most a Java int here too (docs/design/0139).
"""

from __future__ import annotations

from s3stream.ranges import (
    INT_MAX,
    SECONDS_MAX,
    Range,
    Text,
    at_least,
    choice,
    count,
    memory,
    seconds,
)

ENGINE_RANGES: dict[str, Range] = {
    "default_partitions": count(1),  # Kafka's num.partitions, an INT
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
    "group_max_size": count(1),  # an INT, as the counts below
    # Kafka's offsets.retention.minutes is an INT: at most a Java int here
    # too, so offsets_retention_ms (round(minutes * 60_000)) is a number; a
    # finite float past float's range over 60000 made it an infinity.
    "offsets_retention_minutes": at_least(1, integer=False, most=INT_MAX),
    "offsets_retention_check_interval_ms": at_least(1),
    "offset_metadata_max_bytes": count(0),
    # Kafka's atLeast(1), but a session timeout is above a heartbeat
    # interval of at least 1 (GROUP_ORDER), and its max at least it.
    "group_consumer_session_timeout_ms": at_least(2),
    "group_consumer_heartbeat_interval_ms": at_least(1),
    "group_consumer_min_session_timeout_ms": at_least(1),
    "group_consumer_max_session_timeout_ms": at_least(2),
    "group_consumer_min_heartbeat_interval_ms": at_least(1),
    "group_consumer_max_heartbeat_interval_ms": at_least(1),
    "group_consumer_max_size": count(1),
    "group_consumer_regex_refresh_interval_ms": at_least(10_000),  # atLeast(10 * 1000)
    "group_consumer_regex_batch_refresh_interval_ms": at_least(1),
}
"""GroupConfig's numbers (Kafka's group.* and offsets.* settings)."""

SERVER_ASSIGNORS = ("uniform", "range")
"""The server-side assignors of KIP-848 groups, by name (engine/groups/assignors.py)."""

MIGRATION_POLICIES = ("bidirectional", "upgrade", "downgrade", "disabled")
"""Kafka's ConsumerGroupMigrationPolicy values (case does not matter)."""

GROUP_TEXTS: dict[str, Text] = {
    # Kafka's ConsumerGroupMigrationPolicy.parse reads the name in any case.
    "group_consumer_migration_policy": Text(choices=MIGRATION_POLICIES, any_case=True),
    # Kafka's group.consumer.assignors, a LIST: the first is the default.
    "group_consumer_assignors": Text(choices=SERVER_ASSIGNORS, nonempty=True, listed=True),
}
"""GroupConfig's strings."""

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

KEEP_SNAPSHOTS_S_MOST = 10**12
"""The longest a table keeps its snapshots by age, in seconds."""

TABLES_RANGES: dict[str, Range] = {
    "commit_records": at_least(1),  # a threshold: nothing is sized by it
    "commit_bytes": memory(1),  # one read of stored batches, held in memory
    # The table thread's timed wait: above 0, else it would spin.
    "poll_interval_s": Range(least=0, most=60, integer=False, above=True),
    # 0: never expired by age. The expiry keeps round(keep_snapshots_s * 1000)
    # ms of snapshots, and past float's range that product is an infinity no
    # int is made of: at most 10**12 s (some 31,000 years), whose ms a float
    # holds exactly and a LONG with room to spare, as Iceberg's
    # history.expire.max-snapshot-age-ms.
    "keep_snapshots_s": at_least(0, integer=False, most=KEEP_SNAPSHOTS_S_MOST),
    "keep_snapshots": at_least(1),
    "expire_interval_s": at_least(0, integer=False),
}
"""TablesConfig's numbers (the [tables] table)."""

CATALOGS = ("sql", "rest")

TABLES_TEXTS: dict[str, Text] = {
    "catalog": choice(*CATALOGS),
    "uri": Text(),  # "": the default of the catalog (rest: refused, it needs one)
    "warehouse": Text(),
    "namespace": Text(nonempty=True),  # and no '.' (TablesConfig)
}
"""TablesConfig's strings (the [tables] table)."""

DELEGATION_TOKEN_RANGES: dict[str, Range] = {
    # Kafka's delegation.token.* are LONGs, atLeast(1), and so unbounded
    # here: a token's lifetimes are added to its issue time and clamped to
    # the latest timestamp, and the sweep's interval is a deadline the
    # maintenance thread compares, never a wait it makes.
    "expiry_time_ms": at_least(1),
    "max_lifetime_ms": at_least(1),
    "expiry_check_interval_ms": at_least(1),
}
"""DelegationTokenConfig's numbers (Kafka's delegation.token.* settings; the
server's file sets them as [server]'s delegation.token.*)."""

DELEGATION_TOKEN_TEXTS: dict[str, Text] = {
    "secret_key": Text(optional=True, secret=True),  # None: tokens are off
}
"""DelegationTokenConfig's strings."""

MIRROR_RANGES: dict[str, Range] = {
    # Waits of the mirror's threads: above 0, else they would spin (the
    # range its own check had), and at most a year, as every interval.
    "checkpoint_interval_s": Range(least=0, most=SECONDS_MAX, integer=False, above=True),
    "topic_refresh_s": Range(least=0, most=SECONDS_MAX, integer=False, above=True),
}
"""MirrorSettings' numbers (``tidelog mirror``'s flags and the [mirror] table)."""

MIRROR_TEXTS: dict[str, Text] = {
    "source": Text(nonempty=True),  # bootstrap servers, host:port[,...]
    "target": Text(nonempty=True),
    "topics": Text(),  # a regular expression (MirrorSettings compiles it)
    "groups": Text(),
    # librdkafka's properties of each side's clients, all strings to it;
    # secret, since they hold sasl.password and ssl.key.password
    "source_config": Text(table=True, secret=True),
    "target_config": Text(table=True, secret=True),
}
"""MirrorSettings' strings."""

AUTHORIZATION_TEXTS: dict[str, Text] = {
    # Kafka's super.users: principals, "User:a;User:b" in its own form.
    "super_users": Text(listed=True, separator=";"),
}
"""AuthorizationConfig's strings (the server's file sets them as [server]'s super.users)."""

AUTHORIZATION_FLAGS = ("allow_everyone_if_no_acl_found",)
"""AuthorizationConfig's flags."""
