"""tidelog's engine: Kafka semantics, the embedded API, the wire server and the CLI.

``engine.open(data_dir)`` opens an :class:`Engine` on a local data directory
(its WAL, and a local object store under it unless ``object_store`` names
another: ``s3://bucket/prefix?endpoint=...``, ``file:///path``).
"""

from __future__ import annotations

import os

from engine.client.consumer import Consumer, NoOffsetForPartition
from engine.client.producer import Producer
from engine.clock import SYSTEM, Clock
from engine.config import ConfigEntry, ConfigSource, TopicConfig
from engine.engine import Engine, EngineConfig
from engine.errors import (
    CorruptRecord,
    CorruptStoredData,
    EngineClosed,
    EngineError,
    Fenced,
    InvalidConfig,
    InvalidPartitions,
    InvalidProducerEpoch,
    InvalidRecord,
    InvalidReplicationFactor,
    InvalidTimestamp,
    InvalidTopic,
    InvalidTxnState,
    OffsetOutOfRange,
    OutOfOrderSequence,
    RecordTooLarge,
    StorageError,
    TopicExists,
    UnknownPartition,
    UnknownTopic,
    UnsupportedCompressionType,
)
from engine.groups.config import GroupConfig
from engine.partition import AppendResult, OffsetAndTimestamp, PartitionFetch
from engine.transactions.config import TransactionConfig
from engine.types import (
    ConsumerRecord,
    NewTopic,
    PartitionInfo,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
)
from s3stream import ObjectStore

__version__ = "0.1.0"


def open(
    data_dir: str | os.PathLike[str],
    object_store: ObjectStore | str | None = None,
    config: EngineConfig | None = None,
    *,
    clock: Clock = SYSTEM,
) -> Engine:
    """Opens an engine on ``data_dir`` (created if missing); see :class:`Engine`."""
    return Engine.open(data_dir, object_store, config, clock=clock)


__all__ = [
    "AppendResult",
    "ConfigEntry",
    "ConfigSource",
    "Consumer",
    "ConsumerRecord",
    "CorruptRecord",
    "CorruptStoredData",
    "Engine",
    "EngineClosed",
    "EngineConfig",
    "EngineError",
    "Fenced",
    "GroupConfig",
    "InvalidConfig",
    "InvalidPartitions",
    "InvalidProducerEpoch",
    "InvalidRecord",
    "InvalidReplicationFactor",
    "InvalidTimestamp",
    "InvalidTopic",
    "InvalidTxnState",
    "NewTopic",
    "NoOffsetForPartition",
    "OffsetAndTimestamp",
    "OffsetOutOfRange",
    "OutOfOrderSequence",
    "PartitionFetch",
    "PartitionInfo",
    "Producer",
    "RecordMetadata",
    "RecordTooLarge",
    "StorageError",
    "TopicConfig",
    "TopicDescription",
    "TopicExists",
    "TopicPartition",
    "TransactionConfig",
    "UnknownPartition",
    "UnknownTopic",
    "UnsupportedCompressionType",
    "__version__",
    "open",
]
