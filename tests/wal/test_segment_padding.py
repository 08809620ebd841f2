"""A segment write ends on a page boundary: zeros follow the records to the
end of their last page, within the file's size, and the write offset stays
at the records' end (wal/segment.py, docs/wal-format.md).

The files here are filled with a marker byte first, as a recycled segment
holds an earlier life's bytes, so every zero found was written by the pad.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal import WriteAheadLog
from wal.format import SEGMENT_HEADER_SIZE
from wal.segment import PAGE_BYTES, SegmentWriter

OLD = 0xAB
"""The byte an earlier life left everywhere."""


def _old_file(path: Path, size: int) -> Path:
    path.write_bytes(bytes([OLD]) * size)
    return path


@contextlib.contextmanager
def _old_segment(path: Path, size: int) -> Iterator[SegmentWriter]:
    """A segment over a file of ``size`` old bytes, opened as a recycled file
    is: its size is the limit."""
    fd = os.open(_old_file(path, size), os.O_RDWR)
    segment = SegmentWriter(str(path), 1, fd, SEGMENT_HEADER_SIZE, os.fstat(fd).st_size)
    try:
        yield segment
    finally:
        segment.close()


def test_a_write_is_followed_by_zeros_to_the_end_of_its_page_and_nothing_beyond(
    tmp_path: Path,
) -> None:
    path = tmp_path / "segment"
    with _old_segment(path, 3 * PAGE_BYTES) as segment:
        segment.write([b"r" * 100])
        end = SEGMENT_HEADER_SIZE + 100
        assert segment.write_offset == end  # the zeros are not part of the log
        data = path.read_bytes()
        assert data[SEGMENT_HEADER_SIZE:end] == b"r" * 100
        assert data[end:PAGE_BYTES] == bytes(PAGE_BYTES - end)
        assert data[PAGE_BYTES:] == bytes([OLD]) * (2 * PAGE_BYTES)


def test_the_next_write_begins_on_the_zeros_and_covers_them(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    with _old_segment(path, 3 * PAGE_BYTES) as segment:
        segment.write([b"a" * 100])
        segment.write([b"b" * PAGE_BYTES])  # from inside the first page into the second
        end = SEGMENT_HEADER_SIZE + 100 + PAGE_BYTES
        data = path.read_bytes()
        assert data[SEGMENT_HEADER_SIZE:end] == b"a" * 100 + b"b" * PAGE_BYTES
        assert data[end : 2 * PAGE_BYTES] == bytes(2 * PAGE_BYTES - end)
        assert data[2 * PAGE_BYTES :] == bytes([OLD]) * PAGE_BYTES


def test_a_write_ending_on_a_page_boundary_writes_no_zeros(tmp_path: Path) -> None:
    path = tmp_path / "segment"
    with _old_segment(path, 2 * PAGE_BYTES) as segment:
        segment.write([b"p" * (PAGE_BYTES - SEGMENT_HEADER_SIZE)])
        assert path.read_bytes()[PAGE_BYTES:] == bytes([OLD]) * PAGE_BYTES


def test_the_zeros_never_grow_the_file(tmp_path: Path) -> None:
    size = PAGE_BYTES + 600  # a segment size that is no multiple of the page
    path = tmp_path / "segment"
    with _old_segment(path, size) as segment:
        segment.write([b"x" * (PAGE_BYTES - SEGMENT_HEADER_SIZE + 100)])
        data = path.read_bytes()
        assert len(data) == size
        assert data[PAGE_BYTES + 100 :] == bytes(500)


def test_a_segment_that_grows_as_it_is_written_gets_no_zeros(tmp_path: Path) -> None:
    """Without preallocation the file is as long as what was written: there
    is no page past its end to read, and none is written."""
    segment = SegmentWriter.create(str(tmp_path), 1, 1 << 20, preallocate=False)
    try:
        segment.write([b"g" * 100])
        assert os.path.getsize(segment.path) == SEGMENT_HEADER_SIZE + 100
    finally:
        segment.close()


def test_recycled_and_preallocated_segments_are_written_to_page_ends(tmp_path: Path) -> None:
    size = 4 * PAGE_BYTES
    reused = _old_file(tmp_path / "free-1.wal", size)
    for segment in (
        SegmentWriter.create(str(tmp_path), 2, size, preallocate=False, reuse=str(reused)),
        SegmentWriter.create(str(tmp_path), 3, size, preallocate=True),
    ):
        try:
            segment.write([b"w" * 10])
            data = Path(segment.path).read_bytes()
            assert len(data) == size
            end = SEGMENT_HEADER_SIZE + 10
            assert data[end:PAGE_BYTES] == bytes(PAGE_BYTES - end)
        finally:
            segment.close()
    assert Path(tmp_path / f"{2:020d}.wal").read_bytes()[PAGE_BYTES:] == bytes([OLD]) * (
        3 * PAGE_BYTES
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3 * PAGE_BYTES), min_size=1, max_size=12))
def test_after_every_write_the_file_holds_the_records_then_zeros_to_the_page_end(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int]
) -> None:
    size = 8 * PAGE_BYTES + 1000
    path = tmp_path_factory.mktemp("padding") / "segment"
    written = b""
    with _old_segment(path, size) as segment:
        for index, length in enumerate(sizes):
            room = size - segment.write_offset
            record = bytes([index % 200 + 1]) * min(length, room)
            if not record:
                break
            segment.write([record[: len(record) // 2], record[len(record) // 2 :]])
            written += record
            end = SEGMENT_HEADER_SIZE + len(written)
            page_end = min(-(-end // PAGE_BYTES) * PAGE_BYTES, size)
            data = path.read_bytes()
            assert segment.write_offset == end
            assert len(data) == size
            assert data[SEGMENT_HEADER_SIZE:end] == written
            assert data[end:page_end] == bytes(page_end - end)
            assert data[page_end:] == bytes([OLD]) * (size - page_end)


def test_a_log_written_with_zeros_past_each_group_replays_every_record(tmp_path: Path) -> None:
    payloads = [b"%04d" % i + b"." * (i * 37 % 900) for i in range(200)]
    with WriteAheadLog(tmp_path / "wal", segment_bytes=64 * 1024) as log:
        for payload in payloads:
            log.append(payload)
    with WriteAheadLog(tmp_path / "wal", segment_bytes=64 * 1024) as log:
        assert [bytes(entry.payload) for entry in log.replay()] == payloads
