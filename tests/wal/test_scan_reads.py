"""A segment scan reads what its records need: the segment a log has just
made (megabytes of preallocated zeros after its header) costs one small
read, and records past that first read, or cut by it, are all found."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wal import WriteAheadLog
from wal.format import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE
from wal.segment import FIRST_READ_BYTES

OpenLog = Callable[..., WriteAheadLog]
MiB = 1024 * 1024


def _bytes_read() -> int:
    """Bytes this process has read through read(2) and its kin so far."""
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def test_replaying_a_new_preallocated_segment_reads_its_records_not_the_segment(
    open_log: OpenLog,
) -> None:
    log = open_log(segment_bytes=16 * MiB, preallocate=True)
    log.append(b"one")
    log.append(b"two")
    before = _bytes_read()
    assert [bytes(e.payload) for e in log.replay()] == [b"one", b"two"]
    assert _bytes_read() - before < 2 * FIRST_READ_BYTES


def test_records_beyond_the_first_read_are_all_replayed(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=8 * MiB, preallocate=True)
    written = [bytes([i]) * (100 * 1024) for i in range(30)]  # about 3 MiB
    for payload in written:
        log.append(payload)
    assert [bytes(e.payload) for e in log.replay()] == written
    log.close()
    assert [bytes(e.payload) for e in open_log(segment_bytes=8 * MiB).replay()] == written


@pytest.mark.parametrize(
    "short_of_the_first_read",
    [0, RECORD_HEADER_SIZE // 2, RECORD_HEADER_SIZE + 5],
    ids=["a record ends at it", "a header crosses it", "a payload crosses it"],
)
def test_a_record_at_the_end_of_the_first_read_is_found(
    open_log: OpenLog, short_of_the_first_read: int
) -> None:
    first = bytes(FIRST_READ_BYTES - SEGMENT_HEADER_SIZE - RECORD_HEADER_SIZE)
    first = first[: len(first) - short_of_the_first_read]
    log = open_log(segment_bytes=4 * MiB, preallocate=True)
    log.append(first)
    log.append(b"after")
    log.append(b"and after")
    assert [len(e.payload) for e in log.replay()] == [len(first), 5, 9]
