"""Verifying a mirror: do the source and the target cluster hold the same
records, in the same order, where the offset syncs say?

Per partition of the matching topics, both sides are read committed and
streamed in step (never held): each record's key, value, headers and
timestamp, in order, feed a SHA-256 per side and are compared one pair at
a time. The first pair that differs is named by its source offset and its
target offset (translated through the syncs when the target has them, so
a record copied to the wrong offset is a difference too). Counts and
hashes cover the whole range, past a difference. Topics missing on the
target, or with another partition count, are reported as such.

``since`` and ``until`` vectors bound what is compared (a dual-run period):
the partitions they name, from ``since`` (inclusive) to ``until``
(exclusive) on the source, and the translated positions on the target.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from itertools import zip_longest
from typing import Protocol

from engine.memory.translate import NotTranslated, translate_offset, translate_position
from engine.memory.vector import OffsetVector, Position
from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetTranslation
from engine.mirror.reading import DEFAULT_TIMEOUT_S, Cluster, ClusterReader, Record
from engine.mirror.translation import load_translations
from engine.types import TopicPartition

CONTENT = "content"
"""The two records differ (key, value, headers or timestamp)."""
NOT_MIRRORED = "not-mirrored"
"""The offset syncs skip a record the source holds committed."""
OFFSET = "offset"
"""The same record, at another target offset than the syncs give."""
MISSING_ON_TARGET = "missing-on-target"
"""The target ends before the source."""
EXTRA_ON_TARGET = "extra-on-target"
"""The target holds records after the source's last."""
NO_SYNCS = "no-syncs"
"""A bounded range cannot be found on the target: no syncs for it."""

_LENGTH = struct.Struct(">i")
_TIMESTAMP = struct.Struct(">q")


def record_bytes(record: Record) -> bytes:
    """What the content hash covers of one record: key, value, headers and
    timestamp, each length-prefixed (-1: null), so no two records share
    a form."""
    parts = [_field(record.key), _field(record.value), _LENGTH.pack(len(record.headers))]
    for name, value in record.headers:
        parts += [_field(name.encode()), _field(value)]
    parts.append(_TIMESTAMP.pack(record.timestamp))
    return b"".join(parts)


def _field(data: bytes | None) -> bytes:
    return _LENGTH.pack(-1) if data is None else _LENGTH.pack(len(data)) + data


@dataclass(frozen=True, slots=True)
class Difference:
    """Where the two sides first diverge: the source offset (None: the
    source had ended) and the target offset (None: the target had ended)."""

    kind: str
    source_offset: int | None
    target_offset: int | None
    detail: str = ""

    def describe(self) -> str:
        s, t = self.source_offset, self.target_offset
        if self.kind == CONTENT:
            return f"source offset {s} and target offset {t} hold different records"
        if self.kind == NOT_MIRRORED:
            return (
                f"source offset {s} is not on the target: the offset syncs skip it "
                f"(the target's record at {t} is a later one)"
            )
        if self.kind == OFFSET:
            return f"source offset {s} is at target offset {t}, {self.detail}"
        if self.kind == MISSING_ON_TARGET:
            return f"source offset {s} and after are not on the target (it ends at {t})"
        if self.kind == EXTRA_ON_TARGET:
            return f"the target holds records from offset {t} on, after the source's last"
        return self.detail


@dataclass(frozen=True, slots=True)
class PartitionVerdict:
    topic: str
    partition: int
    source_records: int
    target_records: int
    source_sha256: str
    target_sha256: str
    difference: Difference | None
    offsets_checked: bool
    """Whether target offsets were checked against offset syncs."""

    @property
    def same(self) -> bool:
        return self.difference is None

    def to_json(self) -> dict[str, object]:
        found = self.difference
        return {
            "topic": self.topic,
            "partition": self.partition,
            "status": "same" if found is None else "different",
            "source_records": self.source_records,
            "target_records": self.target_records,
            "source_sha256": self.source_sha256,
            "target_sha256": self.target_sha256,
            "offsets_checked": self.offsets_checked,
            "difference": None if found is None else found.kind,
            "source_offset": None if found is None else found.source_offset,
            "target_offset": None if found is None else found.target_offset,
            "detail": None if found is None else found.describe(),
        }


