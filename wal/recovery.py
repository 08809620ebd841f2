"""Recovery on open: tell a torn write from damage, cut the one, refuse the other.

The rule (docs/wal-format.md, "Recovery rule"): every segment but the last
was synced whole before the next one was created, so any bad byte in it is
damage. In the last segment a bad record is damage when a valid record
flagged FLAG_SYNCED lies beyond it (that record was written only after
everything before it was synced); otherwise it is the torn tail of a write
that was never acknowledged, and the file is cut there and sealed.

Damage raises CorruptSegment and changes nothing, unless the caller accepts
data loss: then every damaged segment is rewritten with its readable records
(salvage) and each dropped byte range is logged. Either way the log then
continues in a new segment, so no bytes of a torn write ever sit behind new
records.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from wal.errors import CorruptSegment
from wal.format import TYPE_SEAL, encode_segment_header, parse_segment_name, segment_name
from wal.segment import END_OF_FILE, UNWRITTEN, seal_record, sync_directory
from wal.survey import Span, Survey, survey_segment

log = logging.getLogger("tidelog.wal")

FREE_PREFIX = "free-"
"""Trimmed segment files kept for reuse are named free-<sequence>.wal."""
MISSING = "this segment is missing between two others"
BAD_HEADER = "the segment header is missing or damaged"


@dataclass(frozen=True)
class Damage:
    """Bytes of acknowledged data that no longer hold valid records."""

    path: str
    start: int
    end: int
    """The first byte of the next valid record, or the end of the written data."""
    reason: str
    records: int | None
    """Records the damaged bytes held, when that can be told; None otherwise."""
    bytes_beyond: int
    """Bytes of valid records in the same file after ``start``."""
    records_beyond: int
    """Valid records in the same file after ``start`` (seals not counted)."""

    def error(self, later_segments: int) -> CorruptSegment:
        return CorruptSegment(
            self.path,
            self.start,
            self.reason,
            bytes_beyond=self.bytes_beyond,
            records_beyond=self.records_beyond,
            later_segments=later_segments,
        )

    def describe(self) -> str:
        if self.records is None:
            held = "an unknown number of records"
        else:
            held = f"{self.records} record" + ("" if self.records == 1 else "s")
        return (
            f"{self.path} bytes {self.start}..{self.end} ({self.end - self.start} bytes, "
            f"{held}): {self.reason}"
        )


@dataclass(frozen=True)
class RecoveryReport:
    """What recovery found and what it dropped."""

    segments: int
    records: int
    truncated_bytes: int
    """Bytes cut from the tail of the last segment (torn write, or unwritten space)."""
    torn: bool
    """Whether the cut removed a torn write (a bad record, or valid fragments past
    the cut), not only unwritten space."""
    tail_reason: str
    """Why the last segment's records ended there ("" when it was sealed)."""
    tail_path: str | None
    torn_records: int = 0
    """Valid records past the torn point, cut with it: fragments of the torn write."""
    dropped: tuple[Damage, ...] = ()
    """Damage dropped by a salvage (only when data loss was accepted)."""


@dataclass
class SegmentVerdict:
    """One segment judged by the recovery rule."""

    sequence: int
    path: str
    survey: Survey | None
    """None when the file is missing."""
    keep: list[Span] = field(default_factory=list)
    """Valid records to keep (no seal)."""
    damage: list[Damage] = field(default_factory=list)
    cut: int | None = None
    """Where the torn tail of the last segment begins; None when sealed."""
    cut_reason: str = ""
    torn_records: int = 0


class UnusedMadeAhead(NamedTuple):
    """A last segment made ahead that holds no valid record."""

    path: str
    recyclable: bool
    """Whether the writer never wrote into it (the segment before it is not
    sealed), so every byte past its header is of an earlier life."""


@dataclass(frozen=True)
class Inspection:
    """Every segment judged; nothing changed yet."""

    directory: str
    verdicts: list[SegmentVerdict]
    free_files: list[str]
    unused_made_ahead: UnusedMadeAhead | None = None
    """The last segment when it was made ahead and holds no record
    (``unused_made_ahead``): not judged; recovery recycles or deletes it."""

    @property
    def damage(self) -> list[Damage]:
        return [damage for verdict in self.verdicts for damage in verdict.damage]

    def first_error(self) -> CorruptSegment | None:
        for index, verdict in enumerate(self.verdicts):
            if verdict.damage:
                return verdict.damage[0].error(len(self.verdicts) - index - 1)
        return None


@dataclass(frozen=True)
class Recovered:
    sequences: list[int]
    report: RecoveryReport
    free_files: list[str]


