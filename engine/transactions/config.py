"""The transaction coordinator's settings: Kafka's broker configs of the
same names (in snake case), with Kafka's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config_ranges import TRANSACTION_RANGES
from s3stream.ranges import check_ranges


@dataclass(frozen=True)
class TransactionConfig:
    transaction_max_timeout_ms: int = 900_000
    """The longest transaction.timeout.ms a producer may ask for."""
    transactional_id_expiration_ms: int = 604_800_000
    """A transactional id unused this long (and with no open transaction) is forgotten."""
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int = 10_000
    """How often open transactions are checked against their timeout."""
    transaction_remove_expired_transaction_cleanup_interval_ms: int = 3_600_000
    """How often expired transactional ids are removed."""
    add_partitions_to_txn_retry_backoff_max_ms: int = 100
    """How long a Produce v12 (transactions v2) whose implicit add meets
    CONCURRENT_TRANSACTIONS asks again before it answers that (Kafka's
    ``add.partitions.to.txn.retry.backoff.max.ms``, KAFKA-18654); 0 answers
    the first refusal."""
    add_partitions_to_txn_retry_backoff_ms: int = 20
    """The pause between those asks (``add.partitions.to.txn.retry.backoff.ms``)."""

    def __post_init__(self) -> None:
        check_ranges(self, TRANSACTION_RANGES)
