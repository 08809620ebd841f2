"""The log cleaner: Kafka's log compaction for topics with cleanup.policy=compact.

It works on data already in object storage. For a partition that is due
(``LogCleaner.clean`` says when, as Kafka's LogCleanerManager does, with
``min.cleanable.dirty.ratio`` and ``max.compaction.lag.ms``), it reads the
uploaded log from its first object range to the last range older than
``min.compaction.lag.ms``, keeps the latest record of every key, drops
tombstones older than ``delete.retention.ms``, records what it removes as
the partition's compaction horizon, and asks the stream store to replace
that range with the rewritten batches. Offsets never change: a rewritten batch keeps
its base offset, last offset delta, base timestamp, producer fields and
codec, and each kept record its offset delta. Batches whose records all
survive are kept byte for byte.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

import native
from engine import markers
from engine.batch_encoding import encode_like
from engine.clock import SYSTEM, Clock
from engine.compaction_horizon import CompactionHorizon
from engine.config import LONG_MAX, TopicConfig
from engine.partition import Partition
from engine.partition_txns import AbortedTxn
from native import BatchHeader, Record, RecordSpec, TimestampType
from s3stream import RangeChanged, StoredBatch, StreamStore

log = logging.getLogger("tidelog.cleaner")


class CleaningStats(NamedTuple):
    start_offset: int
    end_offset: int
    records_read: int
    records_kept: int
    bytes_read: int
    bytes_written: int


class _Batch(NamedTuple):
    header: BatchHeader
    data: memoryview
    records: list[Record]


class LogCleaner:
    def __init__(self, store: StreamStore, clock: Clock = SYSTEM) -> None:
        self.store = store
        self._clock = clock
        """Decides which tombstones and markers are past their retention."""
        self.last: dict[tuple[str, int], CleaningStats] = {}

    def clean(self, partition: Partition, *, force: bool = False) -> bool:
        """Cleans the partition if it is due (always if ``force``); True if a
        range was rewritten.

        As Kafka's LogCleanerManager decides: the dirty part starts at the
        cleaned offset; the cleanable part ends before the first range
        holding a batch younger than ``min.compaction.lag.ms`` (by the
        batch's max timestamp, as Kafka uses a segment's largest timestamp),
        and before any open transaction; the partition is due when the dirty
        share of the cleanable part reaches ``min.cleanable.dirty.ratio``, or
        when its first dirty batch is older than ``max.compaction.lag.ms``
        (then whatever the ratio, as long as something is cleanable)."""
        config = partition.config
        if not config.compact:
            return False
        stream_id = partition.stream_id
        log_start = partition.log_start_offset
        remote_end = self.store.remote_end_offset(stream_id)
        first_dirty = max(partition.cleaned_offset, log_start)
        if remote_end <= first_dirty:
            return False
        now = self._clock.time_ms()
        # The dirty share of the whole uploaded log bounds that of its
        # cleanable part from above: a cheap test before reading anything.
        ratio_due = (remote_end - first_dirty) >= config.min_cleanable_dirty_ratio * (
            remote_end - log_start
        )
        lag_due = self._max_lag_passed(partition, first_dirty, now)
        if not (force or ratio_due or lag_due):
            return False
        boundaries = [r for r in self.store.committed_ranges(stream_id) if r[0] >= log_start]
        if not boundaries:
            return False
        start = boundaries[0][0]
        try:
            batches = list(self._read(partition, start, remote_end))
        except native.BatchError as error:
            # A batch stored before compressed batches were validated on
            # produce: as Kafka's cleaner marks such a partition uncleanable,
            # leave it as it is rather than guess at its records.
            log.warning(
                "%s-%d is not cleaned: a batch cannot be decoded: %s",
                partition.topic,
                partition.index,
                error,
            )
            return False
        # Kafka applies the lag only when it is set: a timestamp in the
        # future does not hold back a partition without one.
        newest_ms = now - config.min_compaction_lag_ms if config.min_compaction_lag_ms > 0 else None
        # Open transactions are not cleaned: their outcome decides what stays.
        stable = partition.last_stable_offset
        end = self._cleanable_end(batches, boundaries, newest_ms, stable)
        if not self._cleaning_due(end, start, first_dirty, log_start, force or lag_due, config):
            return False
        if partition.durable_checkpoint_end < end:
            # Only below a durable checkpoint may batches go (recovery replays
            # the producers from there), and checkpoints follow the bytes
            # appended, not the clock (docs/design/0128): one is taken for a
            # clean that needs it, not at every look at a partition written
            # at a trickle with nothing cleanable.
            written = partition.checkpoint()
            if written is not None:
                written.result()
            checkpointed = min(partition.durable_checkpoint_end, stable)
            end = self._cleanable_end(batches, boundaries, newest_ms, checkpointed)
            if not self._cleaning_due(end, start, first_dirty, log_start, force or lag_due, config):
                return False
        batches = [b for b in batches if b.header.last_offset < end]
        if not batches:
            return False
        stats = self._rewrite(partition, start, end, batches, now - config.delete_retention_ms)
        if stats is None:
            return False
        partition.note_cleaned(end)
        self.last[(partition.topic, partition.index)] = stats
        log.info(
            "cleaned %s-%d [%d, %d): %d of %d records kept, %d -> %d bytes",
            partition.topic,
            partition.index,
            start,
            end,
            stats.records_kept,
            stats.records_read,
            stats.bytes_read,
            stats.bytes_written,
        )
        return True

    def _read(self, partition: Partition, start: int, end: int) -> Iterator[_Batch]:
        offset = start
        while offset < end:
            fetched = partition.fetch(offset, 8 * 1024 * 1024)
            for payload in fetched.records:
                view = memoryview(payload)
                for header in native.scan_batches(view):
                    if header.last_offset < offset or header.base_offset >= end:
                        continue
                    data = view[header.position : header.position + header.size]
                    records = (
                        []
                        if header.is_control
                        else native.decode_records(data, max_inflated=fetched.max_inflated)
                    )
                    yield _Batch(header, data, records)
            if fetched.next_offset <= offset:
                return
            offset = fetched.next_offset

    def _max_lag_passed(self, partition: Partition, first_dirty: int, now: int) -> bool:
        """Kafka's maxCompactionDelay > 0: the first dirty batch (its max
        timestamp) is older than ``max.compaction.lag.ms``."""
        max_lag = partition.config.max_compaction_lag_ms
        if max_lag >= LONG_MAX:
            return False
        fetched = partition.fetch(first_dirty, 1)
        for payload in fetched.records:
            for header in native.scan_batches(payload):
                if header.last_offset >= first_dirty:
                    return header.max_timestamp < now - max_lag
        return False

    @staticmethod
    def _cleaning_due(
        end: int, start: int, first_dirty: int, log_start: int, due: bool, config: TopicConfig
    ) -> bool:
        """Whether cleaning up to ``end`` is due: something dirty is
        cleanable, and ``due`` (forced, or the max lag passed) or its dirty
        share reaches min.cleanable.dirty.ratio."""
        if end <= start or end <= first_dirty:
            return False
        return due or (end - first_dirty) / (end - log_start) >= config.min_cleanable_dirty_ratio

    @staticmethod
    def _cleanable_end(
        batches: list[_Batch],
        boundaries: list[tuple[int, int]],
        newest_ms: int | None,
        checkpointed: int,
    ) -> int:
        """The last range end before the first batch younger than the lag, and
        not past the last durable checkpoint: a producer's batches after it
        are what recovery replays to rebuild the producer's sequences."""
        limit = min(boundaries[-1][1], checkpointed)
        for batch in batches:
            if newest_ms is not None and batch.header.max_timestamp > newest_ms:
                limit = batch.header.base_offset
                break
        end = boundaries[0][0]
        for _, range_end in boundaries:
            if range_end <= limit:
                end = range_end
        return end

    def _rewrite(
        self,
        partition: Partition,
        start: int,
        end: int,
        batches: list[_Batch],
        tombstone_horizon_ms: int,
    ) -> CleaningStats | None:
        txns = _transactions(partition, start, end, batches, tombstone_horizon_ms)
        latest: dict[bytes | None, int] = {}
        for batch in batches:
            if batch.header.base_offset in txns.dropped:
                continue  # an aborted record never hides a committed one
            for record in batch.records:
                latest[record.key] = record.offset
        out: list[StoredBatch] = []
        read = kept_total = bytes_read = bytes_written = 0
        removed: list[tuple[int, int]] = []
        """(offset, timestamp) of each record the rewrite removes."""
        for batch in batches:
            header = batch.header
            bytes_read += len(batch.data)
            read += len(batch.records)
            if header.base_offset in txns.dropped:
                continue
            kept: list[Record] = []
            for r in batch.records:
                if latest.get(r.key) == r.offset and not (
                    r.value is None and _timestamp(header, r) < tombstone_horizon_ms
                ):
                    kept.append(r)
                else:
                    removed.append((r.offset, _timestamp(header, r)))
            kept_total += len(kept)
            if header.is_control or len(kept) == len(batch.records):
                rewritten = bytes(batch.data)
            elif not kept:
                continue
            else:
                rewritten = _encode_kept(header, kept)
            bytes_written += len(rewritten)
            out.append(StoredBatch(header.base_offset, header.last_offset + 1, rewritten))
        if not out:  # keep the range's last batch: an object holds at least one
            last = batches[-1]
            out.append(
                StoredBatch(last.header.base_offset, last.header.last_offset + 1, bytes(last.data))
            )
            removed = [r for r in removed if r[0] < last.header.base_offset]
        if kept_total == read and not txns.dropped:
            return CleaningStats(start, end, read, kept_total, bytes_read, bytes_read)
        if txns.forgotten:
            # The aborted index loses these entries durably before their
            # markers go: an entry without its marker would make a reader
            # drop the producer's later batches, a marker without an entry
            # is ignored.
            partition.forget_aborted(txns.forgotten)
        if removed:
            # What the rewrite removes is durable before the rewrite is, so a
            # reader of history never takes a removal for an exact answer.
            horizon = CompactionHorizon(
                min(offset for offset, _ in removed),
                min(timestamp for _, timestamp in removed),
                end,
                max(b.header.max_timestamp for b in batches),
            )
            written = partition.note_compaction_horizon(horizon)
        else:
            written = partition.checkpoint() if txns.forgotten else None
        if written is not None:
            written.result()
        try:
            self.store.replace_range(partition.stream_id, start, end, out)
        except RangeChanged as error:
            log.info("cleaning %s-%d deferred: %s", partition.topic, partition.index, error)
            return None
        return CleaningStats(start, end, read, kept_total, bytes_read, bytes_written)


