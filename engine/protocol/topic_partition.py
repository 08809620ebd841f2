"""TopicPartition: the pair every Kafka API names, here so that the protocol
layer can use it without importing the engine (engine.types re-exports it)."""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int
