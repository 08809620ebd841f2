"""The entries of a manifest state: a stream's metadata (StreamMeta), an
object's and the stream ranges it holds (ObjectMeta, RangeMeta), and a
stream's committed ranges in offset order (StreamRanges), with their wire
forms (docs/object-format.md).

Apart from the state (s3stream/manifest_state.py) so that its read-side
queries (s3stream/manifest_queries.py), its base, name them without
importing the state that derives from them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from operator import attrgetter, le
from typing import Any, NamedTuple

from native import untracked_record, untracked_tuple
from s3stream.chain import RangeLinks
from s3stream.enum_ids import known_id
from s3stream.objects import ObjectKind

_range_key = attrgetter("stream_id", "start_offset")
_KINDS = {int(kind): kind for kind in ObjectKind}


class UnknownObjectKind(ValueError):
    """An object names a kind this version does not know (a damaged
    manifest, or one a newer tidelog wrote)."""

    def __init__(self, found: object) -> None:
        known = ", ".join(f"{kind.value} = {kind.name}" for kind in ObjectKind)
        super().__init__(f"unknown object kind {found!r} (known: {known})")
        self.found = found


def object_kind_id(kind: object) -> int:
    """The id of an ``ObjectKind`` member or of an int naming one; anything
    else (an unknown id, a float, a bool) is UnknownObjectKind here, not a
    KeyError from ``ObjectMeta.kind`` when the object is first used."""
    return known_id(_KINDS, kind, UnknownObjectKind)


class _RangeFields(NamedTuple):
    stream_id: int
    start_offset: int
    end_offset: int
    size: int
    links: RangeLinks | None
    """The stream's hash chain at both ends of the range (s3stream/chain.py);
    None for ranges written before the chain existed."""


class RangeMeta(_RangeFields):
    """Offsets ``[start_offset, end_offset)`` of one stream, held in ``size`` bytes.

    The manifest keeps one a stream an object for as long as the range
    lives, the most numerous of its long-lived objects, so it is built
    untracked by the collector (``native.untracked_record``;
    docs/design/0158): four ints and None or an untracked ``RangeLinks``,
    nothing that can refer back to the range. Built with the pure twin,
    it is tracked: the same values, only the collector's cost differs."""

    __slots__ = ()

    def __new__(
        cls,
        stream_id: int,
        start_offset: int,
        end_offset: int,
        size: int,
        links: RangeLinks | None = None,
    ) -> RangeMeta:
        return untracked_record(RangeMeta, stream_id, start_offset, end_offset, size, links)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> RangeMeta:  # type: ignore[override]
        # NamedTuple's own makes the tuple without __new__, so _replace,
        # which calls this, would give a tracked range.
        return cls(*iterable)

    def to_wire(self) -> list[Any]:
        fields: list[Any] = [self.stream_id, self.start_offset, self.end_offset, self.size]
        if self.links is not None:
            fields.append(self.links.to_wire())
        return fields

    @classmethod
    def from_wire(cls, raw: list[Any]) -> RangeMeta:
        if len(raw) == 5:  # what every range since the chain is: no slice made
            stream_id, start, end, size, links = raw
            return untracked_record(
                RangeMeta, stream_id, start, end, size, RangeLinks.from_wire(links)
            )
        stream_id, start, end, size = raw[:4]
        return untracked_record(
            RangeMeta,
            stream_id,
            start,
            end,
            size,
            RangeLinks.from_wire(raw[4]) if len(raw) > 4 else None,
        )


class _ObjectFields(NamedTuple):
    object_id: int
    key: str
    kind_id: int
    size: int
    created_ms: int
    ranges: tuple[RangeMeta, ...]
    in_order: bool
    """Whether the ranges are in (stream, start) order, as every object
    this code writes has them: ``range_at`` then finds one by a binary search."""