class _Transactions(NamedTuple):
    dropped: set[int]
    """Base offsets of batches to remove: aborted data, and markers that
    are no longer needed."""
    forgotten: set[AbortedTxn]
    """Aborted-index entries of the abort markers removed."""


def _transactions(
    partition: Partition, start: int, end: int, batches: list[_Batch], horizon_ms: int
) -> _Transactions:
    """Kafka's rules for transactions in a cleaned range: batches of aborted
    transactions go; a marker stays until no batch of its transaction is
    left (this pass removes the aborted data, a later one the marker) and
    it is older than delete.retention.ms. A commit marker's transaction has
    no index entry to say where it began, so commit markers go only when
    the range starts at the log start (every batch before the marker is in
    view)."""
    upcoming = partition.aborted_transactions(start, end)
    next_aborted = 0
    active: dict[int, AbortedTxn] = {}
    seen: set[AbortedTxn] = set()
    committed_open: set[int] = set()
    whole_log = start <= partition.log_start_offset
    dropped: set[int] = set()
    forgotten: set[AbortedTxn] = set()
    for batch in batches:
        header = batch.header
        while (
            next_aborted < len(upcoming)
            and upcoming[next_aborted].first_offset <= header.last_offset
        ):
            starting = upcoming[next_aborted]
            active[starting.producer_id] = starting
            next_aborted += 1
        producer_id = header.producer_id
        if header.is_control:
            marker = markers.decode(batch.data)
            if marker is None:
                continue
            old = header.max_timestamp < horizon_ms
            if not marker.commit:
                ended = active.pop(producer_id, None)
                if ended is not None and ended not in seen and ended.first_offset >= start and old:
                    dropped.add(header.base_offset)
                    forgotten.add(ended)
            else:
                had_data = producer_id in committed_open
                committed_open.discard(producer_id)
                if not had_data and whole_log and old:
                    dropped.add(header.base_offset)
        elif header.is_transactional:
            entry = active.get(producer_id)
            if entry is not None:
                dropped.add(header.base_offset)
                seen.add(entry)
            else:
                committed_open.add(producer_id)
    return _Transactions(dropped, forgotten)


def _timestamp(header: BatchHeader, record: Record) -> int:
    if header.timestamp_type == TimestampType.LOG_APPEND_TIME:
        return header.max_timestamp
    return record.timestamp


def _encode_kept(header: BatchHeader, kept: list[Record]) -> bytes:
    encoded = bytearray(
        encode_like(
            header,
            [RecordSpec(r.timestamp, r.key, r.value, r.headers) for r in kept],
            [r.offset for r in kept],
        )
    )
    if header.timestamp_type == TimestampType.LOG_APPEND_TIME:
        native.rewrite_batch(
            encoded, 0, header.base_offset, header.partition_leader_epoch, header.max_timestamp
        )
    return bytes(encoded)
