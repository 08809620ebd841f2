"""Bytes fetched from object storage for readers sharing the block cache.

N readers (``--readers``, 4, 16 and 64) each read a stream of their own
from its start, round-robin, one fetch each a round, with a pause between
rounds (``--pauses-ms``, 0, 50 and 300: slow consumers, or a loaded
machine's slow rounds). Every stream holds two stream objects of some
80 KB (1 KiB blocks); the block cache holds a third of all of them, so the
readers' read-ahead must share it: read-ahead one reader's window pushes
out of the cache before it is read is fetched again. The store is in
memory, each GET held ``--get-ms`` (an object store's round trip), and
every GET of a data object is recorded.

A second shape (``--shared-readers``, 2, 4 and 8): that many readers of
ONE stream of eight such objects, at positions spread evenly over it
(consumer groups or replay jobs of one topic, far apart), each reading its
part of the stream up to where the next one started, round-robin as
above, the block cache a third of the stream's objects.

Figures per (shape, readers, pause): ``fetched_vs_objects`` (bytes all GETs
fetched over the objects' bytes: 1.0 is each byte once, index reads
included), ``gets_per_mib`` (of the objects' bytes), ``evicted_unread``
(blocks fetched ahead and evicted unread, where the cache counts them)
``held_vs_cache`` (the most bytes the cached blocks kept alive, sampled
after every round, over the cache's size: a block is a view of the GET
that fetched it and keeps all of it, where the cache can report that) and
the seconds the reads took. Run it with the tree to measure first on
PYTHONPATH; base and head in turns.

    python bench/read_share_bench.py [--readers 4,16,64] [--shared-readers 2,4,8]
                                     [--pauses-ms 0,50,300] [--get-ms 1]
                                     [--quick] [--json]
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import _harness

from s3stream import StreamStore, StreamStoreConfig
from s3stream.block_cache import BlockCache
from s3stream.store import MemoryStore
from s3stream.uploader import OBJECT_PREFIX

KiB = 1024
MiB = 1024 * KiB
BATCHES = 700
"""100-byte batches per upload: a stream object of some 80 KB, larger than
the 64 KiB tail an index read takes."""
UPLOADS = 2
SHARED_UPLOADS = 8
"""Stream objects of the one stream the shared shape's readers read."""
FETCH_BYTES = 8 * KiB
CACHE_BYTES_PER_READER = 48 * KiB
"""A third of a reader's 160 KB: whole-object read-ahead for all does not fit."""
CONFIG = StreamStoreConfig(
    upload_interval_s=3600,
    compaction_interval_s=3600,
    stream_object_bytes=1,
    block_bytes=KiB,
    log_cache_bytes=0,
    readahead_bytes=256 * KiB,
    readahead_span_bytes=4 * KiB,
    remote_fetch_max_wait_ms=60_000,
)


class RecordingStore(MemoryStore):
    """Records every GET of a data object, each held ``get_s``."""

    def __init__(self, get_s: float) -> None:
        super().__init__()
        self.get_s = get_s
        self.recording = False
        self.gets = 0
        self.fetched = 0
        self._lock = threading.Lock()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        data = super().get(key, start, end)
        if self.recording and key.startswith(OBJECT_PREFIX):
            with self._lock:
                self.gets += 1
                self.fetched += len(data)
            threading.Event().wait(self.get_s)
        return data


def main() -> None:
    parser = _harness.parser(__doc__, quick="4 and 16 readers, pauses of 0 and 300 ms")
    parser.add_argument("--readers", default="4,16,64")
    parser.add_argument("--shared-readers", default="2,4,8")
    parser.add_argument("--pauses-ms", default="0,50,300")
    parser.add_argument("--get-ms", type=float, default=1.0)
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    readers = [4, 16] if args.quick else [int(n) for n in args.readers.split(",")]
    shared = [int(n) for n in args.shared_readers.split(",") if n]
    pauses = [0, 300] if args.quick else [int(p) for p in args.pauses_ms.split(",")]
    with _harness.scratch(args.dir, "tidelog-read-share-") as scratch:
        results = run(scratch, readers, pauses, args.get_ms / 1000, shared)
    _harness.report(results, args.json, print_table)


def run(
    scratch: Path,
    readers: list[int],
    pauses_ms: list[int],
    get_s: float,
    shared_readers: list[int] | None = None,
) -> dict[str, Any]:
    import s3stream

    results: dict[str, Any] = {
        "tree": str(Path(s3stream.__file__).resolve().parent.parent),
        "get_ms": get_s * 1000,
        "load_before": os.getloadavg()[0],
        "runs": [],
    }
    for count in readers:
        bucket = RecordingStore(get_s)
        streams = _write(scratch / f"writer-{count}", bucket, count, UPLOADS)
        for pause_ms in pauses_ms:
            starts = [(stream, 0, UPLOADS * BATCHES) for stream in streams]
            results["runs"].append(
                _read(scratch / f"reader-{count}-{pause_ms}", bucket, starts, pause_ms / 1000)
            )
    if shared_readers:
        bucket = RecordingStore(get_s)
        (stream,) = _write(scratch / "writer-shared", bucket, 1, SHARED_UPLOADS)
        for count in shared_readers:
            for pause_ms in pauses_ms:
                results["runs"].append(
                    _read(
                        scratch / f"reader-shared-{count}-{pause_ms}",
                        bucket,
                        _spread(stream, count),
                        pause_ms / 1000,
                    )
                )
    results["load_after"] = os.getloadavg()[0]
    return results