def list_segments(directory: str, *, remove_leftovers: bool) -> tuple[list[int], list[str]]:
    """Segment sequences in order, and recyclable free files."""
    sequences = []
    free_files = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".tmp"):
            if remove_leftovers:
                os.unlink(path)  # a create or recycle that did not finish
        elif name.startswith(FREE_PREFIX):
            free_files.append(path)
        elif (sequence := parse_segment_name(name)) is not None:
            sequences.append(sequence)
    return sorted(sequences), sorted(free_files)


def inspect(directory: str, *, remove_leftovers: bool = False) -> Inspection:
    """Judges every segment by the recovery rule; changes nothing but, when
    asked, removes the temporary files of an unfinished create."""
    sequences, free_files = list_segments(directory, remove_leftovers=remove_leftovers)
    surveys: dict[int, Survey] = {}
    unused = None
    if len(sequences) >= 2 and sequences[-2] == sequences[-1] - 1:
        for sequence in sequences[-2:]:
            path = os.path.join(directory, segment_name(sequence))
            surveys[sequence] = survey_segment(path, sequence)
        if unused_made_ahead(surveys[sequences[-1]]):
            recyclable = not surveys[sequences[-2]].sealed
            unused = UnusedMadeAhead(surveys.pop(sequences[-1]).path, recyclable)
            sequences = sequences[:-1]
    verdicts = []
    if sequences:
        last = sequences[-1]
        for sequence in range(sequences[0], last + 1):
            path = os.path.join(directory, segment_name(sequence))
            if sequence not in sequences:
                missing = Damage(path, 0, 0, MISSING, None, 0, 0)
                verdicts.append(SegmentVerdict(sequence, path, None, damage=[missing]))
            else:
                survey = surveys.get(sequence) or survey_segment(path, sequence)
                verdicts.append(judge(survey, last=sequence == last))
    return Inspection(directory, verdicts, free_files, unused)


def unused_made_ahead(last: Survey) -> bool:
    """Whether the last segment was made ahead and holds no valid record:
    then nothing in it was ever synced, and the sync that ends the roll
    into it (after the seal of the one before) may not have completed, so
    the one before is the log's true last segment, its tail judged as
    such. A segment made by a create (not flagged) is never named before
    its predecessor's seal is synced: there a missing seal stays damage."""
    return last.made_ahead and not last.spans


def judge(survey: Survey, *, last: bool) -> SegmentVerdict:
    """Which bad bytes of a segment are damage and which are a torn tail."""
    verdict = SegmentVerdict(survey.sequence, survey.path, survey)
    spans = survey.spans
    # In a segment that is not the last, everything was synced.
    proven = proven_synced(spans) if last else survey.file_size + 1
    if not survey.header_valid:
        verdict.damage.append(_damage(survey, 0, 0, BAD_HEADER, None))
    for gap in survey.gaps:
        if gap.start < proven:
            verdict.damage.append(_damage(survey, gap.start, gap.end, gap.reason, gap.records))
        elif verdict.cut is None:
            verdict.cut, verdict.cut_reason = gap.start, gap.reason
    if not survey.sealed:
        if not last:
            reason = f"the segment does not end with a seal: {survey.tail_reason}"
            verdict.damage.append(_damage(survey, survey.tail, survey.data_end, reason, None))
        elif verdict.cut is None:
            verdict.cut, verdict.cut_reason = survey.tail, survey.tail_reason
    end = survey.tail if verdict.cut is None else verdict.cut
    verdict.keep = [span for span in spans if span.offset < end and span.type != TYPE_SEAL]
    verdict.torn_records = sum(1 for span in spans if span.offset > end and span.type != TYPE_SEAL)
    return verdict


def proven_synced(spans: list[Span]) -> int:
    """The offset before which every byte of the last segment was synced, as
    its valid records prove it: a SYNCED record vouches for every byte before
    it; a PRIOR_SYNCED one for every byte before its previous group's first
    record, which lies at or after the last flagged record before it (flags
    mark group starts only)."""
    proven = 0
    last_group_start: int | None = None
    for span in spans:
        if span.synced_before:
            proven = max(proven, span.offset)
        elif span.synced_before_previous_group and last_group_start is not None:
            proven = max(proven, last_group_start)
        if span.group_start:
            last_group_start = span.offset
    return proven


def _damage(survey: Survey, start: int, end: int, reason: str, records: int | None) -> Damage:
    beyond = [span for span in survey.spans if span.offset >= end]
    bytes_beyond = beyond[-1].end - start if beyond else 0
    records_beyond = sum(1 for span in beyond if span.type != TYPE_SEAL)
    return Damage(survey.path, start, end, reason, records, bytes_beyond, records_beyond)


