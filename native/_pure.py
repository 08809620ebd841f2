"""Pure-Python twin of native._cnative: the same functions, results and errors.

It is the reference the C extension is tested against, and what runs when the
extension is not built (or ``TIDELOG_PURE=1``). Every check happens in the same
order as in C so that both raise the same error, with the same facts, for the
same bad input. See docs/record-batch.md.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import crc32c as _crc32c_lib

from native import compression
from native.buffers import BytesLike
from native.errors import (
    NO_KEY_MESSAGE,
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
    COMPRESSION_MASK,
    CONTROL_BIT,
    CRC_COMBINE_MIN_BYTES,
    CRC_START,
    HEADER_SIZE,
    LENGTH_PREFIX,
    MAGIC_OFFSET,
    MAX_INFLATED,
    MAX_MAGIC,
    MAX_RECORD_ERRORS,
    MIN_FRAMED_LENGTH,
    NO_TIMESTAMP,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    Compression,
    Header,
    Record,
    RecordSpec,
)

_HEADER = struct.Struct(">qiibIhiqqqhii")
_ATTRIBUTES = struct.Struct(">h")
_ATTRIBUTES_OFFSET = 21
_U64 = 1 << 64
_I64_MIN = 1 << 63
_MAX_CODEC = 4
_I32_MAX = (1 << 31) - 1
_I64_MAX = (1 << 63) - 1


def _check_int(value: int, bits: int, name: str) -> int:
    """Range-checks an integer argument as the C implementation's parser does."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise OverflowError(f"{name} {value} does not fit in a signed {bits}-bit integer")
    return value


def _byte_view(data: BytesLike) -> memoryview:
    """A flat byte view of any buffer, refusing what C's PyBUF_SIMPLE refuses."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise BufferError("the buffer is not C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def crc32c(data: BytesLike, crc: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continuing from a previous ``crc``."""
    if not 0 <= crc <= 0xFFFFFFFF:
        raise OverflowError(f"crc {crc} does not fit in 32 bits")
    return int(_crc32c_lib.crc32c(_byte_view(data), crc))


def crc32c_backend() -> str:
    return "crc32c-package"


_POLY = 0x82F63B78
"""Castagnoli's polynomial, bit-reversed."""


def _multmodp(a: int, b: int) -> int:
    """a * b mod P, both bit-reversed (bit 31 is x^0)."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    p = 1 << 30  # x^1
    table = [p]
    for _ in range(31):
        p = _multmodp(p, p)
        table.append(p)
    return table


_X2N = _x2n_table()
"""x^(2^n) mod P for n = 0..31: the powers that carry a CRC over 2^n zero bits."""


def crc32c_combine(crc1: int, crc2: int, length: int) -> int:
    """The CRC32C of A then B from A's CRC, B's (from 0) and B's length,
    without reading B (zlib's crc32_combine, for Castagnoli's polynomial)."""
    for name, crc in (("crc", crc1), ("crc", crc2)):
        if not isinstance(crc, int):
            raise TypeError(f"{name} must be an int, not {type(crc).__name__}")
        if not 0 <= crc <= 0xFFFFFFFF:
            raise OverflowError(f"crc {crc} does not fit in 32 bits")
    if not isinstance(length, int):
        raise TypeError(f"length must be an int, not {type(length).__name__}")
    if length < 0:
        raise ValueError("length must not be negative")
    power, k, n = 1 << 31, 3, length  # x^0; bits are bytes * 2^3
    while n:
        if n & 1:
            power = _multmodp(_X2N[k & 31], power)
        n >>= 1
        k += 1
    return _multmodp(power, crc1) ^ crc2


_MAGIC_AT = 16
_CRC_AT = 17
_LENGTH_AT = 8


def crc32c_batches(data: BytesLike, crc: int = 0) -> int:
    """As ``crc32c(data, crc)`` whenever every v2 batch ``data`` frames
    carries the right CRC of its bytes from attributes on (validate_batches
    checked them): those bytes are not read again, each batch's own CRC is
    combined in. Bytes that do not frame as a v2 batch are read."""
    if not 0 <= crc <= 0xFFFFFFFF:
        raise OverflowError(f"crc {crc} does not fit in 32 bits")
    view = _byte_view(data)
    position, end = 0, len(view)
    while end - position >= HEADER_SIZE:
        length = int.from_bytes(view[position + _LENGTH_AT : position + _LENGTH_AT + 4], "big")
        size = length + LENGTH_PREFIX
        if view[position + _MAGIC_AT] != 2 or size > end - position or size < HEADER_SIZE:
            break
        covered = size - CRC_START
        crc = crc32c(view[position : position + CRC_START], crc)
        if covered >= CRC_COMBINE_MIN_BYTES:
            stored = int.from_bytes(view[position + _CRC_AT : position + CRC_START], "big")
            crc = crc32c_combine(crc, stored, covered)
        else:
            crc = crc32c(view[position + CRC_START : position + size], crc)
        position += size
    return crc32c(view[position:], crc)


def _wrap64(value: int) -> int:
    """Two's-complement int64 wrap, as the C implementation computes it."""
    return ((value + _I64_MIN) % _U64) - _I64_MIN


def _read_header(buf: memoryview, pos: int, end: int) -> BatchHeader:
    if end - pos < LENGTH_PREFIX:
        raise TruncatedBatch(
            f"batch at {pos}: {end - pos} bytes left, a batch needs {LENGTH_PREFIX} to frame",
            position=pos,
            expected=LENGTH_PREFIX,
            found=end - pos,
        )
    (batch_length,) = struct.unpack_from(">i", buf, pos + 8)
    if batch_length < HEADER_SIZE - LENGTH_PREFIX:
        raise InvalidBatchLength(
            f"batch at {pos}: batchLength {batch_length} is shorter than a v2 header",
            position=pos,
            expected=HEADER_SIZE - LENGTH_PREFIX,
            found=batch_length,
        )
    size = LENGTH_PREFIX + batch_length
    if size > end - pos:
        raise TruncatedBatch(
            f"batch at {pos}: needs {size} bytes, the buffer has {end - pos}",
            position=pos,
            expected=size,
            found=end - pos,
        )
    (magic,) = struct.unpack_from(">b", buf, pos + 16)
    if magic != 2:
        # Kafka's iterator refuses a magic no format has as corrupt.
        invalid = magic < 0 or magic > MAX_MAGIC
        raise (InvalidMagic if invalid else UnsupportedMagic)(
            f"batch at {pos}: magic {magic}, only magic 2 is accepted",
            position=pos,
            expected=2,
            found=magic,
        )
    return BatchHeader(pos, *_HEADER.unpack_from(buf, pos))


def _read_varint(buf: memoryview, pos: int, end: int, max_bytes: int) -> tuple[int, int]:
    """Zigzag varint of at most ``max_bytes`` (5: int32, 10: int64) -> (value, next)."""
    bits = 32 if max_bytes == 5 else 64
    raw = 0
    shift = 0
    for i in range(max_bytes):
        if pos + i >= end:
            raise IndexError
        byte = buf[pos + i]
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            raw &= (1 << bits) - 1
            return (raw >> 1) ^ -(raw & 1), pos + i + 1
        shift += 7
    raise IndexError


def _record_offset_delta(buf: memoryview, pos: int, end: int) -> int:
    """The offsetDelta of the record whose body is buf[pos:end]."""
    if end - pos < 1:
        raise IndexError
    _, pos = _read_varint(buf, pos + 1, end, 10)  # past attributes and timestampDelta
    offset_delta, _ = _read_varint(buf, pos, end, 5)
    return offset_delta


def _check_offset_delta(
    buf: memoryview, start: int, pos: int, end: int, previous: int, header: BatchHeader
) -> int:
    """A stored batch's record: its offsetDelta is above the previous one's, within the range."""
    try:
        offset_delta = _record_offset_delta(buf, pos, end)
    except IndexError:
        raise InvalidRecord(
            f"record at {start}: no offsetDelta within its length", position=start
        ) from None
    if offset_delta <= previous:
        raise InvalidRecord(
            f"record at {start}: offsetDelta {offset_delta} does not follow the previous "
            f"record's {previous}",
            position=start,
            expected=previous + 1,
            found=offset_delta,
        )
    if offset_delta > header.last_offset_delta:
        raise InvalidRecord(
            f"record at {start}: offsetDelta {offset_delta} is past lastOffsetDelta "
            f"{header.last_offset_delta}",
            position=start,
            expected=header.last_offset_delta,
            found=offset_delta,
        )
    return offset_delta


