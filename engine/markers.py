"""Transaction markers: the control batches that end a transaction in a partition.

A marker is a v2 record batch with the control and transactional attribute
bits, the producer's id and epoch, no sequence (-1), and one record whose
key is ``(version int16 = 0, type int16)`` (0 abort, 1 commit) and whose
value is ``(version int16 = 0, coordinator epoch int32)``: Kafka's
EndTransactionMarker, byte for byte, so every Kafka client reads it.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import native
from native import RecordSpec

ABORT = 0
COMMIT = 1

_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")
_VERSION = 0


class Marker(NamedTuple):
    commit: bool
    coordinator_epoch: int


def encode(
    producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool, timestamp: int
) -> bytes:
    """A marker batch at base offset 0 (the partition rewrites its offset)."""
    key = _KEY.pack(_VERSION, COMMIT if commit else ABORT)
    value = _VALUE.pack(_VERSION, coordinator_epoch)
    return native.encode_batch(
        [RecordSpec(timestamp, key, value, ())],
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=-1,
        is_transactional=True,
        is_control=True,
    )


class InvalidMarker(ValueError):
    """A control batch whose record is not an end-transaction marker."""


def decode(batch: bytes | bytearray | memoryview) -> Marker | None:
    """The marker in one control batch; None for a control record of another
    type (Kafka reserves types above 1), which ends no transaction."""
    records = native.decode_records(batch)
    if len(records) != 1 or records[0].key is None or len(records[0].key) < _KEY.size:
        raise InvalidMarker(f"a control batch holds {len(records)} records, not one marker")
    _, kind = _KEY.unpack_from(records[0].key)
    if kind not in (ABORT, COMMIT):
        return None
    value = records[0].value
    coordinator_epoch = -1
    if value is not None and len(value) >= _VALUE.size:
        coordinator_epoch = _VALUE.unpack_from(value)[1]
    return Marker(kind == COMMIT, coordinator_epoch)
