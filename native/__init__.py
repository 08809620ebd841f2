"""The hot loop's byte-level jobs, behind one API with two implementations.

``native._cnative`` is the C extension built at install time; ``native._pure``
is its pure-Python twin with identical results and errors. The C one is used
when it was built, unless ``TIDELOG_PURE=1`` is set. ``IMPLEMENTATION`` says
which is live. The record batch format is specified in docs/record-batch.md.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

from native.buffers import BytesLike
from native.errors import (
    BatchError,
    CorruptBatch,
    InflationLimitExceeded,
    InvalidBatchLength,
    InvalidMagic,
    InvalidRecord,
    InvalidRecordCount,
    NoBatch,
    NonZeroBaseOffset,
    RecordError,
    RejectedRecords,
    RejectedTimestamps,
    SecondBatch,
    StampedBatchTooLarge,
    TruncatedBatch,
    UnsupportedCompression,
    UnsupportedMagic,
)
from native.records import (
    CRC_COMBINE_MIN_BYTES,
    MAX_INFLATED,
    MAX_RECORD_ERRORS,
    BatchHeader,
    BinaryColumn,
    Compression,
    Record,
    RecordColumns,
    RecordSpec,
    TimestampType,
)


def _select() -> tuple[ModuleType, str]:
    # The pure twin is imported only when it is the one used: it loads the
    # crc32c package, whose import reads every installed package's metadata.
    if os.environ.get("TIDELOG_PURE", "") not in ("", "0"):
        return importlib.import_module("native._pure"), "python"
    try:
        return importlib.import_module("native._cnative"), "c"
    except ImportError:
        return importlib.import_module("native._pure"), "python"


_impl, IMPLEMENTATION = _select()

FLAT_BUFFER_TYPES: tuple[type, ...] = (
    (bytes, _impl.ByteSlice) if IMPLEMENTATION == "c" else (bytes,)
)
"""The buffer types whose len() is always their size in bytes and that are
one buffer, never a sequence of parts: bytes, and with the C extension its
ByteSlice (untracked_view's, read-only itself, though a bytearray's bytes
under it may still be written through the bytearray), which a caller takes
as they are where it would otherwise make a flat memoryview of a buffer."""

if TYPE_CHECKING:
    # Both implementations share the pure one's signatures.
    from native._pure import (
        crc32c,
        crc32c_backend,
        crc32c_batches,
        crc32c_combine,
        decode_records,
        encode_batch,
        encode_entries,
        encode_records,
        extend_unfilled,
        frame_wal_records,
        join_parts,
        place_wal_record,
        produce_batch_size,
        rewrite_batch,
        scan_batches,
        stamp_batch,
        stamp_wal_records,
        unfilled_bytearray,
        untracked_record,
        untracked_tuple,
        untracked_view,
        validate_batches,
    )
else:
    crc32c = _impl.crc32c
    crc32c_backend = _impl.crc32c_backend
    crc32c_batches = _impl.crc32c_batches
    crc32c_combine = _impl.crc32c_combine
    scan_batches = _impl.scan_batches
    produce_batch_size = _impl.produce_batch_size
    validate_batches = _impl.validate_batches
    rewrite_batch = _impl.rewrite_batch
    decode_records = _impl.decode_records
    encode_batch = _impl.encode_batch
    encode_records = _impl.encode_records
    encode_entries = _impl.encode_entries
    join_parts = _impl.join_parts
    stamp_batch = _impl.stamp_batch
    unfilled_bytearray = _impl.unfilled_bytearray
    extend_unfilled = _impl.extend_unfilled
    frame_wal_records = _impl.frame_wal_records
    stamp_wal_records = _impl.stamp_wal_records
    place_wal_record = _impl.place_wal_record
    untracked_view = _impl.untracked_view
    untracked_record = _impl.untracked_record
    untracked_tuple = _impl.untracked_tuple


def decode_columns(
    data: BytesLike,
    *,
    min_offset: int = -(2**63),
    skip_control: bool = False,
    max_inflated: int = MAX_INFLATED,
) -> RecordColumns:
    """The records ``decode_records`` gives for the same arguments (and its
    errors), as column buffers an Apache Arrow array is built over without
    a Python object per record (engine/tables/columns.py)."""
    return RecordColumns.from_raw(
        _impl.decode_columns(
            data, min_offset=min_offset, skip_control=skip_control, max_inflated=max_inflated
        )
    )


__all__ = [
    "CRC_COMBINE_MIN_BYTES",
    "FLAT_BUFFER_TYPES",
    "IMPLEMENTATION",
    "MAX_INFLATED",
    "MAX_RECORD_ERRORS",
    "BatchError",
    "BatchHeader",
    "BinaryColumn",
    "Compression",
    "CorruptBatch",
    "InflationLimitExceeded",
    "InvalidBatchLength",
    "InvalidMagic",
    "InvalidRecord",
    "InvalidRecordCount",
    "NoBatch",
    "NonZeroBaseOffset",
    "Record",
    "RecordColumns",
    "RecordError",
    "RecordSpec",
    "RejectedRecords",
    "RejectedTimestamps",
    "SecondBatch",
    "StampedBatchTooLarge",
    "TimestampType",
    "TruncatedBatch",
    "UnsupportedCompression",
    "UnsupportedMagic",
    "crc32c",
    "crc32c_backend",
    "crc32c_batches",
    "crc32c_combine",
    "decode_columns",
    "decode_records",
    "encode_batch",
    "encode_entries",
    "encode_records",
    "extend_unfilled",
    "frame_wal_records",
    "join_parts",
    "place_wal_record",
    "produce_batch_size",
    "rewrite_batch",
    "scan_batches",
    "stamp_batch",
    "stamp_wal_records",
    "unfilled_bytearray",
    "untracked_record",
    "untracked_tuple",
    "untracked_view",
    "validate_batches",
]
