"""State as of T read from the object store alone, for ``tidelog state``.

Like ``tidelog verify`` (engine/verify.py), it reads the committed manifest,
the objects it names and the catalog as uploaded; it writes nothing and
takes no epoch, so a serving engine is never fenced. Records still only in
the server's WAL are not seen: a time at or past the latest one a committed
batch read carries is not answered exactly, as records dated up to it may be
there, or in a transaction not committed yet.

A partition's compaction horizon comes from its last uploaded checkpoint.
Without the engine's aborted-transaction index at hand, a first pass over
the batch headers finds each transaction's outcome from its marker (the
cleaner never removes a marker while batches of its transaction remain), and
the last stable offset as the first batch of a transaction with no marker
yet; the second pass folds the records as engine/memory/state_at.py does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial

import msgpack

import native
from engine import markers
from engine.catalog import CatalogState
from engine.checkpoint_records import checkpoints
from engine.compaction_horizon import CompactionHorizon
from engine.compaction_horizon import from_checkpoint as horizon_from_checkpoint
from engine.config import TopicConfig
from engine.errors import UnknownTopic
from engine.leader_epochs import end_offset_for_epoch
from engine.memory.state_at import StateQuery, TopicState, rebuild, state_query
from engine.memory.vector import OffsetVector
from engine.partition import PartitionFetch, inflation_limit
from engine.partition_txns import AbortedTxn
from engine.verify import uploaded_catalog
from native.buffers import BytesLike
from s3stream import ObjectStore
from s3stream.chain_verify import stored_payloads
from s3stream.manifest import load_state
from s3stream.manifest_state import ManifestState
from s3stream.outside_reads import reloading


class StoredPartition:
    """One partition as the object store holds it, read in offset order."""

    def __init__(
        self,
        store: ObjectStore,
        state: ManifestState,
        topic: str,
        index: int,
        streams: tuple[int, int],
        max_inflated: int,
        topic_id: bytes,
        current: Callable[[], ManifestState] | None = None,
    ) -> None:
        self.topic = topic
        self.topic_id = topic_id
        self.index = index
        self._store = store
        self._state = state
        self._current = current
        """The manifest as it is now: a range a serving engine merged away
        since ``state`` is read where it places it (stored_payloads)."""
        self._data, self._checkpoints = streams
        self._max_inflated = max_inflated
        meta = state.streams.get(self._data)
        self._start = 0 if meta is None else meta.start_offset
        self._end = 0 if meta is None else meta.end_offset
        self.compaction_horizon = self._last_horizon()
        self._epochs: list[tuple[int, int]] = []
        """(leader epoch, its first offset) as the stored batches carry them."""
        self._aborted, self._stable = self._transactions()
        self._payloads = self._read()

    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def high_watermark(self) -> int:
        return self._end

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """As Partition.end_offset_for_epoch, from the stored batches' epochs."""
        return end_offset_for_epoch(self._epochs, epoch, self._end)

    def _stream(self, stream_id: int) -> Iterator[BytesLike]:
        if stream_id not in self._state.streams:
            return iter(())
        return stored_payloads(self._store, self._state, stream_id, self._current)

    def _last_horizon(self) -> CompactionHorizon | None:
        """The last complete checkpoint's horizon: a checkpoint in parts is
        read whole (its parts hold no horizon of their own)."""
        horizon = None
        records = (
            msgpack.unpackb(payload, raw=False, strict_map_key=False)
            for payload in self._stream(self._checkpoints)
        )
        for checkpoint in checkpoints(records, f"state stream {self._checkpoints}"):
            horizon = horizon_from_checkpoint(checkpoint)
        return horizon

    def _transactions(self) -> tuple[list[AbortedTxn], int]:
        """The aborted transactions, and the first offset of the first
        transaction without a marker (the stored end if none)."""
        open_since: dict[int, int] = {}
        aborted: list[AbortedTxn] = []
        for payload in self._stream(self._data):
            view = memoryview(payload)
            for header in native.scan_batches(view):
                if not self._epochs or self._epochs[-1][0] < header.partition_leader_epoch:
                    self._epochs.append((header.partition_leader_epoch, header.base_offset))
                producer_id = header.producer_id
                if header.is_control:
                    marker = markers.decode(view[header.position : header.position + header.size])
                    first = open_since.pop(producer_id, None)
                    if marker is not None and not marker.commit and first is not None:
                        aborted.append(AbortedTxn(producer_id, first, header.base_offset))
                elif header.is_transactional:
                    open_since.setdefault(producer_id, header.base_offset)
        return aborted, min(open_since.values(), default=self._end)

    def _read(self) -> Iterator[BytesLike]:
        for payload in self._stream(self._data):
            headers = native.scan_batches(payload)
            if headers and headers[-1].last_offset >= self._stable:
                return
            yield payload

    def fetch(self, offset: int, max_bytes: int, read_committed: bool = False) -> PartitionFetch:
        """The next stored payloads from where the last fetch ended (the
        fold asks in order), below the last stable offset."""
        chunk: list[BytesLike] = []
        size = 0
        next_offset = offset
        for payload in self._payloads:
            chunk.append(payload)
            size += len(payload)
            next_offset = native.scan_batches(payload)[-1].last_offset + 1
            if size >= max_bytes:
                break
        return PartitionFetch(
            chunk,
            next_offset,
            self._end,
            self._start,
            self._stable,
            self._aborted,
            max_inflated=self._max_inflated,
        )


def stored_state_at(
    store: ObjectStore,
    topic: str,
    at: int | datetime | None = None,
    *,
    vector: OffsetVector | None = None,
    partitions: Sequence[int] | None = None,
) -> TopicState:
    """``Engine.state_at`` over what ``store`` holds committed (read again
    from a newer manifest if a serving engine compacts away objects it
    needs meanwhile: s3stream/outside_reads.py)."""
    answer, _ = reloading(store, partial(_state_at, store, topic, at, vector, partitions))
    return answer


def _state_at(
    store: ObjectStore,
    topic: str,
    at: int | datetime | None,
    vector: OffsetVector | None,
    partitions: Sequence[int] | None,
    state: ManifestState,
) -> TopicState:
    current = partial(load_state, store)
    catalog: CatalogState = uploaded_catalog(store, state, current)
    meta = catalog.topics.get(topic)
    if meta is None:
        raise UnknownTopic(topic)
    query: StateQuery = state_query(topic, at, vector, partitions, len(meta.streams))
    max_inflated = inflation_limit(TopicConfig(meta.configs, {}))
    sources = [
        StoredPartition(
            store, state, topic, index, meta.streams[index], max_inflated, meta.topic_id, current
        )
        for index in query.partitions
    ]
    return rebuild(topic, sources, query, _reached)


def _reached(index: int, read_ms: int) -> int:
    """The latest time the committed batches read carry: records dated
    before it were appended before them, so they were stored and read too;
    later ones, and an open transaction's, may be in the server's WAL alone
    or not committed yet."""
    return read_ms
