"""Batches librdkafka wrote (tests/data/librdkafka) read back exactly as sent.

The captures come from tests/data/capture_librdkafka.py: a real client's bytes,
so these tests hold our reader to Kafka's format rather than to our own encoder.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from native import _pure
from native.errors import BatchError, CorruptBatch, InvalidBatchLength, TruncatedBatch
from native.records import CRC_START, HEADER_SIZE, Compression, Record, TimestampType
from tests.native.conftest import IMPLEMENTATIONS, c_impl, differential, needs_c

DATA = Path(__file__).parent.parent / "data" / "librdkafka"
CAPTURES = sorted(p.stem for p in DATA.glob("*.bin"))
CODECS = {codec.name.lower(): codec for codec in Compression}


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def _load(name: str) -> tuple[bytes, dict[str, Any]]:
    return (DATA / f"{name}.bin").read_bytes(), json.loads((DATA / f"{name}.json").read_text())


def _sent(description: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(timestamp, key, value, headers) of each record the client was given."""
    return [
        (
            r["timestamp"],
            _unb64(r["key"]),
            _unb64(r["value"]),
            tuple((k, _unb64(v)) for k, v in r["headers"]),
        )
        for r in description["records"]
    ]


def _batches(impl: ModuleType, data: bytes) -> list[bytes]:
    return [data[h.position : h.position + h.size] for h in impl.scan_batches(data)]


def test_every_codec_and_the_idempotent_producer_were_captured() -> None:
    assert set(CAPTURES) >= {*CODECS, "lz4-idempotent"}
    assert sum((DATA / f"{name}.bin").stat().st_size for name in CAPTURES) < 1 << 20


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_and_its_description_agree(name: str) -> None:
    data, description = _load(name)
    assert description["bytes"] == len(data)
    assert name.split("-", maxsplit=1)[0] == description["config"]["compression.type"]
    assert name.endswith("-idempotent") == description["config"]["enable.idempotence"]
    assert len(description["records"]) == 9


@pytest.mark.parametrize("name", CAPTURES)
def test_headers_are_what_the_client_set(impl: ModuleType, name: str) -> None:
    data, description = _load(name)
    config = description["config"]
    headers = impl.validate_batches(data)
    assert headers == impl.scan_batches(data)
    # One batch per produce request: the records were produced in two rounds.
    assert len(headers) == description["produce_requests"] == 2
    assert sum(h.record_count for h in headers) == len(description["records"])
    assert [h.position for h in headers] == [0, headers[0].size]
    assert sum(h.size for h in headers) == len(data)
    timestamps = [r["timestamp"] for r in description["records"]]
    first = 0
    for header in headers:
        batch_timestamps = timestamps[first : first + header.record_count]
        assert header.magic == 2
        assert header.base_offset == 0  # a producer leaves offsets to the broker
        assert header.compression == CODECS[config["compression.type"]]
        assert header.timestamp_type == TimestampType.CREATE_TIME
        assert header.base_timestamp == batch_timestamps[0]
        assert header.max_timestamp == max(batch_timestamps)
        assert header.last_offset_delta == header.record_count - 1
        assert not header.is_transactional
        assert not header.is_control
        if config["enable.idempotence"]:
            producer = description["init_producer_id"]
            assert header.producer_id == producer["producer_id"]
            assert header.producer_epoch == producer["producer_epoch"]
            assert header.base_sequence == first
        else:
            assert (header.producer_id, header.producer_epoch, header.base_sequence) == (-1, -1, -1)
        first += header.record_count
    if config["compression.type"] != "none":
        assert len(data) < sum(len(r["value"] or "") for r in description["records"]) / 4


@pytest.mark.parametrize("name", CAPTURES)
def test_records_decode_to_what_was_sent(impl: ModuleType, name: str) -> None:
    data, description = _load(name)
    records = impl.decode_records(data)
    assert all(type(r) is Record for r in records)
    assert [(r.timestamp, r.key, r.value, r.headers) for r in records] == _sent(description)
    # Offsets are base offset (0 from a producer) plus each record's delta.
    expected_offsets = [i for h in impl.scan_batches(data) for i in range(h.record_count)]
    assert [r.offset for r in records] == expected_offsets


def _inflate(codec: int, area: bytes) -> bytes:
    """The records area as the client compressed it, inflated by the codec libraries."""
    if codec == Compression.GZIP:
        return gzip.decompress(area)
    if codec == Compression.SNAPPY:  # librdkafka writes raw snappy
        return bytes(cramjam.snappy.decompress_raw(area))
    if codec == Compression.LZ4:
        return bytes(lz4.frame.decompress(area))
    if codec == Compression.ZSTD:
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(area))
    return area


@pytest.mark.parametrize("name", CAPTURES)
def test_our_encoder_writes_the_bytes_librdkafka_wrote(impl: ModuleType, name: str) -> None:
    """Same records and producer fields: byte-identical uncompressed batches, and
    for compressed ones the same records area before compression."""
    data, description = _load(name)
    sent = _sent(description)
    first = 0
    for header in impl.scan_batches(data):
        theirs = data[header.position : header.position + header.size]
        ours = impl.encode_batch(
            sent[first : first + header.record_count],
            compression=Compression.NONE,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            partition_leader_epoch=header.partition_leader_epoch,
        )
        assert ours[HEADER_SIZE:] == _inflate(header.compression, theirs[HEADER_SIZE:])
        if header.compression == Compression.NONE:
            assert ours == theirs
        first += header.record_count


@pytest.mark.parametrize("name", CAPTURES)
def test_batches_decode_one_at_a_time_as_they_do_together(impl: ModuleType, name: str) -> None:
    data, _ = _load(name)
    one_by_one = [r for batch in _batches(impl, data) for r in impl.decode_records(batch)]
    assert one_by_one == impl.decode_records(data)