def _walk_stored_records(buf: memoryview, header: BatchHeader) -> None:
    """Check that the record length prefixes tile an uncompressed stored batch
    exactly (batch.c's walk_stored_records).

    A stored batch may have gaps in its offsets, so its recordCount no longer
    pins them: each record's offsetDelta is checked against the range instead.
    """
    pos = header.position + HEADER_SIZE
    end = header.position + header.size
    previous = -1
    for _ in range(header.record_count):
        start = pos
        try:
            length, pos = _read_varint(buf, pos, end, 5)
        except IndexError:
            raise InvalidRecord(f"record at {start}: bad length varint", position=start) from None
        if length < 0 or length > end - pos:
            raise InvalidRecord(
                f"record at {start}: length {length} runs past the batch end {end}",
                position=start,
                found=length,
            )
        previous = _check_offset_delta(buf, start, pos, pos + length, previous, header)
        pos += length
    if pos != end:
        raise InvalidRecord(
            f"batch at {header.position}: records end at {pos}, the batch at {end}",
            position=pos,
            expected=end,
            found=pos,
        )


def _walk_client_records(buf: memoryview, header: BatchHeader) -> BatchHeader:
    """A client's uncompressed batch: every record framed as Kafka's
    DefaultRecord.readFrom reads it, with no rule applied; the header as
    _keep_records_max leaves it (batch.c's walk_client_records)."""
    start = header.position + HEADER_SIZE
    area = buf[start : header.position + header.size]
    return _keep_records_max(header, _walk_records(area, start, header, _FORMAT_ONLY).largest)


def _keep_records_max(header: BatchHeader, largest: int) -> BatchHeader:
    """batch.c's tl_keep_records_max: Kafka's LogValidator stores a CreateTime
    batch with the largest of its records' timestamps (setMaxTimestamp),
    whatever the producer claimed; a batch marked LogAppendTime keeps its
    own, which each of its records reads."""
    if header.attributes & TIMESTAMP_TYPE_BIT or header.max_timestamp == largest:
        return header
    return header._replace(max_timestamp=largest)


def _check_batch(buf: memoryview, header: BatchHeader, from_client: bool) -> BatchHeader:
    """The header as checked: a client's uncompressed batch's with its
    records' largest timestamp (_keep_records_max)."""
    pos = header.position
    computed = crc32c(buf[pos + CRC_START : pos + header.size])
    if computed != header.crc:
        raise CorruptBatch(
            f"batch at {pos}: CRC32C {computed:#010x}, header says {header.crc:#010x}",
            position=pos,
            expected=header.crc,
            found=computed,
        )
    if header.compression > _MAX_CODEC:
        raise UnsupportedCompression(
            f"batch at {pos}: compression codec {header.compression} does not exist",
            position=pos,
            found=header.compression,
        )
    expected_count = header.last_offset_delta + 1
    if from_client:
        if header.record_count <= 0 or header.record_count != expected_count:
            raise InvalidRecordCount(
                f"batch at {pos}: recordCount {header.record_count}, "
                f"lastOffsetDelta implies {expected_count}",
                position=pos,
                expected=expected_count,
                found=header.record_count,
            )
    elif header.record_count <= 0 or header.record_count > expected_count:
        raise InvalidRecordCount(
            f"batch at {pos}: recordCount {header.record_count}, "
            f"lastOffsetDelta allows 1 to {expected_count}",
            position=pos,
            expected=expected_count,
            found=header.record_count,
        )
    if header.compression != 0:
        return header
    if from_client:
        return _walk_client_records(buf, header)
    _walk_stored_records(buf, header)
    return header


class _Rules(NamedTuple):
    """What a record walk checks beyond the format (batch.h's tl_record_rules)."""

    strict_offsets: bool
    require_keys: bool
    check_timestamps: bool
    min_timestamp: int
    max_timestamp: int


_FORMAT_ONLY = _Rules(False, False, False, -_I64_MIN, _I64_MAX)
"""The record walk of the format alone: no rule refuses a record."""


def _scan(
    data: BytesLike,
    check: bool,
    from_client: bool = True,
    rules: _Rules | None = None,
    limit: int = MAX_INFLATED,
) -> list[BatchHeader]:
    buf = _byte_view(data)
    end = len(buf)
    headers = []
    pos = 0
    while pos < end:
        header = _read_header(buf, pos, end)
        if check:
            header = _check_batch(buf, header, from_client)
        headers.append(header)
        pos += header.size
    # Records are walked once every batch framed and passed its CRC.
    if check and from_client and rules is not None:
        headers = [_walk_batch(buf, header, rules, limit) for header in headers]
    return headers


def scan_batches(data: BytesLike) -> list[BatchHeader]:
    """Frame concatenated v2 batches and read their headers; no CRC check."""
    return _scan(data, check=False)


def validate_batches(
    data: BytesLike,
    *,
    from_client: bool = True,
    max_inflated: int = MAX_INFLATED,
    min_timestamp: int | None = None,
    max_timestamp: int | None = None,
    require_keys: bool = False,
    one_batch: bool = False,
) -> list[BatchHeader]:
    """Frame, CRC-check and count-check concatenated v2 batches.

    ``from_client`` (the produce path) holds recordCount to lastOffsetDelta + 1,
    as Kafka's LogValidator does for a client's batch; otherwise the batch may
    be one the log cleaner rewrote, with gaps in its offsets.

    A client's batch has its records walked: each must decode (lengths,
    varints, key, value, headers), the records must be as many as the header
    says and fill the batch exactly; a compressed batch is inflated first (to
    at most ``max_inflated`` bytes) and its records must be numbered 0..n-1.
    With ``require_keys`` or timestamp bounds, records breaking those rules
    are named in one RejectedRecords error per batch.

    With ``one_batch`` (a Produce partition's records), the buffer is first
    framed as produce_batch_size frames it, and only the one batch it finds
    is checked: the bytes after it are dropped, as Kafka drops them, and
    the batch's baseOffset must be 0 (NonZeroBaseOffset), as Kafka requires
    of a client's batch before it checks anything else in it.
    """
    from_client = bool(from_client)
    if not isinstance(max_inflated, int):
        raise TypeError("max_inflated must be an int")
    _check_int(max_inflated, 64, "max_inflated")
    if max_inflated < 0:
        raise ValueError("max_inflated must not be negative")
    for value, name in ((min_timestamp, "min_timestamp"), (max_timestamp, "max_timestamp")):
        if value is not None:
            if not isinstance(value, int):
                raise TypeError(f"{name} must be an int or None")
            _check_int(value, 64, name)
    rules = _Rules(
        strict_offsets=False,
        require_keys=bool(require_keys),
        check_timestamps=min_timestamp is not None or max_timestamp is not None,
        min_timestamp=-_I64_MIN if min_timestamp is None else min_timestamp,
        max_timestamp=_I64_MAX if max_timestamp is None else max_timestamp,
    )
    if one_batch:
        data = _byte_view(data)[: produce_batch_size(data)]
        _check_produce_base_offset(data)
    return _scan(data, check=True, from_client=from_client, rules=rules, limit=max_inflated)


def _check_produce_base_offset(buf: memoryview) -> None:
    """batch.h's tl_check_produce_base_offset: a client's batch starts at 0."""
    (base_offset,) = struct.unpack_from(">q", buf, 0)
    if base_offset != 0:
        raise NonZeroBaseOffset(
            f"batch at 0: baseOffset {base_offset}, a client's batch starts at 0",
            position=0,
            expected=0,
            # C's errors spell "no fact" as INT64_MIN (batch.h's TL_NO_FACT).
            found=None if base_offset == -_I64_MIN else base_offset,
        )


