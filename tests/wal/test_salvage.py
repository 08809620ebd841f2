"""A salvage rewrites a damaged segment: the rewritten file holds record data,
so it is its owner's only (0600) like every file the log creates."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.wal.conftest import segment_files
from wal import CorruptSegment, WriteAheadLog
from wal.format import RECORD_HEADER_SIZE


def test_a_salvaged_segment_is_its_owners_only(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        positions = [log.append(bytes([i]) * 100) for i in range(3)]
    path = next(f for f in segment_files(directory) if f.name == f"{positions[0].segment:020d}.wal")
    raw = bytearray(path.read_bytes())
    raw[positions[0].offset + RECORD_HEADER_SIZE] ^= 0xFF  # synced: the close's seal follows
    path.write_bytes(raw)
    with pytest.raises(CorruptSegment):
        WriteAheadLog(directory, segment_bytes=4096).close()
    previous = os.umask(0)  # the most permissive: the mode must be set, not inherited
    try:
        with WriteAheadLog(directory, segment_bytes=4096, accept_data_loss=True) as log:
            kept = [bytes(entry.payload) for entry in log.replay()]
    finally:
        os.umask(previous)
    assert kept == [bytes([1]) * 100, bytes([2]) * 100]
    assert path.read_bytes() != raw, "the damaged segment was not rewritten"
    assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(0o600)


def test_opens_that_append_nothing_leave_no_segments_behind(tmp_path: Path) -> None:
    """Each open continues in a new segment; an engine refused by its object
    store and started again and again must not fill the disk with them."""
    directory = tmp_path / "wal"
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        log.append(b"acknowledged")
    for _ in range(5):
        with WriteAheadLog(directory, segment_bytes=4096):
            pass
    assert len(segment_files(directory)) == 2  # the one with the record, and the last opened
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(entry.payload) for entry in log.replay()] == [b"acknowledged"]
        log.append(b"after")
    with WriteAheadLog(directory, segment_bytes=4096) as log:
        assert [bytes(entry.payload) for entry in log.replay()] == [b"acknowledged", b"after"]
