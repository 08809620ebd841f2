"""What a lookup by header reads, against the topic's size and a full scan.

    python bench/lookup_bench.py [--quick] [--json] [--records N] [--full] [--s3]

A topic of N records (``--full``: 10 million) indexes the header
``correlation-id`` (``tidelog.index.headers``); each id is on 4 records
spread over the whole log (the worst case: 4 batches far apart). After the
upload and compaction, the engine is opened again (nothing cached) and one
id is looked up with ``Engine.lookup``; then, opened again, the same
answer is found by a full scan (fetch every batch, decode, check the
header), what a reader does without the index; and, opened again, the
lookup as objects before format version 4 answer it (each matching
batch's whole block read, no batch alone): the baseline of reading only
the matching batches. A wrapper on the object store counts the GETs and
bytes each reads. ``lookup_bytes_share`` is the
lookup's bytes over the topic's stored bytes (aim: under 1%);
``scan_vs_lookup`` is the scan's time over the lookup's,
``blocks_vs_lookup_bytes`` the whole-block lookup's bytes over the lookup's. ``--s3`` runs
against moto's S3 server on loopback instead of a local directory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _harness

import native
from engine import Engine, EngineConfig
from native.buffers import BytesLike
from native.records import RecordSpec
from s3stream import StreamStoreConfig
from s3stream.lookup import Candidates, committed_batches
from s3stream.store import LocalStore, ObjectStore, S3Store
from s3stream.store.base import ObjectData, ObjectInfo

HEADER = "correlation-id"
PER_ID = 4
BATCH_RECORDS = 500
VALUE_BYTES = 100
FULL_RECORDS = 10_000_000


class CountingStore(ObjectStore):
    """Delegates to ``inner``, counting GETs and the bytes they return."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.conditional_writes = inner.conditional_writes
        self.gets = 0
        self.got = 0
        self._lock = threading.Lock()

    def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        data = self.inner.get(key, start, end)
        with self._lock:
            self.gets += 1
            self.got += len(data)
        return data

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        data, version = self.inner.get_versioned(key)
        with self._lock:
            self.gets += 1
            self.got += len(data)
        return data, version

    def put(self, key: str, data: ObjectData) -> str:
        return self.inner.put(key, data)

    def put_if_absent(self, key: str, data: BytesLike) -> str:
        return self.inner.put_if_absent(key, data)

    def put_if_version(self, key: str, data: BytesLike, version: str) -> str:
        return self.inner.put_if_version(key, data, version)

    def head(self, key: str) -> ObjectInfo:
        return self.inner.head(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    def close(self) -> None:
        self.inner.close()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.gets, self.got


CONFIG = EngineConfig(store=StreamStoreConfig(compaction_interval_s=3600))


def _fill(directory: Path, store: ObjectStore, records: int) -> None:
    ids = max(1, records // PER_ID)
    value = os.urandom(VALUE_BYTES)
    with Engine.open(directory, store, config=CONFIG) as engine:
        engine.create_topic("memory", 1, configs={"tidelog.index.headers": HEADER})
        for first in range(0, records, BATCH_RECORDS):
            specs = [
                RecordSpec(0, None, value, ((HEADER, b"c-%09d" % (i % ids)),))
                for i in range(first, min(records, first + BATCH_RECORDS))
            ]
            engine.produce("memory", 0, native.encode_batch(specs))
        assert engine.flush(600)
        for _ in range(100):  # merge until nothing is left to merge
            before = len(store.list("objects/"))
            engine.store.compact()
            if len(store.list("objects/")) == before:
                break


def _scan(engine: Engine, value: bytes) -> list[int]:
    """Without the index: every batch fetched, decoded and checked."""
    found: list[int] = []
    offset, end = engine.offsets("memory", 0)
    while offset < end:
        fetched = engine.fetch("memory", 0, offset, 4 << 20)
        for batch in fetched.records:
            found += [
                r.offset for r in native.decode_records(batch) if (HEADER, value) in r.headers
            ]
        offset = fetched.next_offset
    return found


def _lookup_in_blocks(engine: Engine, value: bytes) -> list[int]:
    """The lookup as a version 3 object answers it: the index's candidates,
    each read in its whole block (their spans left out)."""
    partition = engine.partition("memory", 0)
    store = engine.store
    listed = store.header_candidates(partition.stream_id, HEADER, value)
    assert listed.scans == []
    candidates = Candidates(listed.offsets, [], listed.tails)
    found: list[int] = []
    for batch in committed_batches(
        store.store, store.manifest.state, partition.stream_id, candidates
    ):
        found += [
            r.offset
            for r in native.decode_records(bytes(batch.payload))
            if (HEADER, value) in r.headers
        ]
    return sorted(set(found))


def _measure(directory: Path, store: CountingStore, records: int) -> dict[str, Any]:
    _fill(directory, store, records)
    wanted = b"c-%09d" % (max(1, records // PER_ID) // 2)
    results: dict[str, Any] = {"records": records}
    with Engine.open(directory, store, config=CONFIG) as engine:
        # The live objects only: merged inputs wait out the grace period.
        topic_bytes = engine.partition("memory", 0).stored_bytes
        results["topic_bytes"] = topic_bytes
        results["objects"] = len(engine.store.manifest.state.objects)
        # The objects whole: the data, and the header index regions beside it.
        results["objects_bytes"] = sum(o.size for o in engine.store.manifest.state.objects.values())
        gets, got = store.counts()
        start = time.perf_counter()
        found = [r.ref.offset for r in engine.lookup("memory", HEADER, wanted)]
        results["lookup_s"] = time.perf_counter() - start
        results["lookup_gets"] = store.counts()[0] - gets
        results["lookup_bytes"] = store.counts()[1] - got
    with Engine.open(directory, store, config=CONFIG) as engine:
        gets, got = store.counts()
        start = time.perf_counter()
        scanned = _scan(engine, wanted)
        results["scan_s"] = time.perf_counter() - start
        results["scan_gets"] = store.counts()[0] - gets
        results["scan_bytes"] = store.counts()[1] - got
    with Engine.open(directory, store, config=CONFIG) as engine:
        gets, got = store.counts()
        start = time.perf_counter()
        in_blocks = _lookup_in_blocks(engine, wanted)
        results["blocks_s"] = time.perf_counter() - start
        results["blocks_gets"] = store.counts()[0] - gets
        results["blocks_bytes"] = store.counts()[1] - got
    assert found == scanned == in_blocks and len(found) == min(PER_ID, records), (found, scanned)
    results["found"] = len(found)
    results["lookup_bytes_share"] = results["lookup_bytes"] / topic_bytes
    results["scan_vs_lookup"] = results["scan_s"] / results["lookup_s"]
    results["blocks_bytes_share"] = results["blocks_bytes"] / topic_bytes
    results["blocks_vs_lookup_bytes"] = results["blocks_bytes"] / results["lookup_bytes"]
    return results


@contextmanager
def _s3(directory: Path) -> Iterator[ObjectStore]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        store = S3Store(
            "lookup-bench",
            "bench",
            endpoint_url=f"http://{host}:{port}",
            region="us-east-1",
            access_key_id="test",
            secret_access_key="test",
        )
        store.create_bucket_if_missing()
        try:
            yield store
        finally:
            store.close()
    finally:
        server.stop()


@contextmanager
def _store(directory: Path, s3: bool) -> Iterator[ObjectStore]:
    if s3:
        with _s3(directory) as store:
            yield store
    else:
        store = LocalStore(directory / "bucket")
        try:
            yield store
        finally:
            store.close()


def _print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['records']} records, {results['topic_bytes'] / 2**20:.1f} MiB in "
        f"{results['objects']} objects ({results['store']}); one id on {results['found']} records"
    )
    print(f"objects with their indexes: {results['objects_bytes'] / 2**20:.1f} MiB")
    print(f"{'':>8} {'GETs':>8} {'MiB read':>10} {'share':>8} {'seconds':>9}")
    for name in ("lookup", "blocks", "scan"):
        share = results[f"{name}_bytes"] / results["topic_bytes"]
        print(
            f"{name:>8} {results[f'{name}_gets']:>8} {results[f'{name}_bytes'] / 2**20:>10.2f} "
            f"{share:>8.2%} {results[f'{name}_s']:>9.3f}"
        )
    print(f"scan / lookup time: {results['scan_vs_lookup']:.1f}x")
    print(f"blocks / lookup bytes: {results['blocks_vs_lookup_bytes']:.1f}x")
    _harness.print_targets(
        {"lookup reads under 1% of the topic": results["lookup_bytes_share"] < 0.01}
    )


def main() -> None:
    parser = _harness.parser(__doc__, "20 thousand records")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--full", action="store_true", help=f"{FULL_RECORDS} records")
    parser.add_argument("--s3", action="store_true", help="moto's S3 server on loopback")
    parser.add_argument("--dir", help="scratch directory parent (default: a temp dir)")
    args = parser.parse_args()
    records = 20_000 if args.quick else FULL_RECORDS if args.full else args.records
    with (
        _harness.scratch(args.dir, "lookup-bench-") as directory,
        _store(directory, args.s3) as inner,
    ):
        results = _measure(directory / "data", CountingStore(inner), records)
    results["store"] = "s3 (moto)" if args.s3 else "local directory"
    results["cpus"] = _harness.cpus()
    _harness.report(results, args.json, _print_table)


if __name__ == "__main__":
    main()
