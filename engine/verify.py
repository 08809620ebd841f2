"""Verifying topics' hash chains from the object store (docs/tamper-evidence.md).

Maps topics and partitions to their streams through the catalog and proves
each partition's chain with ``s3stream.chain_verify``. Everything is read
from the object store: the manifest as committed, the objects it names and,
offline, the catalog as uploaded. Nothing is written and no epoch is taken,
so a serving engine is never fenced by a verification.

A head recorded outside the bucket anchors one partition's chain: the
verdict then fails unless the chain ends at it, and, strictly by default,
if any verified range is a log cleaner's rewrite, whose records the head
does not prove (anyone who can write the bucket can put a rewrite in any
range's place and keep the head). An auditor of a compacted topic accepts
rewrites explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack

from engine.catalog import CatalogState, start_damage
from engine.errors import CatalogDamaged, EngineError, UnknownPartition, UnknownTopic
from engine.governance_log import stamped_ranges
from engine.protocol.kafka_code import KafkaCode
from s3stream import ObjectStore
from s3stream.chain_verify import RewriteSeen, StreamVerdict, stored_payloads, verify_stream
from s3stream.manifest import load_state
from s3stream.manifest_state import ManifestState
from s3stream.outside_reads import reloading


class AnchorNeedsOnePartition(EngineError, ValueError):
    """An expected head was given for a selection of other than one partition:
    a head is one partition's."""

    code = KafkaCode.INVALID_REQUEST

    def __init__(self, selected: int) -> None:
        super().__init__(
            f"an expected head needs one partition (TOPIC:PARTITION), {selected} selected"
        )
        self.selected = selected


@dataclass(frozen=True)
class PartitionVerdict:
    """What verifying one partition proved (``verdict.ok``), and where not;
    with an expected head, whether the chain is anchored to it."""

    topic: str
    partition: int
    verdict: StreamVerdict
    expected_head: bytes | None = None
    """The head recorded outside the bucket (None: the chain is not anchored)."""
    accept_rewrites: bool = False
    """Whether rewritten ranges are accepted under the expected head (a
    compacted topic's audit): their records are then proven by their own
    links only."""
    stamped: tuple[tuple[int, int | None], ...] = ()
    """The offsets where the broker stamped every record, from the catalog's
    governance history (engine/governance_log.py; end None: it still does):
    only there are the stamp's headers the broker's."""

    def stamped_statement(self) -> str:
        """Where the partition's provenance stamps can be trusted, for people."""
        name = f"{self.topic}:{self.partition}"
        if not self.stamped:
            return (
                f"{name}: no offsets recorded as stamped by the broker: "
                "stamp-named headers here are the writer's own"
            )
        ranges = ", ".join(
            f"[{start}, {'end' if end is None else end})" for start, end in self.stamped
        )
        return (
            f"{name}: stamped by the broker in offsets {ranges}; "
            "elsewhere stamp-named headers are the writer's own"
        )

    @property
    def head_mismatch(self) -> bool:
        """An expected head was given and the chain does not end at it."""
        return self.expected_head is not None and self.verdict.head != self.expected_head

    @property
    def unaccepted_rewrites(self) -> list[RewriteSeen]:
        """The rewritten ranges that fail the anchored verdict: every one,
        when a head is expected and rewrites were not accepted."""
        if self.expected_head is None or self.accept_rewrites:
            return []
        return list(self.verdict.rewrites)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.head_mismatch and not self.unaccepted_rewrites

    def anchor_failures(self) -> list[str]:
        """Why the anchored verdict fails, beyond the chain's breaks: one
        statement per reason, naming the partition and the offsets."""
        name = f"{self.topic}:{self.partition}"
        found = [
            f"{name}: offsets [{r.start_offset}, {r.end_offset}) are a log cleaner's rewrite, "
            "which cannot be checked against an anchored head: the ranges after it go on from "
            "the link it replaced, so any records in its place give the same head. Accept "
            "rewrites (--accept-rewrites, accept_rewrites=True) only for a compacted topic, "
            "whose cleaner writes them"
            for r in self.unaccepted_rewrites
        ]
        if self.head_mismatch:
            assert self.expected_head is not None
            found.append(f"{name}: head is not the expected {self.expected_head.hex()}")
        return found


@dataclass(frozen=True)
class VerifyReport:
    partitions: tuple[PartitionVerdict, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.partitions)