def recover(directory: str, *, accept_data_loss: bool = False) -> Recovered:
    """Applies the recovery rule; raises CorruptSegment on damage unless
    ``accept_data_loss``, in which case damaged segments are salvaged."""
    inspection = inspect(directory)
    error = inspection.first_error()
    if error is not None and not accept_data_loss:
        raise error  # before the leftovers go: a refused open changes nothing
    list_segments(directory, remove_leftovers=True)
    free_files = list(inspection.free_files)
    unused = inspection.unused_made_ahead
    if unused is not None and unused.recyclable:
        free_files.append(_recycle_unused(directory, unused.path))
    elif unused is not None:  # torn bytes of its own sequence may lie in it
        os.unlink(unused.path)
        sync_directory(directory)
    dropped = []
    for verdict in inspection.verdicts:
        if verdict.damage:
            for damage in verdict.damage:
                log.warning("write-ahead log damage dropped: %s", damage.describe())
            dropped.extend(verdict.damage)
            _rewrite(directory, verdict)
    verdicts = inspection.verdicts
    truncated = 0
    torn = False
    tail_reason = ""
    tail_path = None
    torn_records = 0
    if verdicts:
        last = verdicts[-1]
        if last.cut is not None and last.survey is not None:
            truncated = last.survey.file_size - last.cut
            tail_reason = last.cut_reason
            torn_records = last.torn_records
            # A lost sector of a torn write reads as zeros (UNWRITTEN); the
            # valid fragments past it still show the write was torn.
            torn = tail_reason not in (END_OF_FILE, UNWRITTEN) or torn_records > 0
            tail_path = last.path
            if not last.damage:  # a rewritten segment is already cut and sealed
                _truncate_and_seal(last.path, last.sequence, last.cut)
            if torn:
                log.log(
                    logging.WARNING if torn_records else logging.INFO,
                    "write-ahead log %s: a torn write was cut at byte %d (%d written bytes, "
                    "%d valid records past it, never acknowledged): %s",
                    last.path,
                    last.cut,
                    max(0, last.survey.data_end - last.cut),
                    torn_records,
                    tail_reason,
                )
    report = RecoveryReport(
        len(verdicts),
        sum(len(verdict.keep) for verdict in verdicts),
        truncated,
        torn,
        tail_reason,
        tail_path,
        torn_records,
        tuple(dropped),
    )
    kept = _drop_empty_tail(directory, verdicts)
    return Recovered([verdict.sequence for verdict in kept], report, free_files)


def _recycle_unused(directory: str, path: str) -> str:
    """Renames a made-ahead segment the writer never reached to a free file.

    Every byte past its header is from an earlier life under a lower
    sequence (the writer writes into it only after sealing the one before),
    so reusing it for the next segment, whatever sequence that takes,
    brings nothing back."""
    name = os.path.basename(path)
    free = os.path.join(directory, FREE_PREFIX + name)
    os.rename(path, free)
    sync_directory(directory)  # before the predecessor is cut and sealed as the last
    return free


def _drop_empty_tail(directory: str, verdicts: list[SegmentVerdict]) -> list[SegmentVerdict]:
    """Deletes the segments at the end that hold no record (the first stays).

    Every open continues in a new segment, so opens that append nothing (an
    engine whose object store refuses it, started again and again) would
    otherwise each leave a preallocated segment behind, until the disk is
    full. A deleted segment is never recycled: its seal, under the sequence
    the next segment takes again, would end that segment at its header.
    """
    kept = list(verdicts)
    while len(kept) > 1:
        verdict = kept[-1]
        if verdict.survey is None or verdict.keep or verdict.damage:
            break
        if not verdict.survey.header_valid:
            break
        os.unlink(verdict.path)
        sync_directory(directory)  # each gone before the one before it: never a gap
        kept.pop()
    return kept


def _rewrite(directory: str, verdict: SegmentVerdict) -> None:
    """Replaces a damaged segment by its readable records and a seal, atomically."""
    data = b""
    if verdict.survey is not None:
        with open(verdict.path, "rb") as file:
            data = file.read()
    temporary = verdict.path + ".tmp"
    # Record data: its owner's only, as every file the log creates.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        buffers = [encode_segment_header(verdict.sequence)]
        buffers += [bytes(view[span.offset : span.end]) for span in verdict.keep]
        buffers.append(seal_record(verdict.sequence))
        rewritten = memoryview(b"".join(buffers))
        while rewritten:  # a write may be short; the rename must never publish a cut file
            rewritten = rewritten[os.write(fd, rewritten) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, verdict.path)
    sync_directory(directory)


def _truncate_and_seal(path: str, sequence: int, cut: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, cut)
        os.fsync(fd)  # the seal says everything before it is synced
        os.pwrite(fd, seal_record(sequence), cut)
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_directory(os.path.dirname(path))