def produce_batch_size(data: BytesLike, *, allow_zstd: bool = True) -> int:
    """The size of the one batch a Produce partition's records carry, as
    Kafka's ProduceRequest.validateRecords frames them (batch.h's
    tl_produce_batch_size): the first frame, its magic 2, then no second
    frame. Bytes after the batch too few to frame one, or fewer than their
    frame's length claims, are not counted (Kafka leaves them unread and
    UnifiedLog.trimInvalidBytes drops them). Raises where Kafka refuses the
    records: InvalidBatchLength or InvalidMagic for a frame its iterator
    calls corrupt, NoBatch, UnsupportedMagic for a first batch of magic 0
    or 1, UnsupportedCompression for a first batch compressed with zstd
    unless ``allow_zstd`` (Produce before v7 may not carry one),
    SecondBatch for a whole second frame."""
    buf = _byte_view(data)
    first = _kafka_frame(buf, 0)
    if first == 0:
        raise NoBatch(
            f"no record batch in {len(buf)} bytes: a Produce carries one per partition",
            position=0,
            found=len(buf),
        )
    (magic,) = struct.unpack_from(">b", buf, MAGIC_OFFSET)
    if magic != 2:
        raise UnsupportedMagic(
            f"batch at 0: magic {magic}, only magic 2 is accepted",
            position=0,
            expected=2,
            found=magic,
        )
    # A frame holds at least LENGTH_PREFIX + MIN_FRAMED_LENGTH bytes: the
    # attributes are in it.
    (attributes,) = _ATTRIBUTES.unpack_from(buf, _ATTRIBUTES_OFFSET)
    if not allow_zstd and attributes & COMPRESSION_MASK == Compression.ZSTD:
        raise UnsupportedCompression(
            "batch at 0: zstd compression, which this Produce version may not carry",
            position=0,
            found=int(Compression.ZSTD),
        )
    if _kafka_frame(buf, first):
        raise SecondBatch(f"batch at {first}: a second batch, where one is allowed", position=first)
    return first


def _kafka_frame(buf: memoryview, pos: int) -> int:
    """The frame at ``pos`` as Kafka's ByteBufferLogInputStream frames it, in
    its order: its size, 0 where that iterator frames nothing (fewer than 12
    bytes left, fewer than the 17 up to the magic, or fewer than the length
    claims), or the error it throws CorruptRecordException for."""
    left = len(buf) - pos
    if left < LENGTH_PREFIX:
        return 0
    (length,) = struct.unpack_from(">i", buf, pos + 8)
    if length < MIN_FRAMED_LENGTH:
        raise InvalidBatchLength(
            f"batch at {pos}: batchLength {length} is below the least frame, {MIN_FRAMED_LENGTH}",
            position=pos,
            expected=MIN_FRAMED_LENGTH,
            found=length,
        )
    if left <= MAGIC_OFFSET:
        return 0
    (magic,) = struct.unpack_from(">b", buf, pos + MAGIC_OFFSET)
    if not 0 <= magic <= MAX_MAGIC:
        raise InvalidMagic(
            f"batch at {pos}: magic {magic}, no record format has it",
            position=pos,
            expected=2,
            found=magic,
        )
    size = LENGTH_PREFIX + length
    return size if size <= left else 0


def _walk_batch(buf: memoryview, header: BatchHeader, rules: _Rules, limit: int) -> BatchHeader:
    """A compressed batch's records always, an uncompressed one's when a rule
    asks; the header, a compressed batch's with its records' largest
    timestamp (_keep_records_max: inflated for the walk anyway)."""
    if header.compression != 0:
        area = _records_area(buf, header, limit)
        refused = _walk_records(area, 0, header, rules._replace(strict_offsets=True))
        if not refused.total:
            return _keep_records_max(header, refused.largest)
    elif rules.require_keys or rules.check_timestamps:
        start = header.position + HEADER_SIZE
        area = buf[start : header.position + header.size]
        refused = _walk_records(area, start, header, rules)
    else:
        return header
    if refused.total:
        cls = RejectedTimestamps if refused.timestamps else RejectedRecords
        record_errors = tuple(refused.named)
        raise cls(
            f"batch at {header.position}: {refused.total} records refused: {record_errors[0][1]}",
            position=header.position,
            record_errors=record_errors,
            total=refused.total,
        )
    return header


class _Refused:
    """The records a walk refused: the first MAX_RECORD_ERRORS named, all counted
    (batch.h's tl_record_errors)."""

    __slots__ = ("largest", "named", "timestamps", "total")

    def __init__(self) -> None:
        self.named: list[RecordError] = []
        self.total = 0
        self.timestamps = False
        self.largest = NO_TIMESTAMP
        """The largest of the walked records' timestamps, from NO_TIMESTAMP
        up (Kafka's maxBatchTimestamp; tl_walk_records' largest)."""

    def add(self, error: RecordError, *, timestamp: bool) -> None:
        self.total += 1
        self.timestamps |= timestamp
        if len(self.named) < MAX_RECORD_ERRORS:
            self.named.append(error)


def _malformed(header: BatchHeader, index: int, position: int, field: str) -> InvalidRecord:
    return InvalidRecord(
        f"batch at {header.position}: record {index} is malformed (its {field})",
        position=position,
    )


def _skip_bytes(area: memoryview, pos: int, end: int) -> tuple[int, int]:
    """A key, value or header value: (its length, -1 for null; the next position)."""
    length, pos = _read_varint(area, pos, end, 5)
    if length == -1:
        return -1, pos
    if length < 0 or length > end - pos:
        raise IndexError
    return length, pos + length


def _walk_records(area: memoryview, base: int, header: BatchHeader, rules: _Rules) -> _Refused:
    """batch.c's tl_walk_records: format faults raise, rule faults are returned."""
    refused = _Refused()
    pos = 0
    end = len(area)
    for i in range(header.record_count):
        start = base + pos
        if pos >= end:
            raise InvalidRecordCount(
                f"batch at {header.position}: recordCount {header.record_count}, "
                f"its records hold {i}",
                position=header.position,
                expected=header.record_count,
                found=i,
            )
        field = "length"
        try:
            length, pos = _read_varint(area, pos, end, 5)
            if length < 1 or length > end - pos:
                raise InvalidRecord(
                    f"batch at {header.position}: record {i}: length {length} runs past "
                    "the records' end",
                    position=start,
                    found=length,
                )
            record_end = pos + length
            pos += 1  # the record's attributes byte
            field = "timestampDelta"
            timestamp_delta, pos = _read_varint(area, pos, record_end, 10)
            field = "offsetDelta"
            offset_delta, pos = _read_varint(area, pos, record_end, 5)
            if rules.strict_offsets and offset_delta != i:
                raise InvalidRecord(
                    f"batch at {header.position}: record {i} has offsetDelta {offset_delta}",
                    position=start,
                    expected=i,
                    found=offset_delta,
                )
            field = "key"
            key_length, pos = _skip_bytes(area, pos, record_end)
            field = "value"
            _, pos = _skip_bytes(area, pos, record_end)
            field = "header count"
            header_count, pos = _read_varint(area, pos, record_end, 5)
            # Each header takes at least two bytes: the count cannot exceed that.
            if header_count < 0 or header_count > (record_end - pos) // 2:
                raise IndexError
            for _ in range(header_count):
                field = "header key"
                name_length, pos = _skip_bytes(area, pos, record_end)
                if name_length < 0:
                    raise IndexError
                try:
                    bytes(area[pos - name_length : pos]).decode("utf-8")
                except UnicodeDecodeError:
                    raise IndexError from None
                field = "header value"
                _, pos = _skip_bytes(area, pos, record_end)
            field = "length"
            if pos != record_end:
                raise IndexError
        except IndexError:
            raise _malformed(header, i, start, field) from None
        if header.attributes & TIMESTAMP_TYPE_BIT:
            timestamp = header.max_timestamp
        else:
            timestamp = _wrap64(header.base_timestamp + timestamp_delta)
        refused.largest = max(refused.largest, timestamp)
        # As Kafka's LogValidator: a missing key first, then the timestamp;
        # a record without one (-1, NO_TIMESTAMP) is not held to the bounds.
        if rules.require_keys and key_length == -1:
            refused.add((i, NO_KEY_MESSAGE), timestamp=False)
        elif (
            rules.check_timestamps
            and timestamp != NO_TIMESTAMP
            and not (rules.min_timestamp <= timestamp <= rules.max_timestamp)
        ):
            offset = _wrap64(header.base_offset + offset_delta)
            message = (
                f"Timestamp {timestamp} of message with offset {offset} is out of range. "
                f"The timestamp should be within [{rules.min_timestamp}, {rules.max_timestamp}]"
            )
            refused.add((i, message), timestamp=True)
    if pos != end:
        raise InvalidRecord(
            f"batch at {header.position}: {end - pos} bytes after its last record",
            position=base + pos,
            expected=base + end,
            found=base + pos,
        )
    return refused


