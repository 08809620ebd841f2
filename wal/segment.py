"""One segment file: creating (or recycling) it, writing to it, and scanning it."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from native.buffers import BytesLike
from wal.errors import NoRoomForSegment
from wal.format import (
    FLAG_SYNCED,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MADE_AHEAD,
    TYPE_INVALID,
    TYPE_SEAL,
    RecordHeader,
    decode_record_header,
    decode_segment_header,
    encode_record_header,
    encode_segment_header,
    record_crc,
    segment_name,
)
from wal.write_spans import (
    FOLIO_BYTES,
    IOV_MAX,
    SPAN_BYTES,
    covers_a_whole_folio,
    write_spans,
)
from wal.writeback import write_back

END_OF_FILE = "end of file"
HEADER_CUT_SHORT = "a record header is cut short"
RUNS_PAST_END = "a record runs past the end of the file"
UNWRITTEN = "unwritten or stale bytes"
BAD_CRC = "a record's CRC32C does not match"
FIRST_READ_BYTES = 1024 * 1024
"""A scan reads this much of a segment first, and the rest only if its
records run on: the segment a log has just made, and often the last one
written, hold a few records before many megabytes of zeros."""
_ENDS_OF_A_READ = frozenset({END_OF_FILE, HEADER_CUT_SHORT, RUNS_PAST_END})
PAGE_BYTES = mmap.PAGESIZE
_ZERO_PAGE = memoryview(bytes(PAGE_BYTES))


class Position(NamedTuple):
    """Where a record starts: its segment's sequence and its byte offset in it."""

    segment: int
    offset: int


class Entry(NamedTuple):
    """One record read back from the log."""

    position: Position
    type: int
    stream_id: int
    start_offset: int
    end_offset: int
    payload: memoryview


@dataclass
class SegmentScan:
    """What a scan of one segment found."""

    sequence: int
    path: str
    file_size: int
    entries: list[Entry] = field(default_factory=list)
    valid_end: int = SEGMENT_HEADER_SIZE
    """Offset just past the last valid record (the seal included)."""
    sealed: bool = False
    stop_reason: str = ""
    """Why the scan stopped before a seal, if it did."""


def check_record(view: memoryview, pos: int, sequence: int) -> RecordHeader | str:
    """The header of the valid record at ``pos``, or why there is none."""
    if len(view) - pos < RECORD_HEADER_SIZE:
        return END_OF_FILE if pos == len(view) else HEADER_CUT_SHORT
    header = decode_record_header(view, pos)
    if header.segment != sequence or header.type == TYPE_INVALID:
        return UNWRITTEN
    if header.length > len(view) - pos - RECORD_HEADER_SIZE:
        return RUNS_PAST_END
    if record_crc(view, pos, header.length) != header.crc:
        return BAD_CRC
    return header


def scan_segment(path: str, sequence: int) -> SegmentScan | None:
    """Reads every valid record of a segment; None if its header is not valid."""
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        data = file.read(FIRST_READ_BYTES)
        scan = _scan(data, path, sequence, file_size)
        if scan is not None and len(data) < file_size and scan.stop_reason in _ENDS_OF_A_READ:
            file.seek(0)
            scan = _scan(file.read(), path, sequence, file_size)
    return scan


def _scan(data: bytes, path: str, sequence: int, file_size: int) -> SegmentScan | None:
    """The valid records at the start of ``data``, the segment's first bytes."""
    if decode_segment_header(data) != sequence:
        return None
    scan = SegmentScan(sequence=sequence, path=path, file_size=file_size)
    view = memoryview(data)
    pos = SEGMENT_HEADER_SIZE
    while True:
        header = check_record(view, pos, sequence)
        if isinstance(header, str):
            scan.stop_reason = header
            break
        next_pos = pos + RECORD_HEADER_SIZE + header.length
        if header.type == TYPE_SEAL:
            scan.sealed = True
            scan.valid_end = next_pos
            break
        payload = view[pos + RECORD_HEADER_SIZE : next_pos]
        scan.entries.append(
            Entry(
                Position(sequence, pos),
                header.type,
                header.stream_id,
                header.start_offset,
                header.end_offset,
                payload,
            )
        )
        pos = next_pos
    if not scan.sealed:
        scan.valid_end = pos
    return scan


def _pwrite_all(fd: int, data: BytesLike, offset: int) -> int:
    """Writes all of ``data`` at ``offset``, finishing a call the disk took
    short (it filled up mid-call) where it stopped; returns its length."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return done


def sync_directory(directory: str) -> None:
    """Makes a create, rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ZERO_FILL_CHUNK = 1 << 19
