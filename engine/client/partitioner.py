"""Partitioners by librdkafka's names: which partition a record's key picks.

A Kafka client hashes a record's key to pick its partition, and clients do
not agree on the hash. The Java client, kafka-python, aiokafka and kafkajs
(its DefaultPartitioner) use murmur2: ``(murmur2(key) & 0x7fffffff) %
partitions``. librdkafka, and so confluent-kafka, defaults to
``consistent_random``: ``crc32(key) % partitions``. Code that writes a topic
from tidelog's embedded producer and from a Kafka client keeps each key's
order only if both pick with the same hash, so the embedded producer takes
librdkafka's ``partitioner`` names (docs/engine.md says which client each
matches).

Records the partitioner does not hash (no key for the ``*_random`` ones;
every record for ``random``) stick to one random partition until a batch's
worth of bytes went there (KIP-480), which keeps batches large.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import NamedTuple

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


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


def fnv1a(data: bytes) -> int:
    """librdkafka's ``rd_fnv1a``: 32-bit FNV-1a read as a signed int, then its
    absolute value (as Sarama's hash partitioner does)."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return h if h < 0x80000000 else 0x100000000 - h


def partition_for_key(key: bytes, partitions: int) -> int:
    """murmur2's partition: the Java client's (``BuiltInPartitioner``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _crc32_partition(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


def _fnv1a_partition(key: bytes, partitions: int) -> int:
    return fnv1a(key) % partitions


def _unhashed(key: bytes, partitions: int) -> None:
    return None


class KeyPartitioner(NamedTuple):
    """How one named partitioner treats a key: ``partition(key, count)`` for
    the keys it hashes, None for those it leaves to the sticky partition."""

    name: str
    hash_partition: Callable[[bytes, int], int | None]
    hashes_null: bool
    """A null key is hashed as the empty key (librdkafka's ``murmur2``,
    ``consistent`` and ``fnv1a`` send every keyless record to one partition)."""
    hashes_empty: bool
    """An empty key is hashed (all but ``consistent_random`` and ``random``)."""

    def partition(self, key: bytes | None, partitions: int) -> int | None:
        """The partition ``key`` picks, or None: the sticky partition's turn."""
        if key is None:
            return self.hash_partition(b"", partitions) if self.hashes_null else None
        if not key and not self.hashes_empty:
            return None
        return self.hash_partition(key, partitions)


PARTITIONERS = {
    p.name: p
    for p in (
        # librdkafka's rdkafka_msg.c, rd_kafka_msg_partitioner_*.
        KeyPartitioner("murmur2_random", partition_for_key, False, True),
        KeyPartitioner("murmur2", partition_for_key, True, True),
        KeyPartitioner("consistent_random", _crc32_partition, False, False),
        KeyPartitioner("consistent", _crc32_partition, True, True),
        KeyPartitioner("fnv1a_random", _fnv1a_partition, False, True),
        KeyPartitioner("fnv1a", _fnv1a_partition, True, True),
        KeyPartitioner("random", _unhashed, False, False),
    )
}
"""Every partitioner the embedded producer offers, by librdkafka's name."""

DEFAULT_PARTITIONER = "murmur2_random"
"""The Java client's and the pure-Python clients' choice (see docs/engine.md)."""


def key_partitioner(name: str) -> KeyPartitioner:
    """The partitioner called ``name``; ValueError names the choices."""
    try:
        return PARTITIONERS[name]
    except KeyError:
        raise ValueError(
            f"unknown partitioner {name!r}; one of {', '.join(sorted(PARTITIONERS))}"
        ) from None


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
