"""Transactions: Kafka's exactly-once semantics, the coordinator side.

``coordinator`` is the facade the server and the embedded clients call;
``metadata`` is a transactional id's state machine, ``table`` its states
and their records in the "transactions" state log, ``completion`` the
markers that end a decided transaction, ``timers`` the timeout aborts and
the expiry of idle ids, ``host`` the narrow interface to the broker core.
A partition's side of its transactions sits beside the partition:
``engine.markers`` encodes and reads the control batches that end a
transaction, ``engine.partition_txns`` is a partition's view of its
transactions (the last stable offset and the aborted-transaction index),
``engine.isolation`` filters a fetch by isolation level.
docs/transactions.md describes the design.
"""
