"""tidelog's engine: Kafka semantics, the embedded API, the wire server and the CLI.

``engine.open(data_dir)`` opens an :class:`Engine` on a local data directory
(its WAL, and a local object store under it unless ``object_store`` names
another: ``s3://bucket/prefix?endpoint=...``, ``file:///path``).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from engine.clock import SYSTEM, Clock
from engine.protocol.kio_loading import load_kio_without_hypothesis

load_kio_without_hypothesis()  # before any module of the package imports kio

if TYPE_CHECKING:
    from engine.client.consumer import Consumer, NoOffsetForPartition
    from engine.client.producer import Producer
    from engine.config import ConfigEntry, ConfigSource, TopicConfig
    from engine.engine import Engine, EngineConfig
    from engine.errors import (
        AdminTimedOut,
        CorruptRecord,
        CorruptStoredData,
        EngineClosed,
        EngineError,
        Fenced,
        FlushInCallback,
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
        RecordListTooLarge,
        RecordTooLarge,
        StorageError,
        StoreUnavailable,
        StoreWriteFailed,
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
        SentBatch,
        TopicDescription,
        TopicPartition,
    )
    from s3stream import ObjectStore
    from s3stream.errors import ConfigOutOfRange

__version__ = "0.1.0"


def open(
    data_dir: str | os.PathLike[str],
    object_store: ObjectStore | str | None = None,
    config: EngineConfig | None = None,
    *,
    clock: Clock = SYSTEM,
) -> Engine:
    """Opens an engine on ``data_dir`` (created if missing); see :class:`Engine`."""
    from engine.engine import Engine  # noqa: PLC0415  (see _EXPORTS)

    return Engine.open(data_dir, object_store, config, clock=clock)


_EXPORTS = {
    "Consumer": "engine.client.consumer",
    "NoOffsetForPartition": "engine.client.consumer",
    "Producer": "engine.client.producer",
    "ConfigEntry": "engine.config",
    "ConfigSource": "engine.config",
    "TopicConfig": "engine.config",
    "Engine": "engine.engine",
    "EngineConfig": "engine.engine",
    "ConfigOutOfRange": "s3stream.errors",
    "CorruptRecord": "engine.errors",
    "CorruptStoredData": "engine.errors",
    "EngineClosed": "engine.errors",
    "EngineError": "engine.errors",
    "Fenced": "engine.errors",
    "FlushInCallback": "engine.errors",
    "InvalidConfig": "engine.errors",
    "InvalidPartitions": "engine.errors",
    "InvalidProducerEpoch": "engine.errors",
    "InvalidRecord": "engine.errors",
    "InvalidReplicationFactor": "engine.errors",
    "InvalidTimestamp": "engine.errors",
    "InvalidTopic": "engine.errors",
    "InvalidTxnState": "engine.errors",
    "AdminTimedOut": "engine.errors",
    "OffsetOutOfRange": "engine.errors",
    "OutOfOrderSequence": "engine.errors",
    "RecordListTooLarge": "engine.errors",
    "RecordTooLarge": "engine.errors",
    "StorageError": "engine.errors",
    "StoreUnavailable": "engine.errors",
    "StoreWriteFailed": "engine.errors",
    "TopicExists": "engine.errors",
    "UnknownPartition": "engine.errors",
    "UnknownTopic": "engine.errors",
    "UnsupportedCompressionType": "engine.errors",
    "GroupConfig": "engine.groups.config",
    "AppendResult": "engine.partition",
    "OffsetAndTimestamp": "engine.partition",
    "PartitionFetch": "engine.partition",
    "TransactionConfig": "engine.transactions.config",
    "ConsumerRecord": "engine.types",
    "NewTopic": "engine.types",
    "PartitionInfo": "engine.types",
    "RecordMetadata": "engine.types",
    "SentBatch": "engine.types",
    "TopicDescription": "engine.types",
    "TopicPartition": "engine.types",
    "ObjectStore": "s3stream",
}
"""Where each public name lives. They are imported on first use (PEP 562),
so importing a part of the package (engine.testing's pytest plugin, the
command line's parser) does not import the whole engine first."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once; later lookups are plain attribute reads
    return value


__all__ = [
    "AdminTimedOut",
    "AppendResult",
    "ConfigEntry",
    "ConfigOutOfRange",
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
    "FlushInCallback",
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
    "RecordListTooLarge",
    "RecordMetadata",
    "RecordTooLarge",
    "SentBatch",
    "StorageError",
    "StoreUnavailable",
    "StoreWriteFailed",
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
