"""The engine's metrics: what fills an open engine's prometheus-client
registry (engine/metrics_registry.py) at scrape time, from the counters the
parts already keep (the WAL's writer, the stream store, the caches, each
partition) and from the state they hold (high watermarks, committed
offsets, the fence).

Nothing here runs on the produce or fetch path: the parts count in plain
ints as they go, and a scrape reads them (docs/operations.md lists every
metric). A server in the same process adds its own collectors to the same
registry (``EngineMetrics.add_source``), so ``engine.metrics().text()`` is
what ``/metrics`` serves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.errors import EngineError
from engine.partition import Partition
from engine.types import TopicPartition
from s3stream import S3StreamError, StreamStore
from wal.histogram import PlainHistogram

log = logging.getLogger("tidelog.metrics")


class _Listing(Protocol):
    @property
    def group_id(self) -> str: ...


class _Groups(Protocol):
    def list_groups(self) -> Sequence[_Listing]: ...


class _Lag(Protocol):
    @property
    def committed_offset(self) -> int | None: ...
    @property
    def lag(self) -> int | None: ...


class MetricsHost(Protocol):
    """What the collector reads (the Engine is one)."""

    @property
    def closed(self) -> bool: ...
    @property
    def store(self) -> StreamStore: ...
    @property
    def groups(self) -> _Groups: ...
    def all_partitions(self) -> list[Partition]: ...
    def consumer_lag(self, group_id: str) -> Mapping[TopicPartition, _Lag]: ...


def _hedges(sent: dict[str, int], won: dict[str, int]) -> Iterator[Metric]:
    """Zeros for a store that is not hedged (a local directory, hedging off)."""
    hedges = CounterMetricFamily(
        "tidelog_object_store_hedges",
        "Second copies sent of object-store requests slow to answer.",
        labels=["operation"],
    )
    hedges_won = CounterMetricFamily(
        "tidelog_object_store_hedges_won",
        "Second copies whose answer came first and was used.",
        labels=["operation"],
    )
    for operation in ("put", "put_if_absent", "head", "get_versioned"):
        hedges.add_metric([operation], sent.get(operation, 0))
        hedges_won.add_metric([operation], won.get(operation, 0))
    yield from (hedges, hedges_won)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, source: PlainHistogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[])
    family.add_metric([], source.cumulative(), source.sum)
    return family


class EngineCollector(Collector):
    """Reads the engine's parts at scrape time."""

    def __init__(self, engine: MetricsHost) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self._engine
        if engine.closed:
            yield _gauge("tidelog_engine_open", "1 while the engine is open.", 0)
            return
        store = engine.store
        yield _gauge("tidelog_engine_open", "1 while the engine is open.", 1)
        yield _gauge(
            "tidelog_fenced", "1 once another owner took the object store over.", store.fenced
        )
        yield from self._wal()
        yield from self._store()
        yield from self._partitions()
        yield from self._consumer_lag()

    def _wal(self) -> Iterator[Metric]:
        wal = self._engine.store.wal.stats
        yield _counter("tidelog_wal_appends", "Appends written to the WAL.", wal.appends)
        yield _counter(
            "tidelog_wal_group_commits", "Group commits (one write for many appends).", wal.groups
        )
        yield _counter("tidelog_wal_fsyncs", "fdatasync calls on WAL segments.", wal.syncs)
        yield _counter("tidelog_wal_written_bytes", "Bytes written to the WAL.", wal.bytes_written)
        yield _counter(
            "tidelog_wal_segments_rolled", "WAL segments filled and rolled.", wal.segments_rolled
        )
        yield _histogram(
            "tidelog_wal_fsync_seconds", "How long each WAL fdatasync took.", wal.fsync_seconds
        )
        yield _histogram(
            "tidelog_wal_group_commit_appends",
            "Appends written by each WAL group commit.",
            wal.group_appends,
        )

    def _store(self) -> Iterator[Metric]:
        store = self._engine.store
        stats = store.stats
        yield _counter("tidelog_object_uploads", "Stream-set objects uploaded.", stats.uploads)
        yield _counter(
            "tidelog_object_uploaded_bytes", "Bytes uploaded in objects.", stats.uploaded_bytes
        )
        errors = CounterMetricFamily(
            "tidelog_object_store_errors",
            "Object-store requests that failed and will be retried, by what asked:"
            " data (uploads, compactions), manifest (commits) or read (reads of"
            " stored data, answered KAFKA_STORAGE_ERROR for the client to retry).",
            labels=["source"],
        )
        errors.add_metric(["data"], stats.upload_errors)
        errors.add_metric(["manifest"], store.manifest.commit_retries)
        errors.add_metric(["read"], store.read_errors)
        yield errors
        requests, failed, latency = store.store.snapshot()
        by_operation = ["operation"]
        counted = CounterMetricFamily(
            "tidelog_object_store_requests", "Object-store requests made.", labels=by_operation
        )
        errored = CounterMetricFamily(
            "tidelog_object_store_request_errors",
            "Object-store requests that failed (after the backend's own retries).",
            labels=by_operation,
        )
        seconds = HistogramMetricFamily(
            "tidelog_object_store_request_seconds",
            "How long each object-store request took.",
            labels=by_operation,
        )
        for operation in sorted(requests):
            counted.add_metric([operation], requests[operation])
            errored.add_metric([operation], failed.get(operation, 0))
            histogram = latency[operation]
            seconds.add_metric([operation], histogram.cumulative(), histogram.sum)
        yield from (counted, errored, seconds)
        yield from _hedges(*(store.hedges.snapshot() if store.hedges else ({}, {})))
        yield _counter("tidelog_object_compactions", "Object compactions.", stats.compactions)
        yield _counter(
            "tidelog_objects_deleted",
            "Objects deleted (compacted or expired).",
            stats.objects_deleted,
        )
        yield _counter(
            "tidelog_object_store_abandoned_writes_removed",
            "Temp files that crashed writers' puts left in a local object store, removed.",
            stats.abandoned_writes_removed,
        )
        cache = store.log_cache_usage()
        yield _gauge("tidelog_log_cache_bytes", "Bytes held in the log cache.", cache.size)
        yield _gauge(
            "tidelog_wal_unuploaded_bytes",
            "Bytes acknowledged from the WAL and not yet in an uploaded object.",
            cache.unuploaded_bytes,
        )
        yield _gauge(
            "tidelog_wal_unuploaded_age_seconds",
            "Age of the oldest append not yet uploaded (0 when none is).",
            cache.oldest_unuploaded_age_s,
        )
        hits, misses = store.log_cache_reads()
        yield _counter("tidelog_log_cache_hits", "Reads answered by the log cache.", hits)
        yield _counter(
            "tidelog_log_cache_misses", "Reads that went to objects (block cache, store).", misses
        )
        blocks = store.block_cache
        yield _gauge("tidelog_block_cache_bytes", "Bytes held in the block cache.", blocks.size)
        yield _counter("tidelog_block_cache_hits", "Block-cache lookups found.", blocks.hits)
        yield _counter("tidelog_block_cache_misses", "Block-cache lookups loaded.", blocks.misses)
        yield _counter(
            "tidelog_block_cache_evicted_unread",
            "Blocks fetched ahead and evicted before they were read.",
            blocks.evicted_unread,
        )
        gate = store.reader.gate
        yield _counter(
            "tidelog_read_ahead_held",
            "Read-ahead loads that waited for their turn beside live traffic.",
            gate.held,
        )
        yield _counter(
            "tidelog_read_ahead_overdue",
            "Held read-ahead loads that ran when their longest wait was up.",
            gate.overdue,
        )

    def _partitions(self) -> Iterator[Metric]:
        labels = ["topic", "partition"]
        high = GaugeMetricFamily(
            "tidelog_partition_high_watermark", "The partition's high watermark.", labels=labels
        )
        start = GaugeMetricFamily(
            "tidelog_partition_log_start_offset", "The partition's log start offset.", labels=labels
        )
        remote_lag = GaugeMetricFamily(
            "tidelog_partition_remote_lag_records",
            "Records durable in the local WAL but not yet in an uploaded object.",
            labels=labels,
        )
        bytes_in = CounterMetricFamily(
            "tidelog_partition_bytes_in", "Record-batch bytes appended.", labels=labels
        )
        records_in = CounterMetricFamily(
            "tidelog_partition_records_in",
            "Records appended (counted from batch headers).",
            labels=labels,
        )
        bytes_out = CounterMetricFamily(
            "tidelog_partition_bytes_out", "Record-batch bytes fetched.", labels=labels
        )
        store = self._engine.store
        for partition in self._engine.all_partitions():
            key = [partition.topic, str(partition.index)]
            try:
                end = store.end_offset(partition.stream_id)
                remote = store.remote_end_offset(partition.stream_id)
            except S3StreamError:
                continue  # its topic was deleted while the scrape looked
            high.add_metric(key, partition.high_watermark)
            start.add_metric(key, partition.log_start_offset)
            remote_lag.add_metric(key, max(end - remote, 0))
            bytes_in.add_metric(key, partition.bytes_in)
            records_in.add_metric(key, partition.records_in)
            bytes_out.add_metric(key, partition.bytes_out)
        yield from (high, start, remote_lag, bytes_in, records_in, bytes_out)

    def _consumer_lag(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "tidelog_consumer_group_lag",
            "High watermark minus the group's committed offset.",
            labels=["group", "topic", "partition"],
        )
        committed = GaugeMetricFamily(
            "tidelog_consumer_group_committed_offset",
            "The group's committed offset.",
            labels=["group", "topic", "partition"],
        )
        engine = self._engine
        try:
            groups = [g.group_id for g in engine.groups.list_groups()]
        except EngineError:
            groups = []
        for group in groups:
            try:
                lags = engine.consumer_lag(group)
            except EngineError:
                continue  # deleted while we looked
            for tp, found in lags.items():
                if found.lag is None or found.committed_offset is None:
                    continue
                key = [group, tp.topic, str(tp.partition)]
                lag.add_metric(key, found.lag)
                committed.add_metric(key, found.committed_offset)
        yield lag
        yield committed