@dataclass(frozen=True, slots=True)
class TopicMismatch:
    """A matching source topic the target lacks (``target_partitions``
    None) or holds with another partition count."""

    topic: str
    source_partitions: int
    target_partitions: int | None

    def describe(self) -> str:
        if self.target_partitions is None:
            return f"{self.topic}: missing on the target ({self.source_partitions} partitions)"
        text = (
            f"{self.topic}: {self.source_partitions} partitions on the source, "
            f"{self.target_partitions} on the target"
        )
        if self.target_partitions < self.source_partitions:
            missing = range(self.target_partitions, self.source_partitions)
            text += f"; missing on the target: {', '.join(map(str, missing))}"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "status": "missing" if self.target_partitions is None else "partition-count",
            "source_partitions": self.source_partitions,
            "target_partitions": self.target_partitions,
            "detail": self.describe(),
        }


@dataclass(frozen=True, slots=True)
class MirrorReport:
    topics: tuple[TopicMismatch, ...]
    partitions: tuple[PartitionVerdict, ...]
    masked: tuple[str, ...] = ()
    """Topics the source masks for the verifying principal: both sides were
    compared as masked values, which cannot show the data was copied."""
    masked_copies: bool = False
    """Whether masked copies are meant: masked topics then do not fail."""

    @property
    def same(self) -> bool:
        return (
            not self.topics
            and all(p.same for p in self.partitions)
            and (self.masked_copies or not self.masked)
        )

    def masked_lines(self) -> list[str]:
        """What a comparison of masked topics showed, one line a topic."""
        if self.masked_copies:
            return [
                f"{topic}: MASKED COPIES: the source masks it for this principal; the "
                "comparison is of masked values, as meant (--masked-copies)"
                for topic in self.masked
            ]
        return [
            f"{topic}: MASKED: the source masks it for this principal, so the comparison is "
            "of masked values and cannot show the data was copied; verify with a principal "
            "that may unmask it, or pass --masked-copies if masked copies are meant"
            for topic in self.masked
        ]


class Progress(Protocol):
    """Told how many source records a run plans to read, then each read."""

    def planned(self, records: int) -> None: ...

    def advance(self, records: int) -> None: ...


class _Side:
    """One side's running count and hash over the records it streams."""

    def __init__(self, records: Iterable[Record], progress: Progress | None = None) -> None:
        self.count = 0
        self.sha256 = hashlib.sha256()
        self._records = records
        self._progress = progress

    def __iter__(self) -> Iterator[tuple[Record, bytes]]:
        for record in self._records:
            form = record_bytes(record)
            self.sha256.update(form)
            self.count += 1
            if self._progress is not None:
                self._progress.advance(1)
            yield record, form


def compare_partition(
    tp: TopicPartition,
    source: Iterable[Record],
    target: Iterable[Record],
    translation: OffsetTranslation | None = None,
    *,
    target_end: int | None = None,
    progress: Progress | None = None,
) -> PartitionVerdict:
    """Streams both sides in step; the verdict names the first difference.
    With ``translation`` (the partition's syncs), each target record must
    also sit where the syncs put its source record."""
    translations = {tp: translation} if translation is not None and len(translation) else {}
    source_side, target_side = _Side(source, progress), _Side(target)
    difference: Difference | None = None
    for pair in zip_longest(source_side, target_side):
        if difference is not None:
            continue  # read on: counts and hashes cover the whole range
        difference = _differs(tp, pair[0], pair[1], translations, target_end)
    return PartitionVerdict(
        tp.topic,
        tp.partition,
        source_side.count,
        target_side.count,
        source_side.sha256.hexdigest(),
        target_side.sha256.hexdigest(),
        difference,
        bool(translations),
    )


def _differs(
    tp: TopicPartition,
    source: tuple[Record, bytes] | None,
    target: tuple[Record, bytes] | None,
    translations: Mapping[TopicPartition, OffsetTranslation],
    target_end: int | None,
) -> Difference | None:
    if source is None:
        assert target is not None
        return Difference(EXTRA_ON_TARGET, None, target[0].offset)
    offset = source[0].offset
    if target is None:
        return Difference(MISSING_ON_TARGET, offset, target_end)
    found = target[0].offset
    expected: int | None = found
    if translations:
        try:
            expected = translate_offset(tp, offset, translations)
        except NotTranslated:
            expected = None
    if source[1] != target[1]:
        if expected is None:
            return Difference(NOT_MIRRORED, offset, found)
        return Difference(CONTENT, offset, expected)
    if expected != found:
        said = "not mirrored" if expected is None else f"at {expected}"
        return Difference(OFFSET, offset, found, f"but the offset syncs say {said}")
    return None


