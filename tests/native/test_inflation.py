"""Every inflation is bounded: bombs and length claims, per codec, in
validate_batches and decode_records, C and Python alike."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native import compression
from native.compression import InflationLimit
from native.errors import InflationLimitExceeded
from native.records import Compression
from tests.native import bombs

LIMIT = 4 * bombs.MIB
HEADROOM = 256 * bombs.MIB
"""Far below what any bomb here inflates to (200 MiB to 10 GiB, or a 4 GiB claim)."""


@pytest.mark.parametrize("name", sorted(bombs.BOMBS))
def test_a_bomb_is_refused_at_the_limit_when_validated(impl: ModuleType, name: str) -> None:
    batch = bombs.bomb_batch(name)
    peak = bombs.vm_hwm_bytes()
    with pytest.raises(InflationLimitExceeded) as caught:
        impl.validate_batches(batch, max_inflated=LIMIT)
    assert caught.value.kafka_error == "CORRUPT_MESSAGE"
    assert (caught.value.position, caught.value.expected) == (0, LIMIT)
    assert caught.value.found is not None and caught.value.found > LIMIT
    assert bombs.vm_hwm_bytes() < peak + HEADROOM


@pytest.mark.parametrize("name", sorted(bombs.BOMBS))
def test_a_bomb_is_refused_at_the_limit_when_decoded(impl: ModuleType, name: str) -> None:
    batch = bombs.bomb_batch(name)
    peak = bombs.vm_hwm_bytes()
    with pytest.raises(InflationLimitExceeded):
        impl.decode_records(batch, max_inflated=LIMIT)
    with pytest.raises(InflationLimitExceeded):
        impl.decode_records(batch)  # the default limit, native.MAX_INFLATED
    assert bombs.vm_hwm_bytes() < peak + HEADROOM


def test_both_implementations_refuse_a_bomb_with_the_same_facts(
    impl: ModuleType,
) -> None:
    batch = bombs.wrap(Compression.ZSTD, bombs.zstd_bomb(LIMIT + 1))
    with pytest.raises(InflationLimitExceeded) as caught:
        impl.validate_batches(batch, max_inflated=LIMIT)
    assert caught.value.facts() == (InflationLimitExceeded, 0, LIMIT, LIMIT + 1)
    assert str(caught.value) == (
        f"batch at 0: ZSTD data inflates past the limit of {LIMIT} bytes "
        f"({LIMIT + 1} bytes or more)"
    )


def _two_mib(codec: int) -> bytes:
    if codec == Compression.GZIP:
        return bombs.gzip_bomb.__wrapped__(2)
    if codec == Compression.LZ4:
        return bombs.lz4_bomb.__wrapped__(2)
    return bombs.zstd_bomb(2 * bombs.MIB)


@pytest.mark.parametrize("codec", [Compression.GZIP, Compression.LZ4, Compression.ZSTD])
def test_data_exactly_at_the_limit_inflates(codec: int) -> None:
    area = _two_mib(codec)
    assert len(compression.decompress(codec, area, 2 * bombs.MIB)) == 2 * bombs.MIB
    with pytest.raises(InflationLimit) as caught:
        compression.decompress(codec, area, 2 * bombs.MIB - 1)
    assert caught.value.limit == 2 * bombs.MIB - 1


def test_a_snappy_claim_is_refused_before_anything_is_allocated() -> None:
    with pytest.raises(InflationLimit) as caught:
        compression.decompress(Compression.SNAPPY, bombs.snappy_claim(), LIMIT)
    assert caught.value.found == 0xFFFFFFFF
    with pytest.raises(InflationLimit) as caught:
        compression.decompress(Compression.SNAPPY, bombs.xerial_claim(), LIMIT)
    assert caught.value.found == 0xFFFFFFFF


def test_xerial_chunks_share_one_limit() -> None:
    chunk = bytes(compression.compress(Compression.SNAPPY, bytes(1000)))
    framed = bombs._XERIAL + (len(chunk).to_bytes(4, "big") + chunk) * 3
    assert compression.decompress(Compression.SNAPPY, framed, 3000) == bytes(3000)
    with pytest.raises(InflationLimit) as caught:
        compression.decompress(Compression.SNAPPY, framed, 2999)
    assert caught.value.found == 3000


def test_a_truncated_stream_is_refused_as_bad_data() -> None:
    for codec in (Compression.GZIP, Compression.LZ4):
        area = compression.compress(codec, bytes(range(256)) * 64)
        with pytest.raises(ValueError) as caught:
            compression.decompress(codec, area[:-6], LIMIT)
        assert not isinstance(caught.value, InflationLimit)


@given(st.sampled_from(list(Compression)[1:]), st.binary(max_size=5000), st.integers(0, 6000))
def test_decompress_round_trips_within_the_limit_and_refuses_past_it(
    codec: int, data: bytes, limit: int
) -> None:
    area = compression.compress(codec, data)
    if len(data) <= limit:
        assert compression.decompress(codec, area, limit) == data
    else:
        with pytest.raises(InflationLimit):
            compression.decompress(codec, area, limit)


def test_a_zstd_frame_is_held_to_its_declared_content_size() -> None:
    """A declared size past the limit is refused unread; one smaller than
    the frame's real output cannot make the one-shot path write past it."""
    frame = compression.compress(Compression.ZSTD, b"x" * 1000)  # declares 1000 bytes
    with pytest.raises(InflationLimit) as caught:
        compression.decompress(Compression.ZSTD, frame, 999)
    assert caught.value.found == 1000
    assert compression.decompress(Compression.ZSTD, frame, 1000) == b"x" * 1000
    forged = bytearray(frame)
    assert forged[4] >> 6 == 1 and forged[4] & 0x20  # a 2-byte content size, single segment
    forged[5:7] = (300 - 256).to_bytes(2, "little")  # declares 300 bytes
    with pytest.raises(ValueError) as refused:
        compression.decompress(Compression.ZSTD, bytes(forged), 5000)
    assert not isinstance(refused.value, InflationLimit)
