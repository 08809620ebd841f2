"""Stream storage on object storage: a WAL on the write path, objects in a
bucket (or a local directory), a manifest with writer fencing.

Formats are specified in docs/object-format.md.
"""

from s3stream.append_options import (
    LOCAL,
    LOCAL_LATER,
    REMOTE,
    REMOTE_LATER,
    UNPACED,
    AppendOptions,
    Pacing,
)
from s3stream.appender import CallOnDurable, DurableCall
from s3stream.errors import (
    AppendTooLarge,
    ConditionalWritesNotEnforced,
    ConfigOutOfRange,
    CorruptIdentity,
    CorruptObject,
    Fenced,
    ForkPointInsideRange,
    NoRoom,
    OffsetMismatch,
    OffsetOutOfRange,
    RangeChanged,
    ReadPending,
    S3StreamError,
    StoreClosed,
    StoreFailed,
    StreamNotFound,
    StreamNotOpen,
    check_fits,
)
from s3stream.objects import StoredBatch
from s3stream.store import ObjectStore, ObjectStoreError, open_store
from s3stream.store_state import Retention
from s3stream.stream_store import (
    CloseReport,
    FetchResult,
    RecoverySummary,
    StoreStats,
    StreamStore,
    StreamStoreConfig,
)

__all__ = [
    "LOCAL",
    "LOCAL_LATER",
    "REMOTE",
    "REMOTE_LATER",
    "UNPACED",
    "AppendOptions",
    "AppendTooLarge",
    "CallOnDurable",
    "CloseReport",
    "ConditionalWritesNotEnforced",
    "ConfigOutOfRange",
    "CorruptIdentity",
    "CorruptObject",
    "DurableCall",
    "Fenced",
    "FetchResult",
    "ForkPointInsideRange",
    "NoRoom",
    "ObjectStore",
    "ObjectStoreError",
    "OffsetMismatch",
    "OffsetOutOfRange",
    "Pacing",
    "RangeChanged",
    "ReadPending",
    "RecoverySummary",
    "Retention",
    "S3StreamError",
    "StoreClosed",
    "StoreFailed",
    "StoreStats",
    "StoredBatch",
    "StreamNotFound",
    "StreamNotOpen",
    "StreamStore",
    "StreamStoreConfig",
    "check_fits",
    "open_store",
]
