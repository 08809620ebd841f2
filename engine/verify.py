"""Verifying topics' hash chains from the object store (docs/tamper-evidence.md).

Maps topics and partitions to their streams through the catalog and proves
each partition's chain with ``s3stream.chain_verify``. Everything is read
from the object store: the manifest as committed, the objects it names and,
offline, the catalog as uploaded. Nothing is written and no epoch is taken,
so a serving engine is never fenced by a verification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from engine.catalog import CatalogState
from engine.errors import UnknownPartition, UnknownTopic
from s3stream import ObjectStore
from s3stream.chain_verify import StreamVerdict, stored_payloads, verify_stream
from s3stream.manifest import load_state
from s3stream.manifest_state import ManifestState


@dataclass(frozen=True)
class PartitionVerdict:
    """What verifying one partition proved (``verdict.ok``), and where not."""

    topic: str
    partition: int
    verdict: StreamVerdict

    @property
    def ok(self) -> bool:
        return self.verdict.ok


@dataclass(frozen=True)
class VerifyReport:
    partitions: tuple[PartitionVerdict, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.partitions)


def uploaded_catalog(store: ObjectStore, state: ManifestState) -> CatalogState:
    """The catalog as far as it is in committed objects (the catalog is the
    engine's first stream; records still only in a WAL are not seen)."""
    catalog = CatalogState()
    if not state.streams:
        return catalog
    for payload in stored_payloads(store, state, min(state.streams)):
        catalog.apply(msgpack.unpackb(payload, raw=False, strict_map_key=False))
    return catalog


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
) -> VerifyReport:
    """Proves the chains of ``topic`` (all topics if None), of one partition
    or all, from the committed manifest and objects in ``store``. Without a
    ``catalog`` the one uploaded to ``store`` names the topics."""
    state = load_state(store)
    if catalog is None:
        catalog = uploaded_catalog(store, state)
    verdicts = []
    for name, index, stream_id in partitions_of(catalog, topic, partition):
        if stream_id in state.streams:
            verdict = verify_stream(
                store, state, stream_id, from_offset=from_offset, on_progress=on_progress
            )
        else:  # created, nothing committed yet
            verdict = StreamVerdict(stream_id)
        verdicts.append(PartitionVerdict(name, index, verdict))
    return VerifyReport(tuple(verdicts))
