"""Proving a stream's hash chain from the object store (docs/tamper-evidence.md).

``verify_stream`` re-reads every live range of a stream from the objects the
manifest names (never a cache or the WAL), recomputes the chain over the
stored batches and checks it against the links the manifest keeps for each
range, and that each range's chain goes on from the one before. It writes
nothing and takes no epoch, so it runs beside a serving writer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from native.buffers import BytesLike
from s3stream import chain
from s3stream.chain_hash import ChainHash
from s3stream.errors import MISSING, CorruptObject, StreamNotFound
from s3stream.manifest_state import ManifestState
from s3stream.objects import ChainLinks, StoredBatch, parse_object, read_chain
from s3stream.store import ObjectNotFound, ObjectStore

_OBJECTS_KEPT = 4
"""Objects kept parsed while verifying: a stream's ranges in a stream-set
object come one after another, so a few spare re-reading it per range."""


class ChainBreak(NamedTuple):
    """Where the stored data no longer matches its chain: ``offset`` is the
    first offset the verifier could not prove, ``end_offset`` the end of the
    range it lies in."""

    stream_id: int
    offset: int
    end_offset: int
    key: str
    reason: str


class RewriteSeen(NamedTuple):
    """A range the log cleaner rewrote, and the links of the chain it replaced."""

    start_offset: int
    end_offset: int
    old_before: bytes
    old_after: bytes


@dataclass
class StreamVerdict:
    """What verifying one stream proved."""

    stream_id: int
    start_offset: int = 0
    """The first offset the chain was proven from (a range boundary)."""
    end_offset: int = 0
    """The offset after the last batch proven (the stream's remote watermark)."""
    head: bytes | None = None
    """The chain's link at ``end_offset``: record it elsewhere to anchor the chain."""
    from_genesis: bool = False
    """Whether the proven chain starts at the stream's genesis link, rather
    than at a link kept where retention truncated the stream."""
    unlinked_end: int | None = None
    """The end of the ranges written before the chain existed (not proven)."""
    ranges_without_object_links: int = 0
    """Ranges proven from the manifest's links alone: their objects (format
    version 1) keep no copy of them."""
    batches: int = 0
    bytes: int = 0
    algorithms: dict[ChainHash, int] = field(default_factory=dict)
    """How many ranges were proven with each hash algorithm (an auditor's
    verifier needs each: docs/tamper-evidence.md, "Hash algorithms")."""
    rewrites: list[RewriteSeen] = field(default_factory=list)
    breaks: list[ChainBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


class _Parsed(NamedTuple):
    batches: dict[int, list[StoredBatch]]
    chain: dict[tuple[int, int], ChainLinks] | None
    """The object's own copy of its ranges' links; None in a version 1 object."""


class ParsedObjects:
    """Parsed objects, a few at a time: per key, each stream's batches."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._parsed: OrderedDict[str, _Parsed] = OrderedDict()

    def _get(self, key: str) -> _Parsed:
        parsed = self._parsed.get(key)
        if parsed is None:
            data = self._store.get(key)
            index, blocks = parse_object(key, data)
            held: dict[int, list[StoredBatch]] = {}
            for info, batches in zip(index.blocks, blocks, strict=True):
                held.setdefault(info.stream_id, []).extend(batches)
            chain_region = read_chain(key, data)
            kept = None
            if chain_region is not None:
                kept = {(c.stream_id, c.start_offset): c for c in chain_region}
            parsed = self._parsed[key] = _Parsed(held, kept)
            while len(self._parsed) > _OBJECTS_KEPT:
                self._parsed.popitem(last=False)
        self._parsed.move_to_end(key)
        return parsed

    def batches(self, key: str, stream_id: int) -> list[StoredBatch]:
        return self._get(key).batches.get(stream_id, [])

    def chain(self, key: str) -> dict[tuple[int, int], ChainLinks] | None:
        return self._get(key).chain


def verify_stream(
    store: ObjectStore,
    state: ManifestState,
    stream_id: int,
    *,
    from_offset: int = 0,
    on_progress: Callable[[int], None] | None = None,
    current: Callable[[], ManifestState] | None = None,
) -> StreamVerdict:
    """Proves the stream's chain over its committed ranges from the range
    holding ``from_offset`` (or the stream's start) on. ``on_progress`` is
    called with the bytes of each batch hashed.

    ``current`` loads the manifest as it is now, asked when an object is
    not in the store: if it still names the object, that is a break (the
    object was removed from under the manifest); if not, a writer merged
    it away after ``state`` was loaded, and the range's batches are read
    from where that manifest places them (``_moved``), still proven
    against ``state``'s links, so that a proof longer than the garbage
    grace beside a busy writer still ends. A moved range that cannot be
    read or proven so (merged again, trimmed, rewritten by a cleaner
    meanwhile) is no break: ObjectNotFound is raised for the caller to
    start again from a newer manifest (as it is when ``current`` is
    None)."""
    meta = state.streams.get(stream_id)
    ranges = state.ranges.get(stream_id)
    if meta is None or ranges is None:
        raise StreamNotFound(stream_id)
    first = max(meta.start_offset, from_offset)
    verdict = StreamVerdict(stream_id, start_offset=first, end_offset=first)
    objects = ParsedObjects(store)
    expected: set[bytes] | None = None  # None: no linked range seen yet
    started = False
    for start, end, object_id in ranges.entries:
        if end <= first:
            continue
        key = state.objects[object_id].key
        links = _links(state, stream_id, start, object_id)
        # A fork's shared range is its source's bytes and chain: the fork's
        # chain goes on from the source's link at the fork point.
        writer = state.source_of(stream_id, start, object_id)
        if not started:
            verdict.start_offset = start
            started = True
        verdict.end_offset = end
        if links is None:
            if expected is not None:
                _broke(verdict, start, end, key, "a range without links follows linked ones")
                return verdict
            verdict.unlinked_end = end
            continue
        rewrite = links.rewrite
        if rewrite is not None:
            verdict.rewrites.append(RewriteSeen(start, end, *rewrite))
        if expected is None:
            verdict.start_offset = start
            origin = chain.genesis(writer, start)
            verdict.from_genesis = links.before == origin or (
                rewrite is not None and rewrite.old_before == origin
            )
        elif not _goes_on(writer, start, end, links, expected):
            _broke(
                verdict,
                start,
                end,
                key,
                f"the chain does not go on from offset {start}: batches before it were "
                "removed, reordered or changed",
            )
            return verdict
        moved = False
        try:
            batches = list(_in_range(objects.batches(key, writer), start, end))
        except CorruptObject as error:
            _broke(verdict, start, end, key, f"unreadable: {error}")
            return verdict
        except ObjectNotFound as error:
            if current is None:
                raise
            now = current()
            if now.names_key(key):
                _broke(verdict, start, end, key, MISSING)
                return verdict
            batches = _moved(objects, now, writer, start, end, error)
            moved = True
        # A moved range's object keeps the links of its own, merged, range.
        kept = None if moved else objects.chain(key)
        if kept is None and not moved:
            verdict.ranges_without_object_links += 1
        elif kept is not None and kept.get((writer, start)) != _as_kept(writer, start, end, links):
            _broke(
                verdict,
                start,
                end,
                key,
                f"the object keeps other links for offsets [{start}, {end}) than the manifest",
            )
            return verdict
        problem = _offsets_problem(batches, start, end, gaps=rewrite is not None)
        if problem is not None:
            if moved:
                raise ObjectNotFound(key)  # changed since state: prove it from a newer one
            offset, reason = problem
            _broke(verdict, offset, end, key, reason)
            return verdict
        # The range in one call: per batch, a call more would cost a tenth
        # of the hashing of 1 KiB batches. Progress moves a range at a time.
        link = chain.extend(links.algorithm, links.before, batches)
        for batch in batches:
            verdict.batches += 1
            verdict.bytes += len(batch.payload)
            if on_progress is not None:
                on_progress(len(batch.payload))
        if link != links.after:
            if moved:
                raise ObjectNotFound(key)
            _broke(
                verdict,
                start,
                end,
                key,
                f"the batches of offsets [{start}, {end}) do not give the link kept for them: "
                "a batch there was changed, removed or reordered",
            )
            return verdict
        verdict.head = links.after
        verdict.algorithms[links.algorithm] = verdict.algorithms.get(links.algorithm, 0) + 1
        expected = {links.after} | ({rewrite.old_after} if rewrite is not None else set())
    return verdict


def _links(
    state: ManifestState, stream_id: int, start: int, object_id: int
) -> chain.RangeLinks | None:
    meta = state.range_meta(stream_id, start, object_id)
    return None if meta is None else meta.links


def _as_kept(stream_id: int, start: int, end: int, links: chain.RangeLinks) -> ChainLinks:
    return ChainLinks(
        stream_id, start, end, links.algorithm, links.before, links.after, links.rewrite
    )


def _goes_on(
    stream_id: int, start: int, end: int, links: chain.RangeLinks, expected: set[bytes]
) -> bool:
    """Whether a range's chain follows on from the links the ranges before
    it left: directly, or as a cleaner's rewrite of what followed them."""
    if links.before in expected:
        return True
    rewrite = links.rewrite
    return (
        rewrite is not None
        and rewrite.old_before in expected
        and links.before
        == chain.rewrite_genesis(stream_id, start, end, rewrite.old_before, rewrite.old_after)
    )


def moved_batches(
    objects: ParsedObjects,
    current: Callable[[], ManifestState],
    key: str,
    stream_id: int,
    start: int,
    end: int,
    gone: ObjectNotFound,
) -> list[StoredBatch]:
    """The stream's batches of ``[start, end)``, whose object ``key`` a read
    found ``gone``, from where the manifest as it is now (``current()``)
    places them, for the readers from outside the writer (``tidelog state``,
    ``lookup``; s3stream/outside_reads.py). CorruptObject if that manifest
    still names ``key``: the bucket lost it. ``gone`` if the range cannot be
    read there (merged again, trimmed, rewritten by a cleaner meanwhile),
    for the caller to start again from a newer manifest."""
    return _moved(objects, moved_or_lost(current, key, gone), stream_id, start, end, gone)


def moved_or_lost(
    current: Callable[[], ManifestState], key: str, gone: ObjectNotFound
) -> ManifestState:
    """The manifest as it is now, if it no longer names ``key``, which a
    read found gone: a writer merged it away. CorruptObject if it still
    does: the bucket lost it."""
    now = current()
    if now.names_key(key):
        raise CorruptObject(key, MISSING) from gone
    return now


def _moved(
    objects: ParsedObjects,
    now: ManifestState,
    stream_id: int,
    start: int,
    end: int,
    gone: ObjectNotFound,
) -> list[StoredBatch]:
    """The stream's batches of ``[start, end)`` from the objects the
    manifest ``now`` places them in (a merge copies batches as they are);
    ``gone`` is raised if ``now``'s ranges of the stream do not cover
    those offsets all in the stream's own objects, or one cannot be read."""
    ranges = now.ranges.get(stream_id)
    if ranges is None:
        raise gone
    batches: list[StoredBatch] = []
    covered = start
    for range_start, range_end, object_id in ranges.entries:
        if range_end <= start or range_start >= end:
            continue
        if range_start > covered or now.source_of(stream_id, range_start, object_id) != stream_id:
            raise gone
        try:
            held = objects.batches(now.objects[object_id].key, stream_id)
        except (CorruptObject, ObjectNotFound):
            raise gone from None  # a break there is found proving ``now`` itself
        batches.extend(_in_range(held, max(range_start, start), min(range_end, end)))
        covered = range_end
    if covered < end:
        raise gone
    return batches


def _in_range(batches: list[StoredBatch], start: int, end: int) -> Iterator[StoredBatch]:
    return (b for b in batches if b.base_offset >= start and b.base_offset < end)


def _offsets_problem(
    batches: list[StoredBatch], start: int, end: int, *, gaps: bool
) -> tuple[int, str] | None:
    """The first offset where the batches do not follow on (a rewritten range
    may skip offsets the cleaner removed; no other may)."""
    if not batches:
        return start, f"no batch holds the range starting at offset {start}"
    expected = start
    for batch in batches:
        if batch.base_offset < expected:
            return batch.base_offset, (
                f"the batch at offset {batch.base_offset} is out of order (after offset "
                f"{expected - 1})"
            )
        if batch.base_offset > expected and not gaps:
            return expected, (
                f"offsets [{expected}, {batch.base_offset}) are missing: a batch was removed"
            )
        expected = batch.end_offset
    if expected < end and not gaps:
        return expected, f"offsets [{expected}, {end}) are missing: a batch was removed"
    return None


def _broke(verdict: StreamVerdict, offset: int, end: int, key: str, reason: str) -> None:
    verdict.breaks.append(ChainBreak(verdict.stream_id, offset, end, key, reason))


def stored_payloads(
    store: ObjectStore,
    state: ManifestState,
    stream_id: int,
    current: Callable[[], ManifestState] | None = None,
) -> Iterator[BytesLike]:
    """Every committed batch's bytes of a stream from its start, read from
    the objects alone (for readers that must not open the store as a writer).
    With ``current`` (the manifest as it is now), a range whose object a
    writer merged away since ``state`` is read where that manifest places
    it (``moved_batches``)."""
    meta = state.streams.get(stream_id)
    ranges = state.ranges.get(stream_id)
    if meta is None or ranges is None:
        raise StreamNotFound(stream_id)
    objects = ParsedObjects(store)
    for start, end, object_id in ranges.entries:
        if end <= meta.start_offset:
            continue
        # A fork's shared range is in the blocks of the stream that wrote it.
        writer = state.source_of(stream_id, start, object_id)
        key = state.objects[object_id].key
        try:
            batches = list(_in_range(objects.batches(key, writer), start, end))
        except ObjectNotFound as gone:
            if current is None:
                raise
            batches = moved_batches(objects, current, key, writer, start, end, gone)
        for batch in batches:
            if batch.end_offset > meta.start_offset:
                yield batch.payload
