"""Mirroring topics to a Kafka-compatible cluster, with offset translation
(docs/migration.md)."""
