"""crc32c_combine and crc32c_batches: the CRC of a buffer of checked record
batches from the batches' own CRCs, equal to reading every byte, in both
implementations and between them."""

from __future__ import annotations

import os
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native import _pure
from native._crc32c_reference import crc32c_reference
from native.records import RecordSpec
from tests.native.conftest import C_IMPL, IMPLEMENTATIONS, differential, needs_c

crcs = st.integers(0, 0xFFFFFFFF)


@given(st.binary(max_size=2000), st.binary(max_size=2000), crcs)
def test_combine_gives_the_crc_of_both_buffers_in_a_row(a: bytes, b: bytes, seed: int) -> None:
    for impl in IMPLEMENTATIONS:
        module = impl.values[0]
        first = module.crc32c(a, seed)
        assert module.crc32c_combine(first, module.crc32c(b), len(b)) == module.crc32c(a + b, seed)


def test_combine_over_lengths_past_32_bits(impl: ModuleType) -> None:
    # The powers repeat past 2^32 bits of zeros; the C takes a 64-bit length.
    crc = impl.crc32c(b"tidelog")
    assert impl.crc32c_combine(crc, 0, 0) == crc
    assert impl.crc32c_combine(crc, 0, 1 << 33) == impl.crc32c_combine(
        impl.crc32c_combine(crc, 0, 1 << 32), 0, 1 << 32
    )


def test_combine_refuses_what_is_not_a_crc_or_a_length(impl: ModuleType) -> None:
    with pytest.raises(OverflowError):
        impl.crc32c_combine(1 << 32, 0, 1)
    with pytest.raises(ValueError):
        impl.crc32c_combine(0, 0, -1)
    with pytest.raises(TypeError):
        impl.crc32c_combine(0, 0, "1")


def _batch(impl: ModuleType, values: list[int], base_offset: int) -> bytes:
    specs = [RecordSpec(1_700_000_000_000, None, os.urandom(size), ()) for size in values]
    batch: bytes = impl.encode_batch(specs, base_offset=base_offset)
    return batch


value_sizes = st.lists(st.sampled_from([0, 10, 1000, 5000, 70_000]), min_size=1, max_size=6)


@differential
@given(st.lists(value_sizes, min_size=0, max_size=4), st.binary(max_size=100), crcs)
def test_batches_give_the_crc_of_every_byte(
    batches: list[list[int]], tail: bytes, seed: int
) -> None:
    for impl in IMPLEMENTATIONS:
        module = impl.values[0]
        data = b"".join(_batch(module, sizes, 10 * i) for i, sizes in enumerate(batches)) + tail
        assert module.crc32c_batches(data, seed) == crc32c_reference(data, seed)


def test_a_large_batch_is_not_read_past_its_header(impl: ModuleType) -> None:
    """The bytes a batch's CRC covers are combined in from that CRC, not read:
    with the CRC field off by one bit, the result no longer matches a read
    of every byte."""
    batch = bytearray(_batch(impl, [70_000], 0))
    right = impl.crc32c_batches(batch)
    assert right == impl.crc32c(batch)
    batch[17] ^= 0x01  # the CRC field, which the CRC it holds does not cover
    assert impl.crc32c_batches(batch) != impl.crc32c(batch)


@pytest.mark.parametrize(
    ("at", "damage"),
    [
        pytest.param(16, b"\x01", id="magic-1"),
        pytest.param(8, (1 << 30).to_bytes(4, "big"), id="longer-than-the-buffer"),
        pytest.param(8, (10).to_bytes(4, "big"), id="shorter-than-a-header"),
    ],
)
def test_bytes_that_do_not_frame_as_a_batch_are_read(
    impl: ModuleType, at: int, damage: bytes
) -> None:
    data = bytearray(_batch(impl, [70_000], 0))
    data[at : at + len(damage)] = damage
    assert impl.crc32c_batches(data, 7) == impl.crc32c(data, 7)


@needs_c
@differential
@given(st.binary(min_size=61, max_size=9000), crcs)
def test_c_and_python_agree_on_any_bytes(data: bytes, seed: int) -> None:
    """Framed or not, right CRC fields or not: the two give the same answer."""
    assert C_IMPL is not None
    framed = bytearray(data)
    framed[8:12] = (len(data) - 12).to_bytes(4, "big")  # one batch over the whole buffer
    framed[16] = 2
    for candidate in (data, bytes(framed)):
        assert C_IMPL.crc32c_batches(candidate, seed) == _pure.crc32c_batches(candidate, seed)