class ObjectMeta(_ObjectFields):
    """An object in the manifest and the stream ranges it holds.

    Built untracked by the collector (``native.untracked_record``;
    docs/design/0158), as its ranges are: the kind is kept as its id and
    read as the ``ObjectKind`` member by ``kind`` (an enum member is always
    tracked), the key is a str, and the ranges an exact tuple of untracked
    ranges made untracked by ``native.untracked_tuple``, since CPython
    never untracks a tuple holding a tuple subclass. Nothing in it can
    refer back to it. Whether the ranges are in order is found when it is
    made, where it was found at the first look-up and kept in the object's
    ``__dict__`` (``_in_order``: one comparison a range)."""

    __slots__ = ()

    def __new__(
        cls,
        object_id: int,
        key: str,
        kind: ObjectKind,
        size: int,
        created_ms: int,
        ranges: tuple[RangeMeta, ...],
    ) -> ObjectMeta:
        return _object(object_id, key, object_kind_id(kind), size, created_ms, ranges)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> ObjectMeta:  # type: ignore[override]
        # NamedTuple's own makes the tuple as given, without __new__: an
        # object _replace gave other ranges would keep the old ``in_order``,
        # and range_at's binary search would miss ranges of an object whose
        # new ones are out of order. ``in_order`` is found again, whatever
        # was given for it.
        object_id, key, kind_id, size, created_ms, ranges, _ = iterable
        return _object(object_id, key, object_kind_id(kind_id), size, created_ms, ranges)

    def __getnewargs__(self) -> tuple[int, str, int, int, int, tuple[RangeMeta, ...]]:
        # What copy and pickle give __new__: its six arguments, where
        # NamedTuple's gives every field, ``in_order`` too, one too many.
        return self[:6]

    @property
    def kind(self) -> ObjectKind:
        return _KINDS[self.kind_id]

    def __repr__(self) -> str:
        # Named as before the id was kept (0158): logs and test failures print it.
        return (
            f"ObjectMeta(object_id={self.object_id!r}, key={self.key!r}, "
            f"kind={self.kind.name}, size={self.size!r}, created_ms={self.created_ms!r}, "
            f"ranges={self.ranges!r})"
        )

    def range_at(self, stream_id: int, start_offset: int) -> RangeMeta | None:
        """The object's range of ``stream_id`` starting at ``start_offset``
        (the first such, as a walk of ``ranges`` finds it), or None: an
        upload looks up the range at the head of each of a thousand streams'
        chains, most in one stream-set object of a thousand ranges, where a
        walk each was a million steps. Objects lay their ranges out in
        (stream, start) order, so a binary search finds it with nothing kept
        per range: a dict per object would cost some 84 bytes per range for
        as long as the object is in the manifest, a fifth more memory."""
        ranges = self.ranges
        if self.in_order:
            i = bisect.bisect_left(ranges, (stream_id, start_offset), key=_range_key)
            if i < len(ranges):
                found = ranges[i]
                if found.stream_id == stream_id and found.start_offset == start_offset:
                    return found
            return None
        for r in ranges:
            if r.stream_id == stream_id and r.start_offset == start_offset:
                return r
        return None

    def to_wire(self) -> list[Any]:
        return [
            self.object_id,
            self.key,
            self.kind_id,
            self.size,
            self.created_ms,
            [r.to_wire() for r in self.ranges],
        ]

    @staticmethod
    def wire_is_current(raw: list[Any]) -> bool:
        """Whether ``to_wire`` of the object read from ``raw`` gives ``raw``
        back, so its packed bytes are those the current code packs: not
        so for a range whose chain links were written without their
        algorithm (2 or 4 links, before ``ChainHash``), which reads as
        SHA-256 and is written with the algorithm's id. A look at each
        range's shape, not a ``to_wire``, which is what a checkpoint's
        packing spends its time on (docs/design/0145)."""
        if len(raw) != 6 or type(raw[2]) is not int:
            return False
        for r in raw[5]:
            if len(r) == 5:
                links = r[4]
                if len(links) not in (3, 5) or type(links[-1]) is not int:
                    return False
            elif len(r) != 4:
                return False
        return True

    @classmethod
    def from_wire(cls, raw: list[Any]) -> ObjectMeta:
        object_id, key, kind, size, created_ms, ranges = raw
        # A dict's look for an int, not the enum's call (a tenth of an
        # open's walk of 30,000 objects); anything else is refused here,
        # where the damaged manifest is read.
        known = kind if type(kind) is int and kind in _KINDS else object_kind_id(kind)
        return _object(
            object_id, key, known, size, created_ms, tuple(map(RangeMeta.from_wire, ranges))
        )


def _object(
    object_id: int,
    key: str,
    kind_id: int,
    size: int,
    created_ms: int,
    ranges: tuple[RangeMeta, ...],
) -> ObjectMeta:
    ranges = untracked_tuple(ranges)
    return untracked_record(
        ObjectMeta, object_id, key, kind_id, size, created_ms, ranges, _in_order(ranges)
    )


def _in_order(ranges: tuple[RangeMeta, ...]) -> bool:
    """Whether the ranges' (stream, start) keys never go down: a range is a
    tuple that starts with its key, so comparing the ranges whole compares
    their keys (no key tuple made: a third of the time of a walk that made
    them, some 3-5 % of reading a range from its wire form). Two ranges of
    one key are compared on, and may read as out of order (or, one with
    links and one without, fail to compare): ``range_at`` then walks the
    ranges, which finds the first of them as a walk always did."""
    if len(ranges) < 2:  # every stream object
        return True
    try:
        return all(map(le, ranges, islice(ranges, 1, None)))
    except TypeError:
        return False


@dataclass
class StreamMeta:
    stream_id: int
    epoch: int = 0
    start_offset: int = 0
    end_offset: int = 0
    """The end of the stream's data in committed objects: its remote watermark."""
    created_ms: int = 0

    def to_wire(self) -> list[int]:
        return [self.stream_id, self.epoch, self.start_offset, self.end_offset, self.created_ms]

    @classmethod
    def from_wire(cls, raw: list[Any]) -> StreamMeta:
        stream_id, epoch, start, end, created = raw
        return cls(stream_id, epoch, start, end, created)

    def copy(self) -> StreamMeta:
        """A copy to change (every field named: a commit copies each stream
        it touches, a thousand a block, where ``dataclasses.replace`` took
        three times as long)."""
        return StreamMeta(
            self.stream_id, self.epoch, self.start_offset, self.end_offset, self.created_ms
        )


@dataclass
class StreamRanges:
    """A stream's committed ranges in offset order: ``(start, end, object_id)``."""

    starts: list[int] = field(default_factory=list)
    entries: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, start: int, end: int, object_id: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.entries.insert(i, (start, end, object_id))

    def remove(self, start: int, object_id: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        while i < len(self.entries) and self.entries[i][0] == start:
            if self.entries[i][2] == object_id:
                del self.starts[i], self.entries[i]
                return
            i += 1

    def holds(self, start: int, object_id: int) -> bool:
        """Whether the object's range starting at ``start`` is one of these."""
        i = bisect.bisect_left(self.starts, start)
        while i < len(self.entries) and self.entries[i][0] == start:
            if self.entries[i][2] == object_id:
                return True
            i += 1
        return False

    def find(self, offset: int) -> tuple[int, int, int] | None:
        """The range holding ``offset``, or else the first range after it."""
        i = bisect.bisect_right(self.starts, offset) - 1
        if i >= 0 and self.entries[i][1] > offset:
            return self.entries[i]
        i += 1
        return self.entries[i] if i < len(self.entries) else None
