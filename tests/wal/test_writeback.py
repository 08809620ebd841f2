"""wal/writeback.py: background writers (a spare segment's zeros, the local
object store's objects) write their bytes out a step at a time without a
sync, so the log's fdatasync queues behind no journal commit or cache
flush of theirs; one fsync at the end still makes their file durable."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wal import writeback
from wal.segment import ZERO_FILL_CHUNK, zero_filled_file

MiB = 1 << 20


class Calls:
    """Records write_back's sync_file_range calls (passing them on) and every fdatasync."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ranges: list[tuple[int, int, int]] = []
        self.fdatasyncs = 0
        real_range = writeback.sync_file_range
        assert real_range is not None, "Linux with glibc: sync_file_range is there"
        real_fdatasync = os.fdatasync

        def recorded_range(fd: int, offset: int, length: int, flags: int) -> int:
            self.ranges.append((offset, length, flags))
            return real_range(fd, offset, length, flags)

        def recorded_fdatasync(fd: int) -> None:
            self.fdatasyncs += 1
            real_fdatasync(fd)

        monkeypatch.setattr(writeback, "sync_file_range", recorded_range)
        monkeypatch.setattr(os, "fdatasync", recorded_fdatasync)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    yield Calls(monkeypatch)


def test_a_spare_is_written_out_a_chunk_at_a_time_and_synced_once(
    tmp_path: Path, calls: Calls
) -> None:
    size = 3 * ZERO_FILL_CHUNK + ZERO_FILL_CHUNK // 2
    path = zero_filled_file(str(tmp_path), size, "spare.wal")
    both = writeback.WAIT_BEFORE | writeback.WRITE | writeback.WAIT_AFTER
    assert calls.ranges == [
        (0, ZERO_FILL_CHUNK, both),
        (ZERO_FILL_CHUNK, ZERO_FILL_CHUNK, both),
        (2 * ZERO_FILL_CHUNK, ZERO_FILL_CHUNK, both),
        (3 * ZERO_FILL_CHUNK, ZERO_FILL_CHUNK // 2, both),
    ]
    assert calls.fdatasyncs == 0  # its one fsync at the end made it durable
    assert Path(path).read_bytes() == bytes(size)


def test_a_spare_is_written_out_half_a_mib_at_a_time(tmp_path: Path, calls: Calls) -> None:
    # The step 0129 measured: a 1 MiB one queues twice the zeros ahead of
    # the log's fdatasync, and its faster fill on a busy disk bought a
    # flat-out fill's rolls no more spares.
    zero_filled_file(str(tmp_path), 2 * MiB, "spare.wal")
    assert [length for _, length, _ in calls.ranges] == [512 * 1024] * 4


def test_the_wal_format_spec_names_the_spares_step() -> None:
    spec = (Path(__file__).parents[2] / "docs" / "wal-format.md").read_text()
    prose = " ".join(spec.split())
    assert f"A spare is written out {ZERO_FILL_CHUNK // 1024} KiB at a time" in prose


def test_without_sync_file_range_each_step_is_fdatasynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(writeback, "sync_file_range", None)
    monkeypatch.setattr(os, "fdatasync", synced.append)
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writeback.write_back(fd, 0, 0)
    finally:
        os.close(fd)
    assert synced == [fd]


@pytest.mark.parametrize("refusal", [errno.ENOSYS, errno.EINVAL, errno.ESPIPE])
def test_a_file_that_refuses_sync_file_range_is_fdatasynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    synced: list[int] = []

    def refused(fd: int, offset: int, length: int, flags: int) -> int:
        ctypes.set_errno(refusal)
        return -1

    monkeypatch.setattr(writeback, "sync_file_range", refused)
    monkeypatch.setattr(os, "fdatasync", synced.append)
    writeback.write_back(7, 0, MiB)
    assert synced == [7]


def test_a_failing_write_out_raises_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def failed(fd: int, offset: int, length: int, flags: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(writeback, "sync_file_range", failed)
    with pytest.raises(OSError) as raised:
        writeback.write_back(7, 0, MiB)
    assert raised.value.errno == errno.EIO