def _spread(stream: int, count: int) -> list[tuple[int, int, int]]:
    """``count`` readers of ``stream`` at positions spread evenly over it,
    each reading up to where the next starts (the first from the start;
    the others inside an object, not at its first offset)."""
    total = SHARED_UPLOADS * BATCHES
    starts = [0] + [i * total // count + 10 for i in range(1, count)]
    return list(zip([stream] * count, starts, [*starts[1:], total], strict=True))


def _write(directory: Path, bucket: RecordingStore, count: int, uploads: int) -> list[int]:
    with StreamStore.open(directory, bucket, CONFIG) as writer:
        streams = []
        for _ in range(count):
            stream = writer.create_stream()
            writer.open_stream(stream, 1)
            streams.append(stream)
        for _ in range(uploads):
            for stream in streams:
                for _ in range(BATCHES):
                    base = writer.next_offset(stream)
                    writer.append(stream, base, base, base.to_bytes(8, "big") * 12 + b"....")
            if not writer.flush(timeout=120):
                raise RuntimeError("the writer's uploads did not finish")
    return streams


def _read(
    directory: Path, bucket: RecordingStore, readers: list[tuple[int, int, int]], pause_s: float
) -> dict[str, Any]:
    """Reads each (stream, start, end) of ``readers`` round-robin, one
    fetch a reader a round."""
    streams = {stream for stream, _, _ in readers}
    # Some third of the objects' bytes, whatever the shape.
    cache_bytes = len(streams) * CACHE_BYTES_PER_READER
    if len(streams) < len(readers):
        cache_bytes = SHARED_UPLOADS // UPLOADS * CACHE_BYTES_PER_READER
    config = replace(CONFIG, block_cache_bytes=cache_bytes)
    with StreamStore.open(directory, bucket, config) as reader:
        object_bytes = sum(meta.size for meta in reader.manifest.state.objects.values())
        bucket.recording, bucket.gets, bucket.fetched = True, 0, 0
        started = time.perf_counter()
        positions = {i: start for i, (_, start, _) in enumerate(readers)}
        read = 0
        held_peak = 0
        while positions:
            for i, offset in list(positions.items()):
                stream, _, end = readers[i]
                result = reader.fetch(stream, offset, FETCH_BYTES)
                read += sum(
                    max(0, min(batch.end_offset, end) - max(batch.base_offset, offset))
                    for batch in result.batches
                )
                if result.next_offset >= end:
                    del positions[i]
                else:
                    positions[i] = result.next_offset
            held_peak = max(held_peak, _held_bytes(reader.block_cache))
            if positions:
                threading.Event().wait(pause_s)
        seconds = time.perf_counter() - started
        bucket.recording = False
        evicted = getattr(reader.block_cache, "evicted_unread", None)
    wanted = sum(end - start for _, start, end in readers)
    if read != wanted:
        raise RuntimeError(f"read {read} offsets of {wanted}")
    return {
        "shape": "own streams" if len(streams) == len(readers) else "one stream",
        "readers": len(readers),
        "pause_ms": round(pause_s * 1000),
        "cache_bytes": config.block_cache_bytes,
        "object_bytes": object_bytes,
        "fetched_bytes": bucket.fetched,
        "fetched_vs_objects": round(bucket.fetched / object_bytes, 3),
        "gets": bucket.gets,
        "gets_per_mib": round(bucket.gets / (object_bytes / MiB), 1),
        "evicted_unread": evicted,
        "held_vs_cache": round(held_peak / cache_bytes, 3),
        "seconds": round(seconds, 2),
    }


def _held_bytes(cache: BlockCache) -> int:
    """The bytes the cached blocks keep alive: each batch's payload is a
    view of the buffer its block was parsed from (the GET that fetched it),
    each distinct buffer counted once. The cache's own orders are walked
    (the same in every tree measured since 0155)."""
    with cache._lock:
        entries = [*cache._read.values(), *cache._unread.values()]
    buffers: dict[int, int] = {}
    for batches, *_ in entries:
        for batch in batches:
            buffer = getattr(batch.payload, "obj", batch.payload)
            buffers[id(buffer)] = len(buffer)
    return sum(buffers.values())


def print_table(results: dict[str, Any]) -> None:
    print(f"tree {results['tree']}, GETs held {results['get_ms']} ms")
    print(f"load average {results['load_before']:.2f} before, {results['load_after']:.2f} after")
    print(
        f"{'shape':>11} {'readers':>7} {'pause ms':>8} {'fetched/objects':>15} {'GETs/MiB':>9}"
        f" {'evicted unread':>14} {'held/cache':>10} {'seconds':>8}"
    )
    for run in results["runs"]:
        evicted = "-" if run["evicted_unread"] is None else str(run["evicted_unread"])
        held = "-" if run.get("held_vs_cache") is None else f"{run['held_vs_cache']:.3f}"
        print(
            f"{run['shape']:>11} {run['readers']:>7} {run['pause_ms']:>8}"
            f" {run['fetched_vs_objects']:>15.3f} {run['gets_per_mib']:>9.1f}"
            f" {evicted:>14} {held:>10} {run['seconds']:>8.2f}"
        )


if __name__ == "__main__":
    main()
