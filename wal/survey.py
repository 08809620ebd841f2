"""A survey of one segment file: every readable record, and the bad bytes between.

A plain scan (``segment.scan_segment``) stops at the first bad record. A
survey goes on: it looks for the next valid record past the bad bytes
(resynchronising on the segment's sequence, which every record header carries
at a fixed place) and walks on from there, so recovery can tell what lies
beyond a bad record and salvage can keep it. Nothing here changes a file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from wal.format import (
    FLAG_PRIOR_SYNCED,
    FLAG_SYNCED,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MADE_AHEAD,
    TYPE_SEAL,
    decode_segment_flags,
    decode_segment_header,
)
from wal.segment import check_record

_SEQUENCE_AT = 8
"""Where a record header holds its segment's sequence."""
_SEQUENCE = struct.Struct("<Q")


class Span(NamedTuple):
    """One valid record: where it starts, its size (header and payload)."""

    offset: int
    size: int
    type: int
    flags: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def synced_before(self) -> bool:
        return bool(self.flags & FLAG_SYNCED)

    @property
    def synced_before_previous_group(self) -> bool:
        return bool(self.flags & FLAG_PRIOR_SYNCED)

    @property
    def group_start(self) -> bool:
        """Only a group's first record (or a seal) carries a flag."""
        return bool(self.flags & (FLAG_SYNCED | FLAG_PRIOR_SYNCED))


class Gap(NamedTuple):
    """Bytes between two valid records that hold no valid record."""

    start: int
    end: int
    reason: str
    """Why the record at ``start`` is not valid."""
    records: int | None
    """How many records the bytes held, when the first one's header says so
    (its length ends exactly at ``end``); None when that cannot be told."""


@dataclass
class Survey:
    """What one segment file holds, record by record."""

    sequence: int
    path: str
    file_size: int
    header_valid: bool
    spans: list[Span] = field(default_factory=list)
    """Every valid record, the seal included, in file order."""
    gaps: list[Gap] = field(default_factory=list)
    """Bad bytes followed by a valid record."""
    tail: int = SEGMENT_HEADER_SIZE
    """Where the data ends: just past the seal, or at the first byte of the
    last run of bytes that holds no valid record."""
    tail_reason: str = ""
    """Why nothing valid follows ``tail`` ("" when sealed)."""
    data_end: int = SEGMENT_HEADER_SIZE
    """Just past the last byte that is not zero: how far bytes were ever written."""
    made_ahead: bool = False
    """The header carries SEGMENT_MADE_AHEAD: named before its predecessor was sealed."""

    @property
    def sealed(self) -> bool:
        return bool(self.spans) and self.spans[-1].type == TYPE_SEAL


def survey_segment(path: str, sequence: int) -> Survey:
    with open(path, "rb") as file:
        data = file.read()
    return survey_bytes(data, path, sequence)


def survey_bytes(data: bytes, path: str, sequence: int) -> Survey:
    view = memoryview(data)
    end = written_end(data)
    header_valid = decode_segment_header(data) == sequence
    survey = Survey(
        sequence,
        path,
        len(data),
        header_valid,
        data_end=max(SEGMENT_HEADER_SIZE, end),
        made_ahead=header_valid and bool(decode_segment_flags(data) & SEGMENT_MADE_AHEAD),
    )
    pos = SEGMENT_HEADER_SIZE
    while True:
        header = check_record(view, pos, sequence)
        if isinstance(header, str):
            following = next_valid_record(data, pos + 1, sequence, end)
            if following is None:
                survey.tail, survey.tail_reason = pos, header
                return survey
            survey.gaps.append(Gap(pos, following, header, _records_in_gap(view, pos, following)))
            pos = following
            continue
        span = Span(pos, RECORD_HEADER_SIZE + header.length, header.type, header.flags)
        survey.spans.append(span)
        pos = span.end
        if header.type == TYPE_SEAL:
            survey.tail = pos
            return survey


def next_valid_record(data: bytes, start: int, sequence: int, end: int | None = None) -> int | None:
    """The offset of the first valid record at or after ``start``, if any.

    Candidates are the places where the segment's sequence appears where a
    header would hold it; each is then checked in full (the CRC included).
    ``end`` (the ``written_end``) bounds the search: a header holds a
    sequence, which is not zero, so none lies in the zeros past it.
    """
    pattern = _SEQUENCE.pack(sequence)
    view = memoryview(data)
    search = max(start, SEGMENT_HEADER_SIZE) + _SEQUENCE_AT
    limit = len(data) if end is None else min(len(data), end + len(pattern))
    while (found := data.find(pattern, search, limit)) != -1:
        candidate = found - _SEQUENCE_AT
        if not isinstance(check_record(view, candidate, sequence), str):
            return candidate
        search = found + 1
    return None


_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)


def written_end(data: bytes) -> int:
    """Just past the last byte that is not zero (0 if every byte is)."""
    end = len(data)
    while end > 0:  # whole zero chunks first: a compare is far cheaper than rstrip
        start = max(0, end - _CHUNK)
        chunk = data[start:end]
        if chunk != _ZEROS[: end - start]:
            return start + len(chunk.rstrip(b"\0"))
        end = start
    return 0


def _records_in_gap(view: memoryview, start: int, end: int) -> int | None:
    """1 if the bad record's own length spans the gap exactly (only its bytes
    are damaged, its header's length still true), else unknown."""
    if end - start < RECORD_HEADER_SIZE:
        return None
    (length,) = struct.unpack_from("<I", view, start + 4)
    return 1 if start + RECORD_HEADER_SIZE + length == end else None