"""Bytes of zeros written, then flushed, at a time when a spare is made.
Half a MiB: beside a fill the log's sync p99 was 0.05-0.87 times a 1 MiB
step's, and a flat-out fill's rolls found no fewer spares; a quarter MiB
shortened it again but kept only 0.37-0.91 of the fill's rate (0129)."""


class FillStopped(Exception):
    """A zero fill stopped part way because its caller asked, its file deleted."""


def zero_filled_file(
    directory: str, size: int, name: str, stopped: Callable[[], bool] = lambda: False
) -> str:
    """A file of ``size`` written zeros, for a future segment.

    Written blocks, unlike fallocate'd ones, need no extent conversion when
    overwritten, so fdatasync then flushes data only: about three times
    faster per group commit on ext4. The file is complete under its final
    name or not there at all.

    Each chunk is written out before the next is written. Written whole
    and flushed once, tens of MiB of zeros would sit in the disk's queue
    ahead of the log's own fdatasync, which would then wait for all of
    them (a stall of tens of milliseconds on every acknowledgement at that
    moment); a chunk at a time, it waits for at most one chunk. Written
    out without a sync (writeback.py): the one fsync at the end makes the
    file durable, where a sync per chunk flushed the disk's cache once per
    chunk (128 times for a 64 MiB segment).

    ``stopped`` is asked before each chunk; once it says so the fill
    raises FillStopped: a closing log will never roll into this segment,
    and the rest of it (up to 64 MiB written and synced) was what its
    close waited for. The part written goes as on any error, since a file
    short of its size is no free file; a crash before that leaves a
    ``.tmp`` that the next open deletes.
    """
    final = os.path.join(directory, name)
    temporary = final + ".tmp"
    zeros = memoryview(bytes(min(size, ZERO_FILL_CHUNK)))
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for offset in range(0, size, len(zeros)):
            if stopped():
                raise FillStopped
            written = _pwrite_all(fd, zeros[: size - offset], offset)
            write_back(fd, offset, written)
        os.fsync(fd)
    except BaseException:
        # Its written part would hold space the next roll needs until the
        # next open deletes it.
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    os.close(fd)
    os.rename(temporary, final)
    sync_directory(directory)
    return final


