"""The spare segment a preallocating log keeps ready: none is made at open
(its zeros would be written and synced while the log's owner makes its own
first syncs), one is made at the first trim and taken by the next segment made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wal import WriteAheadLog
from wal.recovery import FREE_PREFIX

OpenLog = Callable[..., WriteAheadLog]
SEGMENT = 256 * 1024


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
