"""History for bench/scale_bench.py, written fast: straight into the stream
store of a data directory, not through produce.

Topics are created by an embedded engine (so the catalog knows them), the
engine is closed, and a StreamStore opened on the same data directory
appends ready-made Kafka record batches (64 records of 1 KiB, the base
offset patched into each copy: the batch CRC does not cover it) to the
topics' streams, with a WAL that does not fsync and uploads every
``object_bytes``. An engine then opens the directory once and closes it
(``settle``), checkpointing each partition's state. What comes out is what
produce would have left: objects, a manifest and checkpoints that a server
opened on the directory serves to any Kafka client.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import struct
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

RECORD_BYTES = 1024
BATCH_RECORDS = 64
IN_FLIGHT = 256
"""Appends queued at once: enough to keep the WAL's group commit busy."""
COMMIT_SAMPLES = 5
"""Manifest commits timed once the history is written (the median is kept)."""


class History(NamedTuple):
    bytes: int
    objects: int
    write_s: float
    manifest_bytes: int
    """The manifest's full state, as its checkpoint encodes it."""
    commit_ms: float
    """The median time of one manifest commit over that state."""


def create_topics(data_dir: Path, topics: dict[str, int]) -> dict[str, list[int]]:
    """Creates each topic with its partition count; their streams, by topic."""
    import engine
    from engine.engine import EngineConfig
    from s3stream import StreamStoreConfig

    config = EngineConfig(store=StreamStoreConfig(wal_preallocate=False))
    with engine.open(data_dir, config=config) as opened:
        for name, partitions in topics.items():
            opened.create_topic(name, partitions)
        return {
            name: [opened.partition(name, p).stream_id for p in range(partitions)]
            for name, partitions in topics.items()
        }


def settle(data_dir: Path) -> float:
    """Opens an engine on the directory once and closes it: the open reads
    every batch header the history added (no checkpoint covers them, as
    produce's would), and the close checkpoints, so a server opened after
    starts as it would after real produce. Returns the open's seconds."""
    import engine
    from engine.engine import EngineConfig
    from s3stream import StreamStoreConfig

    config = EngineConfig(store=StreamStoreConfig(wal_preallocate=False))
    started = time.perf_counter()
    opened = engine.open(data_dir, config=config)
    seconds = time.perf_counter() - started
    opened.close()
    return seconds


def batch_template() -> bytearray:
    import native

    value = os.urandom(RECORD_BYTES)
    now_ms = int(time.time() * 1000)
    return bytearray(
        native.encode_batch([(now_ms, None, value) for _ in range(BATCH_RECORDS)], base_offset=0)
    )


def write_history(data_dir: Path, streams: list[int], total: int, object_bytes: int) -> History:
    """Appends ``total`` bytes of record values across ``streams``, round
    robin, in objects of about ``object_bytes``; returns what it made."""
    from s3stream import StreamStore, StreamStoreConfig

    config = dataclasses.replace(
        StreamStoreConfig(),
        durability="none",
        wal_preallocate=False,
        upload_bytes=object_bytes,
        upload_interval_s=3600.0,
        stream_object_bytes=max(object_bytes, 1),
        log_cache_bytes=max(4 * object_bytes, 16 * 2**20),
        max_unuploaded_bytes=max(8 * object_bytes, 64 * 2**20),
        compaction_interval_s=3600.0,
    )
    template = batch_template()
    pack = struct.Struct(">q").pack_into
    batches = max(1, total // (RECORD_BYTES * BATCH_RECORDS))
    started = time.perf_counter()
    store = StreamStore.open(data_dir, None, config)
    try:
        for stream in streams:
            store.open_stream(stream, 0)
        next_offset = {stream: store.end_offset(stream) for stream in streams}
        pending: deque[Future[int]] = deque()
        for index in range(batches):
            stream = streams[index % len(streams)]
            base = next_offset[stream]
            payload = bytearray(template)
            pack(payload, 0, base)
            pending.append(store.submit(stream, base, base + BATCH_RECORDS - 1, bytes(payload)))
            next_offset[stream] = base + BATCH_RECORDS
            if len(pending) >= IN_FLIGHT:
                pending.popleft().result(timeout=300)
        for future in pending:
            future.result(timeout=300)
        if not store.flush(timeout=600):
            raise RuntimeError("the history's last objects were not uploaded within 600 s")
        write_s = time.perf_counter() - started
        commits = []
        for _ in range(COMMIT_SAMPLES):
            began = time.perf_counter()
            store.delete_stream(store.create_stream())  # two commits over the whole state
            commits.append((time.perf_counter() - began) / 2)
        from s3stream.manifest_records import encode_record

        state = store.manifest.state
        manifest_bytes = len(encode_record(state.to_wire()))
        objects = len(state.objects)
    finally:
        store.close()
    return History(
        bytes=batches * BATCH_RECORDS * RECORD_BYTES,
        objects=objects,
        write_s=round(write_s, 3),
        manifest_bytes=manifest_bytes,
        commit_ms=round(statistics.median(commits) * 1000, 3),
    )