def _proof(
    store: ObjectStore,
    stream_id: int,
    from_offset: int,
    on_progress: Callable[[int], None] | None,
) -> Callable[[ManifestState], StreamVerdict]:
    """The proof of one stream from a manifest state: an object missing
    that the manifest loaded again still names is a break, one it no
    longer names is read where that manifest places its batches, or
    else sends ``reloading`` round again."""

    def prove(state: ManifestState) -> StreamVerdict:
        if stream_id not in state.streams:  # created, nothing committed yet
            return StreamVerdict(stream_id)
        return verify_stream(
            store,
            state,
            stream_id,
            from_offset=from_offset,
            on_progress=on_progress,
            current=partial(load_state, store),
        )

    return prove


def uploaded_catalog(
    store: ObjectStore,
    state: ManifestState,
    current: Callable[[], ManifestState] | None = None,
) -> CatalogState:
    """The catalog as far as it is in committed objects (the catalog is the
    engine's first stream; records still only in a WAL are not seen);
    ``current`` as for stored_payloads. CatalogDamaged when its start is
    damaged (start_damage): its topics cannot be known, and an empty state
    would read as a store without any."""
    catalog, damage = read_uploaded_catalog(store, state, current)
    if damage is not None:
        raise damage
    return catalog


def read_uploaded_catalog(
    store: ObjectStore,
    state: ManifestState,
    current: Callable[[], ManifestState] | None = None,
) -> tuple[CatalogState, CatalogDamaged | None]:
    """uploaded_catalog, with why its start is damaged, if it is, beside
    what could be read of it rather than raised: for tools that show what
    a damaged store holds. A trimmed stream's committed start is an
    opening record only with all its parts committed before it (the trim
    is uploaded after them), so a damaged start here is damage, not
    parts still in a WAL."""
    catalog = CatalogState()
    if not state.streams:
        return catalog, None
    stream_id = min(state.streams)
    first: list[Any] | None = None
    for payload in stored_payloads(store, state, stream_id, current):
        record = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        first = record if first is None else first
        catalog.apply(record)
    return catalog, start_damage(stream_id, first, catalog)


def partitions_of(
    catalog: CatalogState, topic: str | None, partition: int | None
) -> list[tuple[str, int, int]]:
    """``(topic, partition, data stream)`` of the selection, in name order."""
    if topic is None:
        names = sorted(catalog.topics)
    elif topic in catalog.topics:
        names = [topic]
    else:
        raise UnknownTopic(topic)
    chosen: list[tuple[str, int, int]] = []
    for name in names:
        streams = catalog.topics[name].streams
        if partition is not None:
            if not 0 <= partition < len(streams):
                raise UnknownPartition(name, partition, len(streams))
            chosen.append((name, partition, streams[partition][0]))
        else:
            chosen += [(name, p, data) for p, (data, _) in enumerate(streams)]
    return chosen


def verify_partitions(
    store: ObjectStore,
    topic: str | None = None,
    partition: int | None = None,
    *,
    from_offset: int = 0,
    catalog: CatalogState | None = None,
    on_progress: Callable[[int], None] | None = None,
    expect_head: bytes | None = None,
    accept_rewrites: bool = False,
) -> VerifyReport:
    """Proves the chains of ``topic`` (all topics if None), of one partition
    or all, from the committed manifest and objects in ``store``. Without a
    ``catalog`` the one uploaded to ``store`` names the topics.

    ``expect_head`` anchors the one selected partition (else
    AnchorNeedsOnePartition, before anything is read of the objects): its
    verdict fails unless the chain ends at that head and, unless
    ``accept_rewrites``, no verified range is a rewrite."""
    state = load_state(store)
    if catalog is None:
        topics, state = reloading(store, partial(uploaded_catalog, store), state)
    else:
        topics = catalog
    selected = partitions_of(topics, topic, partition)
    if expect_head is not None and len(selected) != 1:
        raise AnchorNeedsOnePartition(len(selected))

    verdicts = []
    for name, index, stream_id in selected:
        proof = _proof(store, stream_id, from_offset, on_progress)
        verdict, state = reloading(store, proof, state)
        stamped = stamped_ranges(topics.governance, topics.topics[name].topic_id, index)
        verdicts.append(
            PartitionVerdict(name, index, verdict, expect_head, accept_rewrites, tuple(stamped))
        )
    return VerifyReport(tuple(verdicts))
