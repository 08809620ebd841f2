"""Batches written by librdkafka (tests/data/librdkafka) read back exactly as sent."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.errors import CorruptBatch
from native.records import Compression
from tests.native.conftest import IMPLEMENTATIONS

DATA = Path(__file__).parent.parent / "data" / "librdkafka"
CAPTURES = sorted(p.stem for p in DATA.glob("*.bin"))
CODECS = {
    "none": Compression.NONE,
    "gzip": Compression.GZIP,
    "snappy": Compression.SNAPPY,
    "lz4": Compression.LZ4,
    "zstd": Compression.ZSTD,
}


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def _load(name: str) -> tuple[bytes, dict[str, Any]]:
    return (DATA / f"{name}.bin").read_bytes(), json.loads((DATA / f"{name}.json").read_text())


def _sent(description: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r["timestamp"],
            _unb64(r["key"]),
            _unb64(r["value"]),
            tuple((k, _unb64(v)) for k, v in r["headers"]),
        )
        for r in description["records"]
    ]


def test_every_codec_and_idempotence_was_captured() -> None:
    assert set(CAPTURES) >= {*CODECS, "lz4-idempotent"}


@pytest.mark.parametrize("name", CAPTURES)
def test_headers_are_what_the_client_set(impl: ModuleType, name: str) -> None:
    data, description = _load(name)
    headers = impl.validate_batches(data)
    assert headers, "no batch in the capture"
    assert sum(h.record_count for h in headers) == len(description["records"])
    for header in headers:
        assert header.magic == 2
        assert header.compression == CODECS[description["compression.type"]]
        assert header.timestamp_type == 0
        assert not header.is_transactional and not header.is_control
        if description["enable.idempotence"]:
            assert header.producer_id >= 0 and header.producer_epoch >= 0
            assert header.base_sequence >= 0
        else:
            assert (header.producer_id, header.base_sequence) == (-1, -1)
    if description["compression.type"] != "none":
        assert len(data) < sum(len(r["value"] or "") for r in description["records"]) / 2


@pytest.mark.parametrize("name", CAPTURES)
def test_records_decode_to_what_was_sent(impl: ModuleType, name: str) -> None:
    data, description = _load(name)
    records = impl.decode_records(data)
    assert [(r.timestamp, r.key, r.value, r.headers) for r in records] == _sent(description)
    assert [r.offset for r in records] == list(range(len(records)))


@pytest.mark.parametrize("name", CAPTURES)
def test_rewriting_the_base_offset_keeps_the_batch_valid(impl: ModuleType, name: str) -> None:
    data, _ = _load(name)
    buffer = bytearray(data)
    next_offset = 1000
    for header in impl.scan_batches(data):
        impl.rewrite_batch(buffer, header.position, next_offset, partition_leader_epoch=3)
        next_offset += header.record_count
    rewritten = impl.validate_batches(bytes(buffer))
    assert rewritten[0].base_offset == 1000
    assert [r.offset for r in impl.decode_records(bytes(buffer))] == list(range(1000, next_offset))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=40)
@given(name=st.sampled_from(CAPTURES), where=st.floats(0, 1), bit=st.integers(0, 7))
def test_any_flipped_bit_under_the_crc_is_caught(
    impl: ModuleType, name: str, where: float, bit: int
) -> None:
    data, _ = _load(name)
    header = impl.scan_batches(data)[0]
    position = 21 + int(where * (header.size - 22))
    damaged = bytearray(data)
    damaged[position] ^= 1 << bit
    with pytest.raises(CorruptBatch):
        impl.validate_batches(bytes(damaged))
