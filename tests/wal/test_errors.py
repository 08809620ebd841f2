"""Each failure is a typed error with its facts, and nothing acknowledged is lost."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.wal.conftest import SMALL_SEGMENT, crash_image, payloads, segment_files
from wal import (
    CorruptSegment,
    DiskFull,
    LogFailed,
    LogIOError,
    LogLocked,
    NoRoomForSegment,
    PermissionDenied,
    WriteAheadLog,
)
from wal import segment as segment_module

OpenLog = Callable[..., WriteAheadLog]


def test_a_second_open_in_the_same_process_is_locked_out(open_log: OpenLog) -> None:
    open_log()
    with pytest.raises(LogLocked) as raised:
        open_log()
    assert raised.value.path.endswith("wal")


def test_another_process_cannot_open_a_locked_directory(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    log.append(b"held")
    script = (
        "import sys\n"
        "from wal import WriteAheadLog, LogLocked\n"
        "try:\n"
        f"    WriteAheadLog({str(tmp_path / 'wal')!r})\n"
        "except LogLocked:\n"
        "    sys.exit(3)\n"
    )
    child = subprocess.run([sys.executable, "-c", script], check=False)
    assert child.returncode == 3
    log.close()
    child = subprocess.run([sys.executable, "-c", script], check=False)
    assert child.returncode == 0


def test_permission_denied_is_a_typed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "locked-down"
    directory.mkdir()
    if os.geteuid() == 0:
        # Root ignores file modes, so the refusal is injected where the OS would raise it.
        real_open = os.open

        def refusing_open(path: str, *args: object, **kwargs: object) -> int:
            if str(path).startswith(str(directory)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", refusing_open)
    else:
        directory.chmod(0o500)
    with pytest.raises(PermissionDenied) as raised:
        WriteAheadLog(directory)
    assert str(directory) in raised.value.path


def test_a_file_where_the_directory_should_be_is_an_io_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_bytes(b"")
    with pytest.raises(LogIOError):
        WriteAheadLog(tmp_path / "not-a-dir")


def test_disk_full_fails_the_group_and_every_later_append_keeps_acked_data(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=1 << 20)
    acked = [log.append(b"before %d" % i) for i in range(5)]
    assert len(acked) == 5

    def full_disk(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_module.os, "pwritev", full_disk)
    with pytest.raises(DiskFull) as raised:
        log.append(b"does not fit")
    assert raised.value.path.endswith(".wal")
    monkeypatch.undo()
    with pytest.raises(LogFailed) as later:
        log.append(b"after the failure")
    assert isinstance(later.value.cause, DiskFull)
    log.close()
    assert payloads(open_log(segment_bytes=1 << 20)) == [b"before %d" % i for i in range(5)]


def test_a_failed_sync_is_never_acknowledged(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    log.append(b"fine")

    def failing_sync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(segment_module.os, "fdatasync", failing_sync)
    with pytest.raises(LogIOError) as raised:
        log.append(b"unsynced")
    assert raised.value.errno == errno.EIO
    with pytest.raises(LogFailed):
        log.append(b"refused")


def _fill_segments(log: WriteAheadLog, count: int) -> list[bytes]:
    data = [bytes([i]) * 600 for i in range(count)]
    for d in data:
        log.append(d)
    return data


def test_a_corrupt_record_in_a_sealed_segment_raises_with_its_location(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = open_log()
    _fill_segments(log, 30)
    log.close()
    middle = segment_files(tmp_path / "wal")[1]
    raw = bytearray(middle.read_bytes())
    raw[32 + 44 + 10] ^= 0xFF  # inside the first record's payload
    middle.write_bytes(raw)
    with pytest.raises(CorruptSegment) as raised:
        open_log()
    assert raised.value.path == str(middle)
    assert raised.value.offset == 32
    assert "CRC32C" in raised.value.reason


def test_a_refused_open_leaves_even_temporary_files_and_an_accepted_one_removes_them(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = open_log()
    _fill_segments(log, 30)
    log.close()
    directory = tmp_path / "wal"
    leftover = directory / "00000000000000000099.wal.prepared.tmp"
    leftover.write_bytes(b"a segment made ready before a crash")
    middle = segment_files(directory)[1]
    raw = bytearray(middle.read_bytes())
    raw[32 + 44 + 10] ^= 0xFF
    middle.write_bytes(raw)
    with pytest.raises(CorruptSegment):
        open_log()
    assert leftover.exists(), "a refused open changed the directory"
    open_log(accept_data_loss=True)
    assert not leftover.exists()


def test_a_missing_segment_between_two_others_raises(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    _fill_segments(log, 30)
    log.close()
    files = segment_files(tmp_path / "wal")
    files[2].unlink()
    with pytest.raises(CorruptSegment, match="missing"):
        open_log()


def test_a_damaged_segment_header_raises(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    _fill_segments(log, 30)
    log.close()
    first = segment_files(tmp_path / "wal")[0]
    raw = bytearray(first.read_bytes())
    raw[3] ^= 0x01
    first.write_bytes(raw)
    with pytest.raises(CorruptSegment, match="header"):
        open_log()


def test_a_torn_tail_is_cut_and_reported(open_log: OpenLog, tmp_path: Path) -> None:
    log = open_log()
    log.append(b"kept")
    torn = log.append(b"torn" * 50)
    crashed = crash_image(tmp_path / "wal", tmp_path / "crashed")  # as a kill -9 leaves it
    tail = segment_files(crashed)[-1]
    raw = bytearray(tail.read_bytes())
    raw[torn.offset + 60] ^= 0xFF  # the last write, never proven synced: a torn write
    tail.write_bytes(raw)
    with WriteAheadLog(crashed, segment_bytes=SMALL_SEGMENT) as reopened:
        assert payloads(reopened) == [b"kept"]
        assert reopened.recovery.torn
        assert reopened.recovery.tail_path == str(tail)
        assert "CRC32C" in reopened.recovery.tail_reason
        assert reopened.recovery.truncated_bytes > 0


def test_a_segment_without_room_names_its_path_and_space_and_fails_the_log(
    open_log: OpenLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up between two segments: the roll's preallocation
    fails with ENOSPC (injected: a real disk cannot fill on cue here)."""
    monkeypatch.setattr(WriteAheadLog, "_make_spare", lambda self: None)  # no spare to roll into
    log = open_log(segment_bytes=65536)

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(NoRoomForSegment) as raised:
        for _ in range(100):
            log.append(b"x" * 1000)
    assert raised.value.path == str(tmp_path / "wal" / "00000000000000000002.wal")
    assert (raised.value.needed, raised.value.errno) == (65536, errno.ENOSPC)
    assert raised.value.free > 0 and "bytes are free" in str(raised.value)
    with pytest.raises(LogFailed):
        log.append(b"after")
    assert not list((tmp_path / "wal").glob("*.tmp"))