def rewrite_batch(
    data: BytesLike,
    position: int,
    base_offset: int,
    partition_leader_epoch: int | None = None,
    log_append_time: int | None = None,
    create_time: bool = False,
    max_timestamp: int | None = None,
) -> None:
    """Set the broker-owned header fields of the batch at ``position`` in place.

    ``log_append_time`` stamps the batch LogAppendTime (a LogAppendTime
    topic), the stamp its maxTimestamp. Else the batch is stored with
    ``max_timestamp`` (None keeps the header's): validate_batches gives a
    client's CreateTime batch its records' largest timestamp, which Kafka's
    LogValidator stores whatever the producer claimed; and ``create_time``
    marks a batch marked LogAppendTime CreateTime (a CreateTime topic), its
    maxTimestamp, which each of its records read, kept (raised to
    NO_TIMESTAMP if below, the start of Kafka's max). Either way the CRC is
    rewritten when the attributes or maxTimestamp changed (batch.h's
    tl_rewrite)."""
    # In the C's order: its parser reads position, base_offset and
    # create_time's truth before both timestamp types are refused.
    _check_int(position, 64, "position")
    _check_int(base_offset, 64, "base_offset")
    create_time = bool(create_time)
    if create_time and log_append_time is not None:
        raise ValueError("a batch is stamped LogAppendTime or marked CreateTime")
    if partition_leader_epoch is not None:
        _check_int(partition_leader_epoch, 32, "partition_leader_epoch")
    if log_append_time is not None:
        _check_int(log_append_time, 64, "log_append_time")
    if max_timestamp is not None:
        if not isinstance(max_timestamp, int):
            raise TypeError("max_timestamp must be an int or None")
        _check_int(max_timestamp, 64, "max_timestamp")
    view = memoryview(data)
    if view.readonly or not view.c_contiguous:
        raise TypeError("rewrite_batch needs a writable buffer")
    buf = _byte_view(view)
    if position < 0 or position > len(buf):
        raise ValueError(f"position {position} is outside the buffer of {len(buf)} bytes")
    header = _read_header(buf, position, len(buf))
    struct.pack_into(">q", buf, position, base_offset)
    if partition_leader_epoch is not None:
        struct.pack_into(">i", buf, position + 12, partition_leader_epoch)
    attributes = header.attributes
    largest = header.max_timestamp if max_timestamp is None else max_timestamp
    if log_append_time is not None:
        attributes |= TIMESTAMP_TYPE_BIT
        largest = log_append_time
    elif create_time and attributes & TIMESTAMP_TYPE_BIT:
        attributes &= ~TIMESTAMP_TYPE_BIT
        largest = max(largest, NO_TIMESTAMP)
    if attributes == header.attributes and largest == header.max_timestamp:
        return
    struct.pack_into(">h", buf, position + 21, attributes)
    struct.pack_into(">q", buf, position + 35, largest)
    crc = crc32c(buf[position + CRC_START : position + header.size])
    struct.pack_into(">I", buf, position + 17, crc)


def _records_area(buf: memoryview, header: BatchHeader, limit: int) -> memoryview:
    body = buf[header.position + HEADER_SIZE : header.position + header.size]
    if header.compression == 0:
        return body
    if header.compression > _MAX_CODEC:
        raise UnsupportedCompression(
            f"batch at {header.position}: compression codec {header.compression} does not exist",
            position=header.position,
            found=header.compression,
        )
    try:
        return memoryview(compression.decompress(header.compression, body, limit))
    except compression.InflationLimit as exc:
        raise InflationLimitExceeded(
            f"batch at {header.position}: {exc}",
            position=header.position,
            expected=limit,
            found=exc.found,
        ) from None
    except ValueError as exc:
        raise InvalidRecord(
            f"batch at {header.position}: {exc}", position=header.position
        ) from None


