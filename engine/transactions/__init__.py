"""Transactions: Kafka's exactly-once semantics.

``coordinator`` owns transactional ids and their state machine (kept in the
"transactions" state log); ``markers`` encodes and reads the control batches
that end a transaction in each partition; ``partition_txns`` is a
partition's view of its transactions (the last stable offset and the
aborted-transaction index). docs/transactions.md describes the design.
"""
