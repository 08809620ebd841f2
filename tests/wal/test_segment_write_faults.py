"""A segment write the disk takes in pieces, or refuses part way
(wal/segment.py, ``SegmentWriter.write``): the bytes land where they
belong whatever the calls return, and a group whose write fails part way
is not acknowledged while every acknowledged record survives.

The faults are injected (a wrapper around ``os.pwritev`` / ``os.pwrite``):
a real file system writes short only when it fills up mid-call."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native.buffers import BytesLike
from tests.short_writes import leading_bytes
from wal import Append, LogFailed, LogIOError, WriteAheadLog
from wal import segment as segment_module
from wal.format import SEGMENT_HEADER_SIZE
from wal.segment import PAGE_BYTES, SegmentWriter

MiB = 1 << 20
MOST_SHORT_WRITES = 20_000
"""Past this many short writes the disk takes the rest whole: megabytes
written one byte a call would take minutes on a loaded machine."""


class ShortWrites:
    """Stands in for os.pwritev and os.pwrite: each call writes only the
    share of its bytes the next fraction says (at least one byte), through
    the real call, and returns what it wrote."""

    def __init__(self, fractions: Sequence[float]) -> None:
        self._fractions = list(fractions)
        self._real_pwrite = os.pwrite
        self.calls = 0

    def _share(self, size: int) -> int:
        fraction = self._fractions[self.calls % len(self._fractions)] if self._fractions else 1.0
        self.calls += 1
        if self.calls > MOST_SHORT_WRITES:
            return size
        return max(1, min(size, int(size * fraction)))

    def pwritev(self, fd: int, buffers: Sequence[BytesLike], offset: int) -> int:
        wanted = self._share(sum(memoryview(buffer).nbytes for buffer in buffers))
        written: int = self._real_pwrite(fd, leading_bytes(buffers, wanted), offset)
        return written

    def pwrite(self, fd: int, data: BytesLike, offset: int) -> int:
        view = memoryview(data).cast("B")
        written: int = self._real_pwrite(fd, view[: self._share(len(view))], offset)
        return written


def _records(lengths: list[int]) -> list[bytes | memoryview]:
    return [bytes([1 + index % 250]) * length for index, length in enumerate(lengths)]


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 600_000), min_size=1, max_size=8),
    start=st.integers(SEGMENT_HEADER_SIZE, 3 * MiB),
    fractions=st.lists(st.floats(0.0, 1.0), max_size=6),
)
def test_any_sequence_of_short_writes_yields_the_same_file(
    tmp_path_factory: pytest.TempPathFactory,
    lengths: list[int],
    start: int,
    fractions: list[float],
) -> None:
    """Groups of any size (cut at the file's odd MiB or not), each call
    writing any share of its bytes: the file holds the records where one
    whole write would have put them, zeros to the end of the last page,
    and the write offset stops at the records' end."""
    size = 8 * MiB  # more than the largest group written at the latest start
    path = tmp_path_factory.mktemp("short") / "segment"
    stale = bytes([0xEE]) * size  # a recycled file's earlier life
    path.write_bytes(stale)
    records = _records(lengths)
    faults = ShortWrites(fractions)
    fd = os.open(path, os.O_RDWR)
    segment = SegmentWriter(str(path), 1, fd, start, size)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_module.os, "pwritev", faults.pwritev)
        patch.setattr(segment_module.os, "pwrite", faults.pwrite)
        try:
            segment.write(records)
            end = segment.write_offset
        finally:
            segment.close()
    expected = bytearray(stale)
    body = b"".join(bytes(record) for record in records)
    expected[start : start + len(body)] = body
    assert end == start + len(body)
    padded = min(-end % PAGE_BYTES, size - end)  # padding never grows the file
    expected[end : end + padded] = bytes(padded)
    assert path.read_bytes() == expected


Fault = Callable[..., int]


def _failing_on_call(number: int, real: Fault) -> tuple[Fault, list[int]]:
    """A pwritev that raises EIO on its ``number``-th call (counted from 1)
    and passes the others on; the list counts the calls."""
    calls = [0]

    def pwritev(fd: int, buffers: Sequence[BytesLike], offset: int) -> int:
        calls[0] += 1
        if calls[0] == number:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        written: int = real(fd, buffers, offset)
        return written

    return pwritev, calls


@pytest.mark.parametrize("failing_call", [2, 3])
def test_a_group_whose_write_fails_after_some_spans_is_not_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    """A group of 5 MB is written in three calls (cut at 1 and 3 MiB): one
    that fails after the first lands fails the group, every later append
    is refused, and a reopened log holds every acknowledged record, in
    order, and none of the failed group's bytes past the failure."""
    directory = tmp_path / "wal"
    log = WriteAheadLog(directory, segment_bytes=16 * MiB)
    acknowledged = [log.append(bytes([index]) * 1000) for index in range(1, 4)]
    assert len(acknowledged) == 3
    pwritev, calls = _failing_on_call(failing_call, os.pwritev)
    monkeypatch.setattr(segment_module.os, "pwritev", pwritev)
    group = [bytes([0x40 + index]) * 1_000_000 for index in range(5)]
    with pytest.raises(LogIOError):  # one batch: one group, one write
        log.submit_many([Append(payload) for payload in group]).result(timeout=30)
    assert calls[0] == failing_call, "the group was written in calls, and none after the failure"
    monkeypatch.undo()
    with pytest.raises(LogFailed):
        log.append(b"refused")
    log.close()
    with WriteAheadLog(directory, segment_bytes=16 * MiB) as reopened:
        found = [bytes(entry.payload) for entry in reopened.replay()]
    assert found[:3] == [bytes([index]) * 1000 for index in range(1, 4)]
    # Whole records of the failed group that landed before the failure may
    # come back (never acknowledged, as after a crash mid-write); they are
    # whole, in order, and none lies past the failed call's offset.
    assert found[3:] == group[: len(found) - 3]
    assert len(found) - 3 < len(group)
