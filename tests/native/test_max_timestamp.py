"""A client's batch is stored with the maxTimestamp Kafka's LogValidator
stores it with, not the one its producer claimed: validate_batches gives a
batch marked CreateTime the largest of its records' timestamps (from
NO_TIMESTAMP up, Kafka's maxBatchTimestamp), compressed or not, and
rewrite_batch writes it, its CRC rewritten; a LogAppendTime topic's stamp
is the maxTimestamp; a batch marked LogAppendTime on a CreateTime topic is
marked CreateTime with the maxTimestamp each of its records read. C and
Python give the same bytes, and both give the model's.

Kafka 4.x: LogValidator.assignOffsetsNonCompressed and
validateMessagesAndAssignOffsetsCompressed call
setMaxTimestamp(timestampType, maxBatchTimestamp), or (LogAppendTime)
setMaxTimestamp(LOG_APPEND_TIME, now); a record of a batch marked
LogAppendTime reads the batch's maxTimestamp (DefaultRecordBatch)."""

from __future__ import annotations

import struct
from types import ModuleType

from hypothesis import example, given
from hypothesis import strategies as st

from native import _pure
from native.records import HEADER_SIZE, NO_TIMESTAMP, Compression, RecordSpec, TimestampType
from tests.native.conftest import C_IMPL, codecs, differential

T0 = 1_700_000_000_000
I64 = st.integers(-(2**63), 2**63 - 1)
IMPLS: tuple[ModuleType, ...] = (_pure, *([C_IMPL] if C_IMPL is not None else []))
# Around now, and about 0 where Kafka's max starts at NO_TIMESTAMP (-1).
record_times = st.one_of(st.integers(T0 - 10**6, T0 + 10**6), st.integers(-5, 5))


def _claiming(times: list[int], claimed: int, codec: int, marked: TimestampType) -> bytes:
    specs = [RecordSpec(ts, b"k", b"v", ()) for ts in times]
    batch = bytearray(_pure.encode_batch(specs, compression=codec, timestamp_type=marked))
    struct.pack_into(">q", batch, 35, claimed)
    struct.pack_into(">I", batch, 17, _pure.crc32c(memoryview(batch)[21:]))
    return bytes(batch)


def _kafka_stores(
    times: list[int], claimed: int, marked: TimestampType, now: int | None
) -> tuple[TimestampType, int]:
    """(timestamp type, maxTimestamp) of the batch as Kafka's LogValidator
    stores it; ``now`` for a LogAppendTime topic, None for a CreateTime one."""
    if now is not None:
        return TimestampType.LOG_APPEND_TIME, now
    read = [claimed] * len(times) if marked == TimestampType.LOG_APPEND_TIME else times
    return TimestampType.CREATE_TIME, max([NO_TIMESTAMP, *read])


def _stored(impl: ModuleType, batch: bytes, now: int | None) -> bytes:
    """The batch as the produce path stores it (engine/partition.py's
    _validate then _append): validated, then rewritten at offset 42."""
    (header,) = impl.validate_batches(batch, one_batch=True)
    buf = bytearray(batch)
    impl.rewrite_batch(buf, 0, 42, 7, now, now is None, header.max_timestamp)
    return bytes(buf)


@differential
@given(
    times=st.lists(record_times, min_size=1, max_size=12),
    claimed=st.one_of(I64, record_times),
    codec=codecs,
    marked=st.sampled_from(list(TimestampType)),
    now=st.none() | st.just(T0 + 1),
)
@example(
    times=[-5, -3], claimed=-7, codec=Compression.NONE, marked=TimestampType.CREATE_TIME, now=None
)
@example(
    times=[1], claimed=-7, codec=Compression.NONE, marked=TimestampType.LOG_APPEND_TIME, now=None
)
def test_a_batch_is_stored_with_the_max_timestamp_kafka_stores(
    times: list[int], claimed: int, codec: int, marked: TimestampType, now: int | None
) -> None:
    batch = _claiming(times, claimed, codec, marked)
    outs = [_stored(impl, batch, now) for impl in IMPLS]
    assert all(out == outs[0] for out in outs)  # C and Python, byte for byte
    stored = outs[0]
    (header,) = _pure.validate_batches(stored, from_client=False)  # its CRC checked
    assert (header.timestamp_type, header.max_timestamp) == _kafka_stores(
        times, claimed, marked, now
    )
    assert (header.base_offset, header.partition_leader_epoch) == (42, 7)
    assert stored[HEADER_SIZE:] == batch[HEADER_SIZE:]  # the records as sent
    assert stored[23:35] == batch[23:35] and stored[43:] == batch[43:]


@given(
    times=st.lists(record_times, min_size=1, max_size=12),
    claimed=I64,
    codec=codecs,
    marked=st.sampled_from(list(TimestampType)),
)
def test_validation_gives_a_create_time_batch_its_records_largest_timestamp(
    times: list[int], claimed: int, codec: int, marked: TimestampType
) -> None:
    """What the engine's time index and producer state read from the
    validated header: the maxTimestamp the batch is stored with, for a
    batch marked LogAppendTime the one each of its records reads."""
    batch = _claiming(times, claimed, codec, marked)
    expected = claimed if marked == TimestampType.LOG_APPEND_TIME else max(NO_TIMESTAMP, *times)
    for impl in IMPLS:
        (header,) = impl.validate_batches(batch)
        assert header.max_timestamp == expected
        (scanned,) = impl.scan_batches(batch)  # scanning reads the header as it is
        assert scanned.max_timestamp == claimed


def test_a_rewrite_without_max_timestamp_keeps_the_header_and_its_crc() -> None:
    batch = _claiming([T0, T0 + 3], T0 + 99, Compression.NONE, TimestampType.CREATE_TIME)
    for impl in IMPLS:
        buf = bytearray(batch)
        impl.rewrite_batch(buf, 0, 5, 1, None, True)
        assert buf[16:] == batch[16:]  # the claim kept: nothing to recompute


@given(
    times=st.lists(record_times, min_size=1, max_size=12),
    codec=codecs,
    base=st.none() | record_times,
)
@example(times=[-5, -3], codec=Compression.NONE, base=None)
def test_an_encoded_batch_claims_what_validation_stores(
    times: list[int], codec: int, base: int | None
) -> None:
    """encode_batch's maxTimestamp starts at NO_TIMESTAMP, as Kafka's
    MemoryRecordsBuilder's does: the batches the cleaner and masking
    re-encode from stored records claim the max those records were stored
    with (validate_batches'), records below -1 reading as no time."""
    specs = [RecordSpec(ts, b"k", b"v", ()) for ts in times]
    encoded = [impl.encode_batch(specs, compression=codec, base_timestamp=base) for impl in IMPLS]
    assert all(out == encoded[0] for out in encoded)  # C and Python, byte for byte
    (claimed,) = _pure.scan_batches(encoded[0])
    (validated,) = _pure.validate_batches(encoded[0])
    assert claimed.max_timestamp == validated.max_timestamp == max(NO_TIMESTAMP, *times)
