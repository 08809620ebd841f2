"""The spare segment a preallocating log keeps ready: none is made at open
(its zeros would be written and synced while the log's owner makes its own
first syncs), one is made at the first trim and taken by the next segment made."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from wal import WriteAheadLog
from wal import segment as segment_module
from wal.recovery import FREE_PREFIX

OpenLog = Callable[..., WriteAheadLog]
SEGMENT = 256 * 1024
MiB = 1 << 20


def _spares(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(FREE_PREFIX))


def test_opening_a_preallocating_log_makes_no_spare(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT, preallocate=True)
    log.append(b"record")
    log.close()  # waits for a spare being made, if one were
    assert _spares(tmp_path / "wal") == []


def test_the_first_trim_makes_a_spare_and_the_next_open_takes_it(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT, preallocate=True)
    try:
        log.trim(log.append(b"first"))
        log.close()  # waits for the spare
        assert len(_spares(tmp_path / "wal")) == 1
        log = WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT, preallocate=True)
        assert _spares(tmp_path / "wal") == []  # the open's new segment is the spare
        record = b"x" * (SEGMENT // 4)
        for _ in range(5):  # past a segment: the roll makes one afresh
            log.append(record)
        assert [bytes(e.payload) for e in log.replay()] == [b"first"] + [record] * 5
    finally:
        log.close()


def _pwrite_that(fault: Callable[[int, bytes, int], int]) -> Callable[..., int]:
    return lambda fd, data, offset: fault(fd, bytes(data), offset)


def test_a_spare_written_short_is_written_whole_without_holes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write (the disk filling up mid-call) is finished where it
    stopped: skipped, it left a hole the segment's syncs would fill as
    fallocated blocks do, or a spare short of its size."""
    real = os.pwrite
    monkeypatch.setattr(
        segment_module.os,
        "pwrite",
        _pwrite_that(lambda fd, data, offset: real(fd, data[: max(1, len(data) // 3)], offset)),
    )
    path = Path(segment_module.zero_filled_file(str(tmp_path), 3 * MiB + 4096, "spare.wal"))
    monkeypatch.undo()
    assert path.stat().st_size == 3 * MiB + 4096
    with path.open("rb") as file:
        assert os.lseek(file.fileno(), 0, os.SEEK_HOLE) == 3 * MiB + 4096  # no hole before the end
    assert path.read_bytes() == bytes(3 * MiB + 4096)


def test_a_spare_the_disk_cannot_hold_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its written part would hold disk space the next roll needs for
    its own segment until the log was opened again."""
    real = os.pwrite
    calls = [0]

    def filling(fd: int, data: bytes, offset: int) -> int:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(segment_module.os, "pwrite", _pwrite_that(filling))
    with pytest.raises(OSError) as raised:
        segment_module.zero_filled_file(str(tmp_path), 4 * MiB, "spare.wal")
    assert raised.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