def verify_mirror(
    source: Cluster,
    target: Cluster,
    *,
    topics: str | None = None,
    since: OffsetVector | None = None,
    until: OffsetVector | None = None,
    progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    masked_copies: bool = False,
) -> MirrorReport:
    """Compares every partition of the source topics whose whole name
    matches ``topics`` (all but internal ones when None) with the target.
    With ``since``/``until``, only the partitions they name, within them.
    Topics the source masks for the verifying principal are named in the
    report, and fail it unless ``masked_copies`` says they are meant."""
    with (
        ClusterReader(source, timeout=timeout) as source_reader,
        ClusterReader(target, timeout=timeout) as target_reader,
    ):
        counts = source_reader.topics(topics)
        counts.pop(OFFSET_SYNCS_TOPIC, None)
        bounded = {*(since or ()), *(until or ())}
        if bounded:
            counts = {t: n for t, n in counts.items() if any(tp.topic == t for tp in bounded)}
        mismatches: list[TopicMismatch] = []
        selected: list[TopicPartition] = []
        for topic, partitions in counts.items():
            on_target = target_reader.partition_count(topic)
            if on_target != partitions:
                mismatches.append(TopicMismatch(topic, partitions, on_target))
            for partition in range(min(partitions, on_target or 0)):
                tp = TopicPartition(topic, partition)
                if not bounded or tp in bounded:
                    selected.append(tp)
        translations = load_translations(target_reader, list(counts), timeout=timeout)
        plans = [_plan(tp, source_reader, since, until) for tp in selected]
        if progress is not None:
            progress.planned(sum(end - start for _, start, end in plans))
        verdicts = [
            _verify_partition(
                tp, (start, end), source_reader, target_reader, translations, since, until, progress
            )
            for tp, start, end in plans
        ]
        masked = source_reader.masked_topics(list(counts))
    return MirrorReport(tuple(mismatches), tuple(verdicts), tuple(masked), masked_copies)


def _plan(
    tp: TopicPartition,
    reader: ClusterReader,
    since: OffsetVector | None,
    until: OffsetVector | None,
) -> tuple[TopicPartition, int, int]:
    """The source range to read: [since or log start, until or end)."""
    log_start, end = reader.watermarks(tp.topic, tp.partition)
    start = since[tp].offset if since is not None and tp in since else log_start
    if until is not None and tp in until:
        end = until[tp].offset
    return tp, start, max(start, end)


def _verify_partition(
    tp: TopicPartition,
    source_range: tuple[int, int],
    source_reader: ClusterReader,
    target_reader: ClusterReader,
    translations: Mapping[TopicPartition, OffsetTranslation],
    since: OffsetVector | None,
    until: OffsetVector | None,
    progress: Progress | None,
) -> PartitionVerdict:
    start, end = source_range
    target_start, target_end = target_reader.watermarks(tp.topic, tp.partition)
    bounded_end: int | None = None
    try:
        if since is not None and tp in since:
            target_start = _target_position(tp, since[tp], translations, target_end)
        if until is not None and tp in until:
            bounded_end = _target_position(tp, until[tp], translations, target_end)
    except NotTranslated as error:
        empty = hashlib.sha256().hexdigest()
        found = Difference(NO_SYNCS, start, None, str(error))
        return PartitionVerdict(tp.topic, tp.partition, 0, 0, empty, empty, found, False)
    if (since is None or tp not in since) and tp in translations:
        # Retention or DeleteRecords on the source after the copy: compare
        # from where the source now starts, not from what the target kept.
        with suppress(NotTranslated):
            mirrored_start = _target_position(tp, Position(start), translations, target_end)
            target_start = max(target_start, mirrored_start)
    return compare_partition(
        tp,
        source_reader.records(tp.topic, tp.partition, start, end),
        target_reader.records(tp.topic, tp.partition, target_start, bounded_end),
        translations.get(tp),
        target_end=target_end if bounded_end is None else bounded_end,
        progress=progress,
    )


def _target_position(
    tp: TopicPartition,
    position: Position,
    translations: Mapping[TopicPartition, OffsetTranslation],
    target_end: int,
) -> int:
    return translate_position(tp, position, translations, target_end).offset
