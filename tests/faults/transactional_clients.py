"""Transactional producers of real clients that commit through refused
writes: one transaction a value, each written to the partitions given."""

from __future__ import annotations

from collections.abc import Sequence

from kafka import KafkaProducer


def kafka_python_commits(
    bootstrap: str, topic: str, values: Sequence[bytes], partitions: Sequence[int], timeout: float
) -> None:
    """kafka-python as transactional id "tx": a transaction for each of
    ``values``, sent to each of ``partitions`` of ``topic`` and committed
    (its retries of what is refused are its own; it raises on what it
    does not retry)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id="tx", max_block_ms=int(timeout * 1000)
    )
    try:
        producer.init_transactions()
        for value in values:
            producer.begin_transaction()
            for partition in partitions:
                producer.send(topic, value, partition=partition).get(timeout=timeout)
            producer.commit_transaction()
    finally:
        producer.close(timeout=10)