def _read_bytes(buf: memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(buf, pos, end, 5)
    if length == -1:
        return None, pos
    if length < 0 or length > end - pos:
        raise IndexError
    return bytes(buf[pos : pos + length]), pos + length


def _decode_record(buf: memoryview, pos: int, end: int, header: BatchHeader) -> tuple[Record, int]:
    length, pos = _read_varint(buf, pos, end, 5)
    if length < 1 or length > end - pos:
        raise IndexError
    record_end = pos + length
    pos += 1  # the record's attributes byte: unused by every Kafka version
    timestamp_delta, pos = _read_varint(buf, pos, record_end, 10)
    offset_delta, pos = _read_varint(buf, pos, record_end, 5)
    key, pos = _read_bytes(buf, pos, record_end)
    value, pos = _read_bytes(buf, pos, record_end)
    header_count, pos = _read_varint(buf, pos, record_end, 5)
    if header_count < 0:
        raise IndexError
    headers: list[Header] = []
    for _ in range(header_count):
        name, pos = _read_bytes(buf, pos, record_end)
        if name is None:
            raise IndexError
        header_value, pos = _read_bytes(buf, pos, record_end)
        try:
            headers.append((name.decode("utf-8"), header_value))
        except UnicodeDecodeError:
            raise IndexError from None
    if pos != record_end:
        raise IndexError
    if header.attributes & TIMESTAMP_TYPE_BIT:
        timestamp = header.max_timestamp
    else:
        timestamp = _wrap64(header.base_timestamp + timestamp_delta)
    offset = _wrap64(header.base_offset + offset_delta)
    return Record(offset, timestamp, key, value, tuple(headers)), record_end


def _decode_batch(buf: memoryview, header: BatchHeader, out: list[Record], limit: int) -> None:
    area = _records_area(buf, header, limit)
    pos = 0
    end = len(area)
    for _ in range(header.record_count):
        start = pos
        try:
            record, pos = _decode_record(area, pos, end, header)
        except IndexError:
            raise InvalidRecord(
                f"batch at {header.position}: malformed record {start} bytes into its records",
                position=start,
            ) from None
        out.append(record)
    if pos != end:
        raise InvalidRecord(
            f"batch at {header.position}: {end - pos} bytes after its last record",
            position=pos,
            expected=end,
            found=pos,
        )


def decode_records(
    data: BytesLike,
    *,
    record_type: type[tuple[Any, ...]] | None = None,
    prefix: tuple[Any, ...] = (),
    min_offset: int = -(2**63),
    skip_control: bool = False,
    max_inflated: int = MAX_INFLATED,
) -> list[Any]:
    """Decode every record of every batch in ``data``, decompressing as needed
    (each batch to at most ``max_inflated`` bytes).

    Records below ``min_offset`` are left out (batches wholly below it are
    not decoded), and control batches too with ``skip_control``. With a
    ``record_type`` (a tuple subclass, e.g. a NamedTuple), each record is
    ``record_type(*prefix, offset, timestamp, key, value, headers,
    timestamp_type)`` rather than a ``Record``.
    """
    if record_type is None and prefix:
        raise TypeError("prefix needs a record_type")
    _check_int(max_inflated, 64, "max_inflated")
    if max_inflated < 0:
        raise ValueError("max_inflated must not be negative")
    buf = _byte_view(data)
    out: list[Any] = []
    pos = 0
    while pos < len(buf):
        header = _read_header(buf, pos, len(buf))
        pos += header.size
        if header.last_offset < min_offset or (skip_control and header.is_control):
            continue
        records: list[Record] = []
        _decode_batch(buf, header, records, max_inflated)
        if records and records[0].offset < min_offset:
            records = [r for r in records if r.offset >= min_offset]
        if record_type is None:
            out += records
        else:
            timestamp_type = header.timestamp_type
            out += [tuple.__new__(record_type, (*prefix, *r, timestamp_type)) for r in records]
    return out


class _TypedRecord(NamedTuple):
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    timestamp_type: int


def decode_columns(
    data: BytesLike,
    *,
    min_offset: int = -(2**63),
    skip_control: bool = False,
    max_inflated: int = MAX_INFLATED,
) -> tuple[Any, ...]:
    """The records decode_records gives for the same arguments, as column
    buffers laid out as Apache Arrow's (native.records.RecordColumns, as a
    plain tuple): int64 offsets and timestamps, a timestamp type byte each,
    keys and values as binary columns, and the headers flattened with where
    each record's end."""
    records = decode_records(
        data,
        record_type=_TypedRecord,
        min_offset=min_offset,
        skip_control=skip_control,
        max_inflated=max_inflated,
    )
    ends = [0]
    for record in records:
        ends.append(ends[-1] + len(record.headers))
    pairs = [pair for record in records for pair in record.headers]
    return (
        len(records),
        struct.pack(f"<{len(records)}q", *(r.offset for r in records)),
        struct.pack(f"<{len(records)}q", *(r.timestamp for r in records)),
        bytes(r.timestamp_type for r in records),
        _binary_column([r.key for r in records]),
        _binary_column([r.value for r in records]),
        struct.pack(f"<{len(ends)}q", *ends),
        _binary_column([name.encode() for name, _ in pairs]),
        _binary_column([value for _, value in pairs]),
    )


def _binary_column(items: Sequence[bytes | None]) -> tuple[bytes, bytes, bytes, int]:
    """(int64 offsets from 0, the bytes, an LSB-first validity bitmap, nulls)."""
    offsets = [0]
    validity = bytearray((len(items) + 7) // 8)
    for index, item in enumerate(items):
        if item is not None:
            validity[index // 8] |= 1 << (index % 8)
        offsets.append(offsets[-1] + (len(item) if item is not None else 0))
    data = b"".join(item for item in items if item is not None)
    nulls = sum(item is None for item in items)
    return struct.pack(f"<{len(offsets)}q", *offsets), data, bytes(validity), nulls


def _write_varint(out: bytearray, value: int) -> None:
    raw = ((value << 1) ^ (value >> 63)) & (_U64 - 1)
    while raw >= 0x80:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def _write_bytes(out: bytearray, data: BytesLike | None) -> None:
    if data is None:
        _write_varint(out, -1)
    else:
        view = _byte_view(data)
        _write_varint(out, len(view))
        out += view


def _encode_record(
    out: bytearray, spec: RecordSpec, offset_delta: int, base_timestamp: int
) -> None:
    body = bytearray(b"\x00")
    # Java computes the delta in a long, so far-apart timestamps wrap the same way.
    _write_varint(body, _wrap64(_check_int(spec.timestamp, 64, "timestamp") - base_timestamp))
    _write_varint(body, offset_delta)
    _write_bytes(body, spec.key)
    _write_bytes(body, spec.value)
    _write_varint(body, len(spec.headers))
    for header in spec.headers:
        if len(header) != 2:
            raise TypeError("a record header is a (name, value) pair")
        name, header_value = header
        if not isinstance(name, str):
            raise TypeError("a record header name must be a str")
        _write_bytes(body, name.encode("utf-8"))
        _write_bytes(body, header_value)
    _write_varint(out, len(body))
    out += body


def _offset_deltas(offset_deltas: Iterable[int] | None, count: int) -> list[int]:
    """One offsetDelta per record: non-negative int32s, strictly increasing."""
    if offset_deltas is None:
        return list(range(count))
    try:
        iterator = iter(offset_deltas)
    except TypeError:
        raise TypeError("offset_deltas must be a sequence of ints") from None
    deltas = list(iterator)
    if len(deltas) != count:
        raise ValueError(f"offset_deltas has {len(deltas)} items for {count} records")
    for i, delta in enumerate(deltas):
        if not isinstance(delta, int):
            raise TypeError(f"offset_deltas[{i}] must be an int, not {type(delta).__name__}")
        if not 0 <= delta <= _I32_MAX:
            raise ValueError(
                f"offset_deltas[{i}] is {delta!r}; an offsetDelta is between 0 and {_I32_MAX}"
            )
        if i > 0 and delta <= deltas[i - 1]:
            raise ValueError(
                f"offset_deltas[{i}] is {delta!r}, not above offset_deltas[{i - 1}] "
                f"({int(deltas[i - 1])}): offsetDeltas must increase"
            )
    return [int(delta) for delta in deltas]


def _last_offset_delta(last_offset_delta: int | None, deltas: list[int]) -> int:
    if last_offset_delta is None:
        return deltas[-1]
    if not deltas[-1] <= last_offset_delta <= _I32_MAX:
        raise ValueError(
            f"last_offset_delta {last_offset_delta!r} must be between the last record's "
            f"offsetDelta ({deltas[-1]}) and {_I32_MAX}"
        )
    return int(last_offset_delta)


def encode_batch(
    records: Iterable[RecordSpec],
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
    timestamp_type: int = 0,
    base_timestamp: int | None = None,
    offset_deltas: Sequence[int] | None = None,
    last_offset_delta: int | None = None,
) -> bytes:
    """Build one v2 batch. Compresses if asked.

    Record i gets offsetDelta i and the header lastOffsetDelta the last one's,
    unless ``offset_deltas`` and ``last_offset_delta`` say otherwise: the log
    cleaner keeps each kept record's offset and the batch's offset range.
    """
    for value, bits, name in (
        (base_offset, 64, "base_offset"),
        (compression, 32, "compression"),
        (producer_id, 64, "producer_id"),
        (producer_epoch, 16, "producer_epoch"),
        (base_sequence, 32, "base_sequence"),
        (partition_leader_epoch, 32, "partition_leader_epoch"),
        (timestamp_type, 32, "timestamp_type"),
    ):
        _check_int(value, bits, name)
    if base_timestamp is not None:
        _check_int(base_timestamp, 64, "base_timestamp")
    if last_offset_delta is not None and not isinstance(last_offset_delta, int):
        raise TypeError(f"last_offset_delta must be an int, not {type(last_offset_delta).__name__}")
    specs = [_spec(spec) for spec in records]
    if not specs:
        raise ValueError("a record batch holds at least one record")
    if not 0 <= compression <= _MAX_CODEC:
        raise ValueError(f"no such compression codec: {compression}")
    deltas = _offset_deltas(offset_deltas, len(specs))
    last_delta = _last_offset_delta(last_offset_delta, deltas)
    first_timestamp = _check_int(specs[0].timestamp, 64, "timestamp")
    if base_timestamp is None:
        base_timestamp = first_timestamp
    # From NO_TIMESTAMP up, as Kafka's MemoryRecordsBuilder and
    # validate_batches (module.c's encode_stream).
    max_timestamp = max(NO_TIMESTAMP, *(spec.timestamp for spec in specs))
    stream = bytearray()
    for spec, offset_delta in zip(specs, deltas, strict=True):
        _encode_record(stream, spec, offset_delta, base_timestamp)
    area = stream if compression == 0 else _compress(compression, stream)
    attributes = compression
    if timestamp_type:
        attributes |= TIMESTAMP_TYPE_BIT
    if is_transactional:
        attributes |= TRANSACTIONAL_BIT
    if is_control:
        attributes |= CONTROL_BIT
    batch = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        batch,
        0,
        base_offset,
        HEADER_SIZE - LENGTH_PREFIX + len(area),
        partition_leader_epoch,
        2,
        0,
        attributes,
        last_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(specs),
    )
    batch += area
    struct.pack_into(">I", batch, 17, crc32c(memoryview(batch)[CRC_START:]))
    return bytes(batch)


def encode_records(
    values: Sequence[BytesLike | str | None],
    keys: Sequence[BytesLike | str | None] | None = None,
    *,
    timestamp: int,
    start: int = 0,
    max_bytes: int = _I32_MAX,
    headers: Sequence[Header] = (),
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    is_transactional: bool = False,
) -> tuple[bytearray, int]:
    """One v2 batch of ``values[start:end]`` (``keys[i]`` with ``values[i]``),
    as many records as fit in ``max_bytes`` (at least one), each with
    ``timestamp`` and ``headers``; returns the batch and ``end``.

    The embedded producer's ``send_many`` path: no record spec per record.
    """
    _check_int(timestamp, 64, "timestamp")
    for value, bits, name in (
        (start, 64, "start"),
        (max_bytes, 64, "max_bytes"),
        (compression, 32, "compression"),
        (producer_id, 64, "producer_id"),
        (producer_epoch, 16, "producer_epoch"),
        (base_sequence, 32, "base_sequence"),
    ):
        _check_int(value, bits, name)
    if not isinstance(values, list | tuple):
        raise TypeError("values must be a list or a tuple")
    count = len(values)
    if keys is not None:
        if not isinstance(keys, list | tuple):
            raise TypeError("keys must be a list, a tuple or None")
        if len(keys) != count:
            raise ValueError(f"keys has {len(keys)} items for {count} values")
    if not 0 <= start < count:
        raise ValueError(f"start {start} is not the index of one of the {count} values")
    if not 0 <= compression <= _MAX_CODEC:
        raise ValueError(f"no such compression codec: {compression}")
    shared = bytearray()
    _write_varint(shared, len(headers))
    for pair in headers:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError("a record header is a (name, value) pair")
        name, header_value = pair
        if not isinstance(name, str):
            raise TypeError("a record header name must be a str")
        _write_bytes(shared, name.encode("utf-8"))
        _write_bytes(shared, header_value)
    stream = bytearray()
    end = start
    while end < count and end - start < _I32_MAX:
        record = bytearray(b"\x00\x00")  # attributes; timestampDelta 0: one timestamp
        _write_varint(record, end - start)
        _write_bytes(record, _field(None if keys is None else keys[end]))
        _write_bytes(record, _field(values[end]))
        record += shared
        framed = bytearray()
        _write_varint(framed, len(record))
        framed += record
        if end > start and HEADER_SIZE + len(stream) + len(framed) > max_bytes:
            break
        if len(stream) + len(framed) > _I32_MAX - HEADER_SIZE:
            if end > start:
                break
            raise OverflowError("the batch would exceed 2 GiB")
        stream += framed
        end += 1
    area = stream if compression == 0 else _compress(compression, stream)
    if len(area) > _I32_MAX - HEADER_SIZE:
        raise OverflowError("the batch would exceed 2 GiB")
    batch = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        batch,
        0,
        0,
        HEADER_SIZE - LENGTH_PREFIX + len(area),
        -1,
        2,
        0,
        compression | (TRANSACTIONAL_BIT if is_transactional else 0),
        end - start - 1,
        timestamp,
        max(timestamp, NO_TIMESTAMP),  # encode_batch's max, from NO_TIMESTAMP up
        producer_id,
        producer_epoch,
        base_sequence,
        end - start,
    )
    batch += area
    struct.pack_into(">I", batch, 17, crc32c(memoryview(batch)[CRC_START:]))
    return batch, end


def _field(data: BytesLike | str | None) -> BytesLike | None:
    """A key or value as bytes: a str is written as its UTF-8."""
    return data.encode("utf-8") if isinstance(data, str) else data


_ENTRY_HEADER = struct.Struct("<qII")  # base offset, offset count, payload length
_ENTRY_COPY_BELOW = 4096
"""A payload shorter than this is copied into its object's parts beside
the entry headers around it; a longer one is the caller's object, never
copied (native/src/entries.c: the same number)."""
_U32_MAX = (1 << 32) - 1

EntryRun = tuple[int, Sequence[tuple[int, int, BytesLike] | tuple[int, int, BytesLike, int | None]]]
"""A stream id and its stored batches (base_offset, end_offset, payload)."""


def encode_entries(
    runs: Sequence[EntryRun], block_bytes: int, *, with_spans: bool = False, copy_small: bool = True
) -> tuple[
    list[BytesLike],
    int,
    list[tuple[int, int, int, int, int, int]],
    list[tuple[int, int, int, int]],
    dict[tuple[int, int], tuple[int, bytes, BytesLike]] | None,
]:
    """The data region of an s3stream object (docs/object-format.md).

    Each run's batches (consecutive offsets) become entries: a 16-byte entry
    header, then the payload. A block holds consecutive entries of one
    run, at most ``block_bytes`` unless one entry alone is larger. Returns
    the parts (a payload of ``_ENTRY_COPY_BELOW`` bytes or more as the
    caller's object, never copied; the entry headers and smaller payloads
    between such payloads joined into one bytes object each), the
    region's size, each block's (stream, start, end, position, size, CRC32C),
    each run's (stream, start, end, size) and, ``with_spans``, each entry's
    (position, header, payload) by (stream, base offset). Without
    ``copy_small`` no payload is copied (each entry header a part, each
    payload the caller's object): for a caller whose payloads are views of
    bytes it holds anyway, and whose memory is bounded by those bytes.

    A batch may bring its payload's CRC32C as a fourth item (None: not
    known); that payload is then not read, its CRC is combined into its
    block's.
    """
    if not isinstance(runs, list):
        raise TypeError("runs must be a list")
    _check_int(block_bytes, 64, "block_bytes")
    copy_below = _ENTRY_COPY_BELOW if copy_small else 0
    parts: list[BytesLike] = []
    joined: list[BytesLike] = []  # the headers and small payloads since the last large one
    size = 0
    blocks: list[tuple[int, int, int, int, int, int]] = []
    ranges: list[tuple[int, int, int, int]] = []
    spans: dict[tuple[int, int], tuple[int, bytes, BytesLike]] | None = {} if with_spans else None
    for run in runs:
        if not isinstance(run, tuple) or len(run) != 2:
            raise TypeError("a run is a (stream_id, batches) tuple")
        stream_id, batches = run
        _check_stored_int(stream_id, "a run's stream id")
        if not batches:
            continue
        stream_begin = block_start = size
        block_first = expected = 0
        block_crc = 0
        for i, batch in enumerate(batches):
            if not isinstance(batch, tuple) or len(batch) not in (3, 4):
                raise TypeError(
                    "a stored batch is a (base_offset, end_offset, payload[, crc]) tuple"
                )
            base, end, payload = batch[:3]
            _check_stored_int(base, "base_offset")
            _check_stored_int(end, "end_offset")
            payload_crc = batch[3] if len(batch) == 4 else None
            if payload_crc is not None:
                _check_stored_int(payload_crc, "a stored batch's crc")
                if not 0 <= payload_crc <= _U32_MAX:
                    raise OverflowError(f"crc {payload_crc} does not fit in 32 bits")
            if i == 0:
                block_first = expected = base
            if base != expected or end <= base:
                raise ValueError(
                    f"stream {stream_id}: batch [{base}, {end}) does not follow offset {expected}"
                )
            if end - base > _U32_MAX:
                raise ValueError(
                    f"stream {stream_id}: batch [{base}, {end}) spans too many offsets"
                )
            length = len(_byte_view(payload))
            if length > _U32_MAX:
                raise ValueError("a stored batch is larger than 4 GiB")
            entry_size = _ENTRY_HEADER.size + length
            if size > block_start and size - block_start + entry_size > block_bytes:
                blocks.append(
                    (stream_id, block_first, expected, block_start, size - block_start, block_crc)
                )
                block_start, block_first, block_crc = size, expected, 0
            header = _ENTRY_HEADER.pack(base, end - base, length)
            block_crc = crc32c(header, block_crc)
            if payload_crc is None:
                block_crc = crc32c(payload, block_crc)
            else:
                block_crc = crc32c_combine(block_crc, payload_crc, length)
            if spans is not None:
                spans[(stream_id, base)] = (size, header, payload)
            joined.append(header)
            if length < copy_below:
                joined.append(payload)
            else:
                parts.append(b"".join(joined))
                parts.append(payload)
                joined = []
            size += entry_size
            expected = end
        blocks.append(
            (stream_id, block_first, expected, block_start, size - block_start, block_crc)
        )
        ranges.append((stream_id, batches[0][0], expected, size - stream_begin))
    if joined:
        parts.append(b"".join(joined))
    return parts, size, blocks, ranges, spans


def unfilled_bytearray(size: int) -> bytearray:
    """A bytearray of ``size`` bytes for a buffer every byte of which is
    written before anything reads it (a request read from a socket). The C
    one leaves the bytes as the allocator gives them, where ``bytearray(size)``
    zero-fills them first: a pass over every byte received, for nothing; and
    it makes a large buffer's pages present in one call (prefault.c), where
    each would fault at its first write (the zero-fill here touches them)."""
    if not isinstance(size, int):
        raise TypeError(f"size must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"size {size} is negative")
    return bytearray(size)


def extend_unfilled(buffer: bytearray, added: int) -> None:
    """Grows ``buffer`` by ``added`` bytes, for a buffer that is then written
    to its end before anything reads it. The C one leaves them as the
    allocator gives them, where ``extend(bytes(added))`` zero-fills a
    temporary and copies it in."""
    if not isinstance(buffer, bytearray):
        raise TypeError(f"buffer must be a bytearray, not {type(buffer).__name__}")
    if not isinstance(added, int):
        raise TypeError(f"added must be an int, not {type(added).__name__}")
    if added < 0:
        raise ValueError(f"added {added} is negative")
    if added > sys.maxsize - len(buffer):
        raise OverflowError("the buffer would be too large")
    buffer.extend(bytes(added))


_Record = TypeVar("_Record", bound=tuple[Any, ...])
_Item = TypeVar("_Item")


def untracked_view(data: BytesLike) -> BytesLike:
    """``data``'s bytes, read-only, as an object the cyclic collector does
    not track, where one can be: a memoryview of format "B" over an exact
    bytes or bytearray (a request's frame) becomes, in C, a ByteSlice of
    the same bytes, which holds an export of that owner (a bytearray cannot
    be resized under it) and refers to nothing else; anything else is
    given back as it is. Here a memoryview stays one (a read-only one, as
    the ByteSlice is): the same results, only the collector's cost differs
    (docs/design/0154)."""
    if type(data) is memoryview and _untrackable(data):
        return data.toreadonly()
    return data


def _untrackable(view: memoryview) -> bool:
    """Whether the C twin makes ``view`` a ByteSlice (its checks, in its order)."""
    try:
        owner = view.obj
    except ValueError:  # released: given back, to fail where it is read
        return False
    return (
        type(owner) in (bytes, bytearray)
        and view.ndim == 1
        and view.itemsize == 1
        and view.format == "B"
        and view.c_contiguous
    )


def untracked_record(cls: type[_Record], *items: object) -> _Record:
    """``cls`` (a tuple subclass without a __dict__ or slots that has _fields: a
    NamedTuple) of ``items``, one for each of its fields (no default is
    filled in), without its Python __new__, each item as untracked_view
    gives it. In C,
    the record is untracked when none of its items can ever be tracked
    (bytes, ints, None, a ByteSlice, an untracked exact tuple: what
    CPython's collector does to an exact tuple at its first collection,
    and never to a subclass's): it is then never walked. Here it stays
    tracked: the same results, only the collector's cost differs."""
    if (
        not isinstance(cls, type)
        or not issubclass(cls, tuple)
        or cls.__dictoffset__ != 0
        or cls.__basicsize__ != tuple.__basicsize__
    ):
        raise TypeError("untracked_record's class is a tuple subclass without a __dict__ or slots")
    fields = getattr(cls, "_fields", None)
    wanted = len(fields) if isinstance(fields, tuple) else -1
    if wanted != len(items):
        raise TypeError(
            "untracked_record takes a NamedTuple class and all its fields: "
            f"{len(items)} given, {cls.__name__} has {wanted}"
        )
    return tuple.__new__(
        cls, [untracked_view(item) if type(item) is memoryview else item for item in items]
    )


def untracked_tuple(items: Iterable[_Item]) -> tuple[_Item, ...]:
    """A tuple of ``items``. In C, untracked when none of them can ever be
    tracked (as untracked_record's test): CPython never untracks a tuple
    holding a record, a tuple subclass, even an untracked one, so a tuple of
    untracked_record's records would stay tracked and be walked item by item
    at each collection. Here it is tracked as any tuple: the same results,
    only the collector's cost differs."""
    return tuple(items)


def join_parts(parts: Iterable[BytesLike]) -> bytes:
    """The parts' bytes in one bytes object (the C one copies them with the
    GIL released, so a large object's join does not stop other threads)."""
    return b"".join(parts)


def _check_stored_int(value: object, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return _check_int(value, 64, what)


def _spec(spec: Iterable[object]) -> RecordSpec:
    fields = tuple(spec)
    if len(fields) not in (3, 4):
        raise TypeError("a record spec is (timestamp, key, value[, headers])")
    return RecordSpec(*fields)  # type: ignore[arg-type]


def _compress(codec: int, stream: bytearray) -> bytes:
    return compression.compress(codec, stream)


# -- provenance stamp -----------------------------------------------------------


def _stamp_fields(headers: Sequence[tuple[str, BytesLike]]) -> bytes:
    """The encoded (name, value) headers a stamp appends to every record."""
    out = bytearray()
    for pair in headers:
        if len(pair) != 2:
            raise TypeError("a stamp header is a (name, value) pair")
        name, value = pair
        if not isinstance(name, str):
            raise TypeError("a stamp header name must be a str")
        _write_bytes(out, name.encode())
        _write_bytes(out, value)
    return bytes(out)


def _reserved_names(names: Sequence[str]) -> frozenset[bytes]:
    """The UTF-8 bytes of the reserved header names, as the C twin reads them."""
    if isinstance(names, str):  # a str is a sequence, of one-letter names
        raise TypeError("reserved_names must be a sequence of str")
    reserved = set()
    for name in names:
        if not isinstance(name, str):
            raise TypeError("a reserved header name must be a str")
        reserved.add(name.encode())
    return frozenset(reserved)


def _stamp_record(
    area: memoryview,
    pos: int,
    end: int,
    reserved: frozenset[bytes],
    fields: bytes,
    extra: int,
    out: bytearray,
) -> int:
    """Re-encodes the record at area[pos]: its headers of a ``reserved`` name
    dropped, ``fields`` (``extra`` headers) appended; returns where the next begins."""
    length, pos = _read_varint(area, pos, end, 5)
    if length < 1 or length > end - pos:
        raise IndexError
    record_end = pos + length
    start = pos
    pos += 1  # attributes
    _, pos = _read_varint(area, pos, record_end, 10)  # timestampDelta
    _, pos = _read_varint(area, pos, record_end, 5)  # offsetDelta
    _, pos = _read_bytes(area, pos, record_end)  # key
    _, pos = _read_bytes(area, pos, record_end)  # value
    head_end = pos
    count, pos = _read_varint(area, pos, record_end, 5)
    if count < 0:
        raise IndexError
    kept: list[memoryview] = []
    for _ in range(count):
        header_start = pos
        name_length, pos = _read_varint(area, pos, record_end, 5)
        if name_length < 0 or name_length > record_end - pos:
            raise IndexError
        name = area[pos : pos + name_length]
        pos += name_length
        _, pos = _read_bytes(area, pos, record_end)
        if bytes(name) not in reserved:
            kept.append(area[header_start:pos])
    if pos != record_end:
        raise IndexError
    body = bytearray(area[start:head_end])
    _write_varint(body, len(kept) + extra)
    for header in kept:
        body += header
    body += fields
    _write_varint(out, len(body))
    out += body
    return record_end


def _unstampable() -> InvalidRecord:
    return InvalidRecord("batch at 0: its records are malformed", position=0)


def stamp_batch(
    data: BytesLike,
    headers: Sequence[tuple[str, BytesLike]],
    *,
    reserved_names: Sequence[str],
    max_size: int,
    max_inflated: int = MAX_INFLATED,
) -> bytes:
    """One validated batch re-encoded with ``headers`` appended to every
    record and each record's own headers named exactly one of
    ``reserved_names`` removed. Every batch field is kept (producer id, epoch and sequence,
    attributes and codec, timestamps, offset deltas); the CRC is recomputed.
    A result larger than ``max_size`` bytes raises StampedBatchTooLarge."""
    buf = _byte_view(data)
    header = _read_header(buf, 0, len(buf))
    if header.size != len(buf):
        raise InvalidBatchLength(
            f"stamp_batch takes one whole batch: {len(buf)} bytes for a batch of {header.size}",
            position=0,
            expected=header.size,
            found=len(buf),
        )
    _check_int(max_size, 64, "max_size")
    fields = _stamp_fields(headers)
    reserved = _reserved_names(reserved_names)
    area = _records_area(buf, header, max_inflated)
    stream = bytearray()
    pos = 0
    try:
        for _ in range(header.record_count):
            pos = _stamp_record(area, pos, len(area), reserved, fields, len(headers), stream)
    except IndexError:
        raise _unstampable() from None
    if pos != len(area):
        raise _unstampable()
    records = _compress(header.compression, stream) if header.compression else stream
    size = HEADER_SIZE + len(records)
    if size > max_size:
        raise StampedBatchTooLarge(
            f"batch at 0: {size} bytes once stamped, above the limit of {max_size}",
            position=0,
            expected=max_size,
            found=size,
        )
    out = bytearray(buf[:HEADER_SIZE])
    out += records
    struct.pack_into(">i", out, 8, size - LENGTH_PREFIX)
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


__all__ = [
    "COMPRESSION_MASK",
    "crc32c",
    "crc32c_backend",
    "decode_records",
    "encode_batch",
    "rewrite_batch",
    "scan_batches",
    "stamp_batch",
    "validate_batches",
]


_Position = TypeVar("_Position")
_WAL_HEADER = struct.Struct("<IIQBB2xQqq")
"""A WAL record's header (docs/wal-format.md, "Record"): crc, length,
segment, type, flags, stream id, start offset, end offset."""
_WAL_CRC = struct.Struct("<I")
_WAL_LENGTH = struct.Struct("<4xI")
_WAL_SEGMENT = struct.Struct("<Q")
"""The segment field, at 8; the flags are the byte at 17."""
_WAL_MAX_RECORD_LENGTH = 0xFFFFFFFF
"""The header's length field is 32 bits: a longer record cannot be framed."""
_WAL_MAX_USER_TYPE = 254
"""wal.format.MAX_USER_TYPE: 255 is the seal, 0 invalid."""
_WAL_APPEND_FIELDS = 8
"""wal.Append's fields: payload, stream_id, start_offset, end_offset,
record_type, tag, prefix, payload_crc."""


def _check_unsigned(value: int, limit: int, name: str, fits: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= limit:
        raise OverflowError(f"{name} {value} does not fit in {fits}")
    return value


def frame_wal_records(appends: Iterable[tuple[Any, ...]], max_length: int) -> bytearray | int:
    """The records of a batch append laid out back to back, each a header then
    its prefix and payload, in one bytearray; each header's crc field holds the
    payload's CRC32C (combined with the prefix's) and its segment and flags
    are 0 until ``stamp_wal_records`` fills them. The length of the first
    record longer than ``max_length``, or than the header's 32-bit length
    field holds, instead, with nothing framed."""
    _check_int(max_length, 64, "max_length")
    records = []
    total = 0
    for append in list(appends):
        if not isinstance(append, tuple) or len(append) < _WAL_APPEND_FIELDS:
            raise TypeError("each append must be a tuple of 8 fields (wal.Append)")
        payload, stream_id, start_offset, end_offset, record_type, _, prefix, payload_crc = append[
            :_WAL_APPEND_FIELDS
        ]
        if not isinstance(record_type, int):
            raise TypeError(f"record_type must be an int, not {type(record_type).__name__}")
        if not 1 <= record_type <= _WAL_MAX_USER_TYPE:
            raise ValueError(f"record_type {record_type} is not in 1..{_WAL_MAX_USER_TYPE}")
        payload_view, prefix_view = _byte_view(payload), _byte_view(prefix)
        length = len(payload_view) + len(prefix_view)
        if length > max_length or length > _WAL_MAX_RECORD_LENGTH:
            return length
        _check_unsigned(stream_id, (1 << 64) - 1, "stream_id", "an unsigned 64-bit integer")
        _check_int(start_offset, 64, "start_offset")
        _check_int(end_offset, 64, "end_offset")
        if payload_crc is not None:
            _check_unsigned(payload_crc, 0xFFFFFFFF, "payload_crc", "32 bits")
        records.append(
            (
                payload_view,
                prefix_view,
                record_type,
                stream_id,
                start_offset,
                end_offset,
                payload_crc,
            )
        )
        total += _WAL_HEADER.size + length
    frame = bytearray(total)
    pos = 0
    for payload_view, prefix_view, record_type, stream, start, end, payload_crc in records:
        prefix_crc = crc32c(prefix_view)
        if payload_crc is None:
            crc = crc32c(payload_view, prefix_crc)
        elif len(prefix_view):
            crc = crc32c_combine(prefix_crc, payload_crc, len(payload_view))
        else:
            crc = payload_crc
        length = len(prefix_view) + len(payload_view)
        _WAL_HEADER.pack_into(frame, pos, crc, length, 0, record_type, 0, stream, start, end)
        pos += _WAL_HEADER.size
        frame[pos : pos + len(prefix_view)] = prefix_view
        pos += len(prefix_view)
        frame[pos : pos + len(payload_view)] = payload_view
        pos += len(payload_view)
    return frame


def _is_tuple_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, tuple)


def stamp_wal_records(
    frame: bytearray,
    start: int,
    room: int,
    segment: int,
    offset: int,
    first_flags: int,
    position_type: Callable[[int, int], _Position],
) -> tuple[int, list[_Position]]:
    """Fills in, from byte ``start`` of a ``frame_wal_records`` frame, the
    segment, the flags (``first_flags`` on the first record, 0 on the rest)
    and the final CRC of as many whole records as fit in ``room`` bytes.
    Returns the byte just past the last record stamped and, per record,
    ``position_type(segment, offset + its distance from start)``."""
    for value, name in ((start, "start"), (room, "room"), (offset, "offset")):
        _check_int(value, 64, name)
    _check_unsigned(segment, (1 << 64) - 1, "segment", "an unsigned 64-bit integer")
    _check_unsigned(first_flags, 0xFF, "first_flags", "8 bits")
    if not _is_tuple_type(position_type):  # the C builds its positions as tuples
        raise TypeError("position_type must be a NamedTuple of two fields")
    view = _byte_view(frame)
    if view.readonly:
        raise BufferError("Object is not writable.")
    size = len(view)
    if not 0 <= start <= size:
        raise ValueError(f"start {start} is outside the frame")
    if offset > _I64_MAX - size:  # every position must fit in a signed 64-bit offset
        raise OverflowError(f"offset {offset} and the frame pass 64 bits")
    positions: list[_Position] = []
    pos = start
    header_size = _WAL_HEADER.size
    while pos < size:
        if size - pos < header_size:
            raise ValueError(f"the record header at {pos} runs past the frame")
        (length,) = _WAL_LENGTH.unpack_from(view, pos)
        record = header_size + length
        if record > size - pos:
            raise ValueError(f"the record at {pos} runs past the frame")
        if record > room - (pos - start):
            break
        _WAL_SEGMENT.pack_into(view, pos + 8, segment)
        view[pos + 17] = first_flags if pos == start else 0
        (payload_crc,) = _WAL_CRC.unpack_from(view, pos)
        _WAL_CRC.pack_into(view, pos, crc32c(view[pos + 4 : pos + header_size], payload_crc))
        positions.append(position_type(segment, offset + pos - start))
        pos += record
    return pos, positions


_WAL_ADDRESS_SIZE = 24
"""A record header's last bytes: stream id, start and end offsets."""
_WAL_PLACEMENT = struct.Struct("<IQBB2x")
"""length, segment, type, flags: header bytes 4..20."""


def place_wal_record(
    address: bytes, segment: int, record_type: int, length: int, payload_crc: int, flags: int, /
) -> bytes:
    """One record's 44-byte header from its packed 24-byte ``address``
    (``wal.format.encode_record_address``) and what only the writer knows;
    its CRC continues ``payload_crc`` (the CRC32C of the record's payload)
    over header bytes 4..44."""
    if not isinstance(address, bytes) or len(address) != _WAL_ADDRESS_SIZE:
        raise ValueError(f"address must be {_WAL_ADDRESS_SIZE} bytes")
    _check_unsigned(segment, (1 << 64) - 1, "segment", "an unsigned 64-bit integer")
    _check_unsigned(record_type, 0xFF, "record_type", "8 bits")
    _check_unsigned(length, _WAL_MAX_RECORD_LENGTH, "length", "32 bits")
    _check_unsigned(payload_crc, 0xFFFFFFFF, "payload_crc", "32 bits")
    _check_unsigned(flags, 0xFF, "flags", "8 bits")
    covered = _WAL_PLACEMENT.pack(length, segment, record_type, flags) + address
    return _WAL_CRC.pack(crc32c(covered, payload_crc)) + covered