@pytest.mark.parametrize("name", CAPTURES)
def test_assigning_offsets_keeps_the_batches_valid(impl: ModuleType, name: str) -> None:
    data, description = _load(name)
    buffer = bytearray(data)
    before = impl.scan_batches(data)
    next_offset = 1000
    for header in before:
        impl.rewrite_batch(buffer, header.position, next_offset, partition_leader_epoch=3)
        next_offset += header.record_count
    after = impl.validate_batches(buffer)
    assert [h.base_offset for h in after] == [1000, 1000 + before[0].record_count]
    assert all(h.partition_leader_epoch == 3 for h in after)
    # baseOffset and partitionLeaderEpoch lie outside the CRC: it stays as written.
    assert [h.crc for h in after] == [h.crc for h in before]
    records = impl.decode_records(buffer)
    assert [r.offset for r in records] == list(range(1000, next_offset))
    assert [(r.timestamp, r.key, r.value, r.headers) for r in records] == _sent(description)


@pytest.mark.parametrize("name", CAPTURES)
def test_log_append_time_recomputes_the_crc(impl: ModuleType, name: str) -> None:
    data, description = _load(name)
    buffer = bytearray(data)
    before = impl.scan_batches(data)
    append_time = 1_770_000_000_000
    for header in before:
        impl.rewrite_batch(buffer, header.position, 77, log_append_time=append_time)
    after = impl.validate_batches(buffer)
    assert all(h.timestamp_type == TimestampType.LOG_APPEND_TIME for h in after)
    assert all(h.max_timestamp == append_time for h in after)
    assert all(h.compression == b.compression for h, b in zip(after, before, strict=True))
    assert all(h.crc != b.crc for h, b in zip(after, before, strict=True))
    records = impl.decode_records(buffer)
    # Under LogAppendTime every record reads the broker's time (Kafka's rule).
    assert {r.timestamp for r in records} == {append_time}
    assert [(r.key, r.value, r.headers) for r in records] == [
        sent[1:] for sent in _sent(description)
    ]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(data=st.data(), name=st.sampled_from(CAPTURES))
def test_any_flipped_bit_under_the_crc_is_caught(
    impl: ModuleType, data: st.DataObject, name: str
) -> None:
    capture, _ = _load(name)
    header = data.draw(st.sampled_from(impl.scan_batches(capture)), label="batch")
    start = header.position + CRC_START
    position = data.draw(st.integers(start, header.position + header.size - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(capture)
    damaged[position] ^= 1 << bit
    with pytest.raises(CorruptBatch) as caught:
        impl.validate_batches(damaged)
    assert caught.value.position == header.position


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@differential
@given(data=st.data(), name=st.sampled_from(CAPTURES))
def test_a_flipped_bit_in_the_stored_crc_is_caught(
    impl: ModuleType, data: st.DataObject, name: str
) -> None:
    capture, _ = _load(name)
    header = data.draw(st.sampled_from(impl.scan_batches(capture)), label="batch")
    position = header.position + 17 + data.draw(st.integers(0, 3), label="crc byte")
    damaged = bytearray(capture)
    damaged[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    with pytest.raises(CorruptBatch):
        impl.validate_batches(damaged)


@pytest.mark.parametrize("name", CAPTURES)
def test_damage_anywhere_in_a_batch_is_an_error_not_a_crash(impl: ModuleType, name: str) -> None:
    """Every byte of the first batch, inverted: validate raises a BatchError, or the
    byte is one the CRC deliberately leaves out (baseOffset, partitionLeaderEpoch)."""
    capture, _ = _load(name)
    header = impl.scan_batches(capture)[0]
    outside_crc = set(range(8)) | set(range(12, 16))
    for position in range(0, min(header.size, 200)):
        damaged = bytearray(capture)
        damaged[position] ^= 0xFF
        if position in outside_crc:
            assert len(impl.validate_batches(damaged)) == 2
        else:
            with pytest.raises(BatchError):
                impl.validate_batches(damaged)


def _outcome(function: Any, data: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", function(data))
    except BatchError as error:
        return ("error", *error.facts())


damage = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("overwrite"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
)


@needs_c
@differential
@given(name=st.sampled_from(CAPTURES), how=damage)
def test_both_implementations_judge_damaged_captures_alike(
    name: str, how: tuple[str, float, int]
) -> None:
    """Real batches, damaged: C and Python accept, decode or reject them identically
    (decode_records does not check the CRC, so it meets the damage itself)."""
    capture, _ = _load(name)
    kind, where, value = how
    damaged = bytearray(capture)
    position = int(where * len(capture))
    if kind == "flip":
        damaged[position] ^= 1 << value
    elif kind == "truncate":
        del damaged[position:]
    else:
        damaged[position] = value
    for function in ("scan_batches", "validate_batches", "decode_records"):
        ours = _outcome(getattr(_pure, function), bytes(damaged))
        theirs = _outcome(getattr(c_impl(), function), bytes(damaged))
        assert ours == theirs, function


@pytest.mark.parametrize("name", CAPTURES)
def test_trailing_bytes_after_the_last_batch_are_rejected(impl: ModuleType, name: str) -> None:
    capture, _ = _load(name)
    cases: list[tuple[bytes, type[BatchError]]] = [
        (b"\x00", TruncatedBatch),  # too short to frame a batch
        (bytes(11), TruncatedBatch),
        (bytes(12), InvalidBatchLength),  # framed, but batchLength 0
        (capture[:60], TruncatedBatch),  # a batch cut inside its header
    ]
    for tail, error in cases:
        with pytest.raises(error) as caught:
            impl.validate_batches(capture + tail)
        assert caught.value.position == len(capture)
