"""Recovery on open: verify every segment, cut the torn tail, seal it.

The rule (docs/wal-format.md): every segment but the last must end with a
valid seal, so any bad record before it is damage to acknowledged data and
raises CorruptSegment. In the last segment the first bad record is the torn
tail of a write that was never acknowledged: the file is truncated there and
sealed, and the log continues in a new segment, so no bytes of the torn write
can ever sit behind new records.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

from wal.errors import CorruptSegment
from wal.format import parse_segment_name
from wal.segment import (
    END_OF_FILE,
    UNWRITTEN,
    SegmentScan,
    scan_segment,
    seal_record,
    sync_directory,
)

FREE_PREFIX = "free-"
"""Trimmed segment files kept for reuse are named free-<sequence>.wal."""


@dataclass(frozen=True)
class RecoveryReport:
    """What recovery found and what it dropped."""

    segments: int
    records: int
    truncated_bytes: int
    """Bytes cut from the tail of the last segment (torn write, or unwritten space)."""
    torn: bool
    """Whether the cut began at a damaged record (a torn write), not at unwritten space."""
    tail_reason: str
    """Why the last segment's records ended there ("" when it was sealed)."""
    tail_path: str | None


@dataclass(frozen=True)
class Recovered:
    sequences: list[int]
    report: RecoveryReport
    free_files: list[str]


def list_segments(directory: str) -> tuple[list[int], list[str]]:
    """Segment sequences in order, and recyclable free files; removes leftovers."""
    sequences = []
    free_files = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".tmp"):
            os.unlink(path)  # a create or recycle that did not finish
        elif name.startswith(FREE_PREFIX):
            free_files.append(path)
        elif (sequence := parse_segment_name(name)) is not None:
            sequences.append(sequence)
    return sorted(sequences), sorted(free_files)


def _scan(directory: str, sequence: int) -> SegmentScan:
    path = os.path.join(directory, f"{sequence:020d}.wal")
    scan = scan_segment(path, sequence)
    if scan is None:
        raise CorruptSegment(path, 0, "the segment header is missing or damaged")
    return scan


def recover(directory: str) -> Recovered:
    sequences, free_files = list_segments(directory)
    for previous, current in itertools.pairwise(sequences):
        if current != previous + 1:
            path = os.path.join(directory, f"{previous + 1:020d}.wal")
            raise CorruptSegment(path, 0, "this segment is missing between two others")
    records = 0
    for sequence in sequences[:-1]:
        scan = _scan(directory, sequence)
        if not scan.sealed:
            raise CorruptSegment(scan.path, scan.valid_end, f"unsealed: {scan.stop_reason}")
        records += len(scan.entries)
    truncated = 0
    torn = False
    tail_reason = ""
    tail_path = None
    if sequences:
        scan = _scan(directory, sequences[-1])
        records += len(scan.entries)
        if not scan.sealed:
            truncated = scan.file_size - scan.valid_end
            tail_reason = scan.stop_reason
            torn = tail_reason not in (END_OF_FILE, UNWRITTEN)
            tail_path = scan.path
            _truncate_and_seal(scan)
    report = RecoveryReport(len(sequences), records, truncated, torn, tail_reason, tail_path)
    return Recovered(sequences, report, free_files)


def _truncate_and_seal(scan: SegmentScan) -> None:
    fd = os.open(scan.path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, scan.valid_end)
        os.pwrite(fd, seal_record(scan.sequence), scan.valid_end)
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_directory(os.path.dirname(scan.path))
