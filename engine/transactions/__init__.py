"""Transactions: Kafka's exactly-once semantics, the coordinator side.

``coordinator`` owns transactional ids and their state machine (kept in the
"transactions" state log). A partition's side of its transactions sits
beside the partition: ``engine.markers`` encodes and reads the control
batches that end a transaction, ``engine.partition_txns`` is a partition's
view of its transactions (the last stable offset and the aborted-transaction
index), ``engine.isolation`` filters a fetch by isolation level.
docs/transactions.md describes the design.
"""
