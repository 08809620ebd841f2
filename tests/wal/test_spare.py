"""The spare segment a preallocating log keeps ready: none is made at open
(its zeros would be written and synced while the log's owner makes its own
first syncs), one is made at the first trim and taken by the next segment made."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal import WriteAheadLog
from wal import log as log_module
from wal import segment as segment_module
from wal.format import segment_name
from wal.recovery import FREE_PREFIX

OpenLog = Callable[..., WriteAheadLog]
SEGMENT = 256 * 1024
MiB = 1 << 20
TIMEOUT = 30


def _spares(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(FREE_PREFIX))


def _wait_for_spare(log: WriteAheadLog) -> None:
    assert log._spare_maker is not None
    log._spare_maker.join(timeout=TIMEOUT)
    assert not log._spare_maker.is_alive()


def test_opening_a_preallocating_log_makes_no_spare(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT, preallocate=True)
    log.append(b"record")
    log.close()  # waits for a spare being made, if one were
    assert _spares(tmp_path / "wal") == []


def test_the_first_trim_makes_a_spare_and_the_next_open_takes_it(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal", segment_bytes=SEGMENT, preallocate=True)
    try:
        log.trim(log.append(b"first"))
        _wait_for_spare(log)
        log.close()  # the finished spare is kept as a free file
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


def _leftovers(directory: Path) -> list[str]:
    """Free, prepared and temporary files: whatever a spare may leave."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.startswith(FREE_PREFIX) or p.name.endswith((".tmp", ".prepared"))
    )


