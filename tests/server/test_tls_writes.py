"""What a response's parts become as writes to a TLS transport: the same
bytes in order, no write above TLS_WRITE_BYTES, small parts joined, large
ones cut into views of the parts (not copied)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.protocol.codec import Parts
from engine.server.tls import TLS_RECORD_BYTES, TLS_WRITE_BYTES, tls_writes
from tests.native.conftest import c_impl, needs_c

part_sizes = st.sampled_from([0, 1, 9, 100, TLS_RECORD_BYTES - 1, TLS_RECORD_BYTES])
part_sizes |= st.integers(0, 3 * TLS_WRITE_BYTES)


def make(sizes: list[int]) -> Parts:
    kinds = (bytes, bytearray, lambda b: memoryview(b)[1:])
    return [kinds[i % 3](bytes([i % 251]) * (size + (i % 3 == 2))) for i, size in enumerate(sizes)]


@given(st.lists(part_sizes, max_size=12))
def test_the_writes_are_the_parts_bytes_in_bounded_pieces(sizes: list[int]) -> None:
    parts = make(sizes)
    writes = tls_writes(parts)
    assert b"".join(writes) == b"".join(parts)
    assert all(0 < len(write) <= TLS_WRITE_BYTES for write in writes)
    large = sum(len(p) >= TLS_RECORD_BYTES for p in parts)
    small = sum(0 < len(p) < TLS_RECORD_BYTES for p in parts)
    assert len(writes) <= sum(-(-len(p) // TLS_WRITE_BYTES) for p in parts if len(p)) + (small > 0)
    assert len(writes) >= large


def test_small_parts_make_one_write() -> None:
    parts: Parts = [b"h" * 40, bytearray(b"x" * 100)] * 50
    assert tls_writes(parts) == [b"".join(parts)]


def test_a_large_part_is_cut_into_views_of_it() -> None:
    record_batches = bytes(range(256)) * 4096  # 1 MiB
    header = b"\0\0\0\1" * 4
    writes = tls_writes([header, memoryview(record_batches)])
    assert writes[0] == header
    assert all(isinstance(w, memoryview) and w.obj is record_batches for w in writes[1:])
    assert [len(w) for w in writes[1:]] == [TLS_WRITE_BYTES] * (
        len(record_batches) // TLS_WRITE_BYTES
    )


@needs_c
def test_every_write_is_of_a_type_the_transport_takes() -> None:
    """asyncio's TLS transport refuses a write that is not bytes, bytearray
    or memoryview: a stored batch kept as a ByteSlice is written as a view
    of it, also when it is the only small part of a write."""
    frame = bytearray(range(256)) * 200
    alone = c_impl().untracked_view(memoryview(frame)[: TLS_RECORD_BYTES - 100])
    large = c_impl().untracked_view(memoryview(frame)[: TLS_RECORD_BYTES + 100])
    parts: Parts = [alone, large, alone]
    writes = tls_writes(parts)
    assert all(isinstance(write, bytes | bytearray | memoryview) for write in writes)
    assert b"".join(writes) == b"".join(parts)
