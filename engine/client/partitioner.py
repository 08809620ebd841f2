"""Kafka's default partitioner: murmur2 of the key, sticky for null keys.

A keyed record lands on ``(murmur2(key) & 0x7fffffff) % partitions``, the
same partition the Java client, librdkafka's ``murmur2_random`` and
kafka-python pick, so code that moves between tidelog's embedded producer
and a Kafka client keeps each key's order. Records without a key stick to
one random partition until a batch's worth of bytes went there (KIP-480),
which keeps batches large.
"""

from __future__ import annotations

import random

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (``Utils.murmur2``), as an unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class StickyPartitioner:
    """Picks a partition for records without a key: one partition until
    ``batch_bytes`` went to it, then another one at random."""

    def __init__(self, batch_bytes: int, rng: random.Random | None = None) -> None:
        self.batch_bytes = batch_bytes
        self._rng = rng or random.Random()
        self._current: dict[str, tuple[int, int]] = {}

    def partition(self, topic: str, partitions: int, size: int) -> int:
        current = self._current.get(topic)
        if current is None or current[0] >= partitions or current[1] >= self.batch_bytes:
            previous = current[0] if current is not None else -1
            choice = self._rng.randrange(partitions)
            if partitions > 1 and choice == previous:
                choice = (choice + 1 + self._rng.randrange(partitions - 1)) % partitions
            current = (choice, 0)
        self._current[topic] = (current[0], current[1] + size)
        return current[0]
