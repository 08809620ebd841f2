"""tidelog under the distribution's own name: ``import tidelog`` gives the
engine's public API (the ``engine`` package's, name for name) and
``tidelog.testing`` (``engine.testing``: a Kafka broker for tests).

Nothing lives here: every name is the engine's own object, found on first
use, so ``import tidelog`` is as quick as ``import engine`` and the two
spellings never disagree (docs/testing-broker.md says why both exist).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import engine

if TYPE_CHECKING:
    from engine import (
        AppendResult,
        ConfigEntry,
        ConfigSource,
        Consumer,
        ConsumerRecord,
        CorruptRecord,
        CorruptStoredData,
        Engine,
        EngineClosed,
        EngineConfig,
        EngineError,
        Fenced,
        GroupConfig,
        InvalidConfig,
        InvalidPartitions,
        InvalidProducerEpoch,
        InvalidRecord,
        InvalidReplicationFactor,
        InvalidTimestamp,
        InvalidTopic,
        InvalidTxnState,
        NewTopic,
        NoOffsetForPartition,
        OffsetAndTimestamp,
        OffsetOutOfRange,
        OutOfOrderSequence,
        PartitionFetch,
        PartitionInfo,
        Producer,
        RecordMetadata,
        RecordTooLarge,
        StorageError,
        TopicConfig,
        TopicDescription,
        TopicExists,
        TopicPartition,
        TransactionConfig,
        UnknownPartition,
        UnknownTopic,
        UnsupportedCompressionType,
        __version__,
        open,
    )
    from tidelog import testing

# engine.__all__ and "testing"; tests/test_tidelog_package.py holds them equal.
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
    "testing",
]


def __getattr__(name: str) -> Any:
    if name == "testing":
        return importlib.import_module("tidelog.testing")
    if name not in engine.__all__:
        raise AttributeError(f"module 'tidelog' has no attribute {name!r}")
    value = getattr(engine, name)
    globals()[name] = value
    return value
