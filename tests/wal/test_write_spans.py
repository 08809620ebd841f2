"""Writes split so that no one call covers a whole 2 MiB of the file
(wal/write_spans.py): the WAL's segment writes end on the file's odd MiB
boundaries, the local object store's writes on every MiB boundary, the
same bytes at the same places."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native.buffers import BytesLike
from s3stream.store.local import LocalStore
from tests.buffered_puts import without_direct_writes
from wal.format import SEGMENT_HEADER_SIZE
from wal.segment import SegmentWriter
from wal.write_spans import (
    FOLIO_BYTES,
    SPAN_BYTES,
    covers_a_whole_folio,
    write_spans,
)

MiB = 1 << 20


def _filled(lengths: list[int]) -> list[bytes]:
    return [bytes([index % 251]) * length for index, length in enumerate(lengths)]


@given(
    lengths=st.lists(st.integers(0, 700), max_size=30),
    offset=st.integers(0, 5000),
    span=st.sampled_from([16, 64, 1000]),
    most=st.integers(1, 8),
    cut_at=st.integers(0, 999),
)
def test_calls_hold_the_same_bytes_and_none_crosses_a_cut_or_passes_most(
    lengths: list[int], offset: int, span: int, most: int, cut_at: int
) -> None:
    cut_at %= span
    buffers = _filled(lengths)
    calls = [list(call) for call in write_spans(buffers, offset, span, most, cut_at)]
    assert b"".join(bytes(part) for call in calls for part in call) == b"".join(buffers)
    position = offset
    for number, call in enumerate(calls):
        size = sum(map(len, call))
        assert 0 < len(call) <= most and size > 0
        first, last = position - cut_at, position - cut_at + size - 1
        assert first // span == last // span  # between two cuts
        position += size
        ends_on_a_cut = (position - cut_at) % span == 0
        assert ends_on_a_cut or len(call) == most or number == len(calls) - 1


@given(offset=st.integers(0, 9 * FOLIO_BYTES), length=st.integers(0, 3 * FOLIO_BYTES))
def test_a_whole_folio_is_covered_when_an_aligned_one_lies_inside(offset: int, length: int) -> None:
    aligned = range(0, offset + length + 1, FOLIO_BYTES)
    inside = any(offset <= start and start + FOLIO_BYTES <= offset + length for start in aligned)
    assert covers_a_whole_folio(offset, length) == inside


def test_a_write_inside_one_span_is_one_call_of_the_same_buffers() -> None:
    buffers: list[BytesLike] = [b"a" * 100, memoryview(b"b" * 200)]
    assert list(write_spans(buffers, SPAN_BYTES - 300)) == [buffers]


def test_a_cut_buffer_is_a_view_of_it_not_a_copy() -> None:
    source = bytearray(b"x" * 3000)
    calls = list(write_spans([source], 1000, span=2048))
    first = calls[0][0]
    assert isinstance(first, memoryview) and first.obj is source
    assert [sum(map(len, call)) for call in calls] == [1048, 1952]


Calls = list[tuple[int, int]]


def _record_calls(
    monkeypatch: pytest.MonkeyPatch, name: str, offset_of: Callable[[int, int | None], int]
) -> Calls:
    """Records (file offset, bytes) of every call of os.<name>, passing it on."""
    calls: Calls = []
    real = getattr(os, name)

    def recorded(fd: int, buffers: Sequence[BytesLike], *offset: int) -> int:
        at = offset_of(fd, offset[0] if offset else None)
        calls.append((at, sum(map(len, buffers))))
        written: int = real(fd, buffers, *offset)
        return written

    monkeypatch.setattr(os, name, recorded)
    return calls


def _crosses_no_mib(calls: Calls) -> bool:
    return all(at // MiB == (at + size - 1) // MiB for at, size in calls if size)


def _covers_no_whole_2_mib(calls: Calls) -> bool:
    """No call holds all of an aligned 2 MiB of the file."""
    return all(-(-at // (2 * MiB)) * 2 * MiB + 2 * MiB > at + size for at, size in calls)


def test_a_segment_write_of_5_mb_never_covers_a_whole_2_mib_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "segment"
    path.write_bytes(bytes(6 * MiB))
    fd = os.open(path, os.O_RDWR)
    segment = SegmentWriter(str(path), 1, fd, SEGMENT_HEADER_SIZE, 6 * MiB)
    records: list[bytes | memoryview] = [os.urandom(1_000_000) for _ in range(5)]
    calls = _record_calls(monkeypatch, "pwritev", lambda fd, offset: offset or 0)
    try:
        segment.write(records)
    finally:
        segment.close()
    assert len(calls) == 3 and _covers_no_whole_2_mib(calls)  # cut at 1 and 3 MiB
    end = SEGMENT_HEADER_SIZE + 5_000_000
    assert sum(size for _, size in calls) == end - SEGMENT_HEADER_SIZE + (-end % 4096)
    assert path.read_bytes()[SEGMENT_HEADER_SIZE:end] == b"".join(records)


def test_a_segment_write_shorter_than_2_mib_is_one_call_across_a_mib_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut only where one call would take a whole 2 MiB folio: a group of
    a paced producer is never cut, so it gives the GIL up only once."""
    path = tmp_path / "segment"
    path.write_bytes(bytes(4 * MiB))
    fd = os.open(path, os.O_RDWR)
    segment = SegmentWriter(str(path), 1, fd, MiB - 1000, 4 * MiB)
    calls = _record_calls(monkeypatch, "pwritev", lambda fd, offset: offset or 0)
    try:
        segment.write([os.urandom(300_000)])
    finally:
        segment.close()
    assert calls == [(MiB - 1000, 300_000 + (-(MiB - 1000 + 300_000) % 4096))]


def test_an_object_put_is_a_writev_per_mib_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_direct_writes(monkeypatch)  # a filesystem without O_DIRECT
    store = LocalStore(tmp_path / "objects")
    parts = [os.urandom(1_000_000) for _ in range(5)]  # as the uploader's record batches
    calls = _record_calls(monkeypatch, "writev", lambda fd, _: os.lseek(fd, 0, os.SEEK_CUR))
    store.put("objects/a", parts)
    assert [size for _, size in calls] == [MiB] * 4 + [5_000_000 - 4 * MiB]
    assert _crosses_no_mib(calls) and _covers_no_whole_2_mib(calls)
    assert store.get("objects/a") == b"".join(parts)