def _close_telling(
    log: WriteAheadLog, close_begun: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closes ``log``, setting ``close_begun`` as the close reaches its
    join of the spare maker: the close has begun (the log is closed to new
    spares) and the spare maker held by the test may go on."""
    joining = log._join_spare_maker

    def join_once_closing() -> None:
        close_begun.set()
        joining()

    monkeypatch.setattr(log, "_join_spare_maker", join_once_closing)
    log.close()
    monkeypatch.undo()


def test_a_close_during_a_spares_fill_stops_it_and_leaves_no_part_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fill is held at its second chunk until the close has begun: the
    close then ends it there, where it used to wait for every chunk of a
    segment the closed log would never roll into. The part written is
    deleted (a free file must be whole), and the next open makes its own."""
    directory = tmp_path / "wal"
    size = 8 * segment_module.ZERO_FILL_CHUNK
    written = [0]
    at_second_chunk = threading.Event()
    close_begun = threading.Event()
    real = os.pwrite

    def counted(fd: int, data: bytes, offset: int) -> int:
        if threading.current_thread().name.startswith("wal-spare"):
            if offset == segment_module.ZERO_FILL_CHUNK:
                at_second_chunk.set()
                assert close_begun.wait(TIMEOUT)
            written[0] += len(data)
        return real(fd, data, offset)

    monkeypatch.setattr(segment_module.os, "pwrite", _pwrite_that(counted))
    log = WriteAheadLog(directory, segment_bytes=size, preallocate=True)
    log.trim(log.append(b"first"))
    assert at_second_chunk.wait(TIMEOUT)
    _close_telling(log, close_begun, monkeypatch)
    assert written[0] == 2 * segment_module.ZERO_FILL_CHUNK < size
    assert _leftovers(directory) == []
    assert sorted(p.name for p in directory.iterdir()) == sorted(["LOCK", segment_name(1)])

    with WriteAheadLog(directory, segment_bytes=size, preallocate=True) as log:
        assert [bytes(e.payload) for e in log.replay()] == [b"first"]
        log.trim(log.append(b"second"))
        _wait_for_spare(log)
        assert log._prepared is not None  # made whole, as before
    assert len(_spares(directory)) == 1  # kept for the open after


_HELD_FILL = """
import os, sys, threading
from wal import WriteAheadLog
from wal import segment
real = os.pwrite
def held(fd, data, offset):
    spare = threading.current_thread().name.startswith("wal-spare")
    if spare and offset == 2 * segment.ZERO_FILL_CHUNK:
        print("filling", flush=True)
        threading.Event().wait()
    return real(fd, data, offset)
segment.os.pwrite = held
log = WriteAheadLog(sys.argv[1], segment_bytes=int(sys.argv[2]), preallocate=True)
log.trim(log.append(b"acknowledged"))
threading.Event().wait()
"""


def test_a_kill_during_a_spares_fill_leaves_a_temporary_the_next_open_deletes(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "wal"
    size = 8 * segment_module.ZERO_FILL_CHUNK
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen(
        [sys.executable, "-c", _HELD_FILL, str(directory), str(size)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"filling\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(TIMEOUT)
    partial = [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert len(partial) == 1 and partial[0].stat().st_size == 2 * segment_module.ZERO_FILL_CHUNK
    with WriteAheadLog(directory, segment_bytes=size, preallocate=True) as log:
        assert _leftovers(directory) == []
        assert [bytes(e.payload) for e in log.replay()] == [b"acknowledged"]
        log.trim(log.append(b"after"))
        _wait_for_spare(log)
        assert log._prepared is not None


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(1, 5 * segment_module.ZERO_FILL_CHUNK),
    stop_before=st.integers(0, 6),
)
def test_a_fill_is_whole_under_its_name_or_stopped_with_no_file_left(
    size: int, stop_before: int
) -> None:
    """Asked before each chunk, the stop leaves either the whole file or
    nothing: never a short file a roll would take as a free one."""
    asked = [0]

    def stopped() -> bool:
        asked[0] += 1
        return asked[0] > stop_before

    chunks = -(-size // segment_module.ZERO_FILL_CHUNK)
    with tempfile.TemporaryDirectory() as directory:
        if stop_before < chunks:
            with pytest.raises(segment_module.FillStopped):
                segment_module.zero_filled_file(directory, size, "spare.wal", stopped)
            assert os.listdir(directory) == []
        else:
            path = segment_module.zero_filled_file(directory, size, "spare.wal", stopped)
            assert os.listdir(directory) == ["spare.wal"]
            assert os.path.getsize(path) == size
        assert asked[0] == min(stop_before + 1, chunks)


def test_a_spare_taken_from_a_free_file_is_made_whole_by_a_close_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close stops only a fill: a free file the spare maker took is held
    mid-preparation until the close has begun, and is then given back as a
    free file, whole, with nothing zero-filled."""
    directory = tmp_path / "wal"
    log = WriteAheadLog(directory, segment_bytes=SEGMENT, preallocate=True)
    log.trim(log.append(b"first"))
    _wait_for_spare(log)
    log.close()
    log = WriteAheadLog(directory, segment_bytes=SEGMENT, preallocate=True)
    log.trim(log.append(b"second"))  # the open took the spare: this makes one again
    _wait_for_spare(log)
    log.close()
    log = WriteAheadLog(directory, segment_bytes=SEGMENT, preallocate=True)
    assert _spares(directory) == []  # the open took the spare again

    in_preparation = threading.Event()
    close_begun = threading.Event()
    preparing = log_module.prepare_segment_file

    def held(directory_: str, sequence: int, source: str) -> str:
        in_preparation.set()
        assert close_begun.wait(TIMEOUT)
        return preparing(directory_, sequence, source)

    def no_fill(*args: object, **kwargs: object) -> str:
        raise AssertionError("a free file was there to take")

    monkeypatch.setattr(log_module, "prepare_segment_file", held)
    monkeypatch.setattr(log_module, "zero_filled_file", no_fill)
    # The trim frees the last open's whole segment and the spare maker takes it.
    log.trim(log.append(b"third"))
    assert in_preparation.wait(TIMEOUT)
    _close_telling(log, close_begun, monkeypatch)
    kept = [directory / name for name in _spares(directory)]
    assert len(kept) == 1 and kept[0].stat().st_size == SEGMENT
    assert [p.name for p in directory.iterdir() if p.name.endswith(".tmp")] == []