def prepare_segment_file(directory: str, sequence: int, source: str) -> str:
    """Turns ``source`` (a free or spare file) into segment ``sequence`` under
    its temporary name: renamed, its header (flagged SEGMENT_MADE_AHEAD)
    written and synced. ``name_prepared_segment`` then gives it its final
    name, off the writer's path; an open deletes it if a crash comes first.
    Returns its path."""
    # Not the name a create uses: a roll may create the same sequence meanwhile.
    temporary = os.path.join(directory, segment_name(sequence)) + PREPARED_SUFFIX
    os.rename(source, temporary)
    fd = os.open(temporary, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.pwrite(fd, encode_segment_header(sequence, SEGMENT_MADE_AHEAD), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return temporary


PREPARED_SUFFIX = ".prepared.tmp"


def name_prepared_segment(temporary: str) -> str:
    """Gives a file ``prepare_segment_file`` made its final name (not yet
    durable: ``sync_directory`` makes it so). From then on recovery sees
    the segment; holding no record, it tells recovery that the writer may
    not have sealed the segment before it (docs/wal-format.md)."""
    final = temporary.removesuffix(PREPARED_SUFFIX)
    os.rename(temporary, final)
    return final


def _preallocate(fd: int, path: str, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise
        stats = os.statvfs(os.path.dirname(path) or ".")
        raise NoRoomForSegment(path, size, stats.f_bavail * stats.f_frsize, error) from error


def seal_record(sequence: int, flags: int = FLAG_SYNCED) -> bytes:
    """A seal; with FLAG_SYNCED (a close's), write it only after a sync of
    everything before it (it claims so)."""
    return encode_record_header(sequence, TYPE_SEAL, 0, 0, 0, 0, 0, flags)


class SegmentWriter:
    """The open segment that appends go to. Used by one thread at a time."""

    def __init__(
        self, path: str, sequence: int, fd: int, write_offset: int, padded_to: int = 0
    ) -> None:
        self.path = path
        self.sequence = sequence
        self.write_offset = write_offset
        self._fd = fd
        self._padded_to = padded_to
        """A write is followed by zeros to the end of its last page, never
        past this offset (the file's size when it was opened: padding never
        grows a file)."""

    @classmethod
    def create(
        cls,
        directory: str,
        sequence: int,
        size: int,
        preallocate: bool,
        reuse: str | None = None,
        prepared: str | None = None,
    ) -> SegmentWriter:
        """A new segment, from a recycled file if ``reuse`` names one, or the
        segment made ahead if ``prepared`` names it: a file under its final
        name, header and name durable (``prepare_segment_file``,
        ``name_prepared_segment``, ``sync_directory``), only opened here.

        The header is written and synced under a temporary name, then renamed:
        a segment file under its final name always has a valid header.
        """
        final = os.path.join(directory, segment_name(sequence))
        if prepared is not None:
            if prepared != final:
                raise ValueError(f"{prepared} is not segment {sequence}'s file")
            fd = os.open(final, os.O_RDWR | os.O_CLOEXEC)
            return cls(final, sequence, fd, SEGMENT_HEADER_SIZE, os.fstat(fd).st_size)
        temporary = final + ".tmp"
        if reuse is not None:
            os.rename(reuse, temporary)
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.pwrite(fd, encode_segment_header(sequence), 0)
            if preallocate and reuse is None:
                _preallocate(fd, final, size)
            os.fsync(fd)
            os.rename(temporary, final)
            sync_directory(directory)
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        return cls(final, sequence, fd, SEGMENT_HEADER_SIZE, size)

    def write(self, buffers: list[bytes | memoryview]) -> None:
        """Writes the buffers back to back at the write offset, then zeros to
        the end of the last page they touch (within the file's size); the
        write offset moves past the buffers only, so the next write begins
        on the zeros and covers them.

        A write that ends inside a page the kernel does not hold (a recycled
        segment after a restart, or once its pages were evicted) makes it
        read that page from the disk first, to keep the rest of it: one
        synchronous read on the path of every acknowledgement, a third of
        the write's time. Covering the page to its end leaves nothing to
        keep; the page the next write begins in is the one just written, so
        it is held. The zeros lie past the log's end, where recovery reads
        zeros as unwritten bytes (docs/wal-format.md)."""
        end = self.write_offset + sum(map(len, buffers))
        padding = min(-end % PAGE_BYTES, self._padded_to - end)
        if padding > 0:
            buffers = [*buffers, _ZERO_PAGE[:padding]]
        covered = end + max(padding, 0) - self.write_offset
        whole_folio = covers_a_whole_folio(self.write_offset, covered)
        if len(buffers) <= IOV_MAX and not whole_folio:
            # The usual group: one call, its bytes counted once.
            written = os.pwritev(self._fd, buffers, self.write_offset)
            if written != covered:
                # A short write only happens when the disk fills up mid-call.
                self._write_rest(buffers, written)
            self.write_offset = end
            return
        chunks: Iterable[Sequence[BytesLike]]
        if whole_folio:
            # One call would take a 2 MiB folio, several times the CPU
            # (write_spans.py): cut at odd MiB, as few calls as that allows,
            # since each gives the GIL up and takes it back.
            chunks = write_spans(buffers, self.write_offset, FOLIO_BYTES, cut_at=SPAN_BYTES)
        else:
            chunks = (buffers[at : at + IOV_MAX] for at in range(0, len(buffers), IOV_MAX))
        for chunk in chunks:
            expected = sum(map(len, chunk))
            written = os.pwritev(self._fd, chunk, self.write_offset)
            if written != expected:
                # A short write only happens when the disk fills up mid-call.
                written += self._write_rest(chunk, written)
            self.write_offset += written
        self.write_offset = end

    def _write_rest(self, chunk: Sequence[BytesLike], skip: int) -> int:
        rest = b"".join(bytes(buffer) for buffer in chunk)[skip:]
        return _pwrite_all(self._fd, rest, self.write_offset + skip)

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def seal(self) -> None:
        """Ends the segment: recovery requires a seal on every segment but the last.

        The seal carries FLAG_SYNCED, so everything before it is synced first:
        a seal found past a bad record then proves the bad record was synced.
        """
        self.sync()
        self.write([seal_record(self.sequence)])
        self.sync()

    def seal_full(self) -> None:
        """Ends a full segment at a roll with one sync: the seal follows the
        segment's last records unsynced, so it claims nothing about them,
        and the sync after it makes both durable before the writer writes
        a byte of the next segment (which is all recovery needs of every
        segment but the last)."""
        self.write([seal_record(self.sequence, flags=0)])
        self.sync()

    def close(self) -> None:
        """Closes the file; again is a no-op (a roll that failed to create the
        next segment has already closed this one)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
