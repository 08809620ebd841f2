"""What a catalog snapshot costs its writers: how long the catalog's lock
is held by the write that makes a snapshot due, and how many WAL syncs
the snapshot takes, for catalogs of ``--sizes`` MiB of ACLs.

    python bench/catalog_snapshot_bench.py [--sizes 16,64] [--segment-kib 65536]
                                           [--rounds 3] [--block-at wire|packed]
                                           [--quick] [--json]

Each size gets an engine of its own (``--segment-kib`` WAL segments, so
appends of a little less), its catalog filled by applying ACL records of
1 KiB principals to its state (no writes), then ``--rounds`` snapshots,
each made due and written by one ``producer_ids`` record from this
thread. The lock is timed around every hold (it is replaced by a lock
that times itself), so the figures are the revision's own:

- ``<size>.lock_s``: the median over the rounds of the lock's total hold
  during the write, its snapshot included; ``lock_max_s`` the longest
  single hold;
- ``<size>.write_s``: the median time of the write, which returns once
  its snapshot is durable and trimmed to;
- ``<size>.syncs``: the WAL's syncs during the write (the median), which
  the machine's load does not change;
- ``<size>.records``: the snapshot's records (1, or its opening and parts);
- ``<size>.block_wait_s``: the median time a producer id that starts a
  new block (InitProducerId's, on the event loop) takes when it is asked
  for as the packing of a snapshot begins, the snapshot made due by an
  ACL written on another thread; ``block_wait_max_s`` the longest, and
  ``pack_s`` the median time from the packing's start to the end of that
  write (its snapshot written and trimmed to), for scale. With
  ``--block-at packed`` the id is asked for once the state's wire form is
  made, as msgpack begins to pack it (a C call that holds the GIL unless
  it is packed in pieces).

Run it on two revisions in turns (bench/compare.py, or each tree's copy
with its own PYTHONPATH) for ratios.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import replace
from types import TracebackType
from typing import Any

import _harness

import engine
from engine import catalog as catalog_module
from engine.catalog import Catalog
from s3stream import StreamStoreConfig

KIB = 1024
MIB = 1024 * KIB


class TimedLock:
    """A lock that adds up how long it was held, and its longest hold."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = 0.0
        self.holds: list[float] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        taken = self._lock.acquire(blocking, timeout)
        if taken:
            self._since = time.perf_counter()
        return taken

    def release(self) -> None:
        self.holds.append(time.perf_counter() - self._since)
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _acl(i: int) -> list[Any]:
    return [2, f"topic-{i}", 3, f"User:{i:08d}" + "p" * 1000, "*", 3, 3]


def fill(catalog: Catalog, size: int) -> int:
    """ACLs applied to the state (not written) until it packs to ``size``."""
    i = 0
    while True:
        batch = [_acl(n) for n in range(i, i + 4096)]
        catalog.state.apply(["acls_add", batch])
        i += len(batch)
        if i * 1060 >= size:
            return i


def measure(size: int, segment: int, rounds: int, scratch: Any) -> dict[str, float]:
    config = engine.EngineConfig()
    config = replace(config, store=replace(StreamStoreConfig(), wal_segment_bytes=segment))
    with engine.open(scratch / f"e{size}", config=config) as opened:
        catalog = opened.catalog
        fill(catalog, size)
        timed = TimedLock()
        catalog._lock = timed  # type: ignore[assignment]
        wal = opened.store.wal
        locks, longest, writes, syncs, records = [], [], [], [], []
        for n in range(rounds):
            catalog._since_snapshot = catalog_module.SNAPSHOT_EVERY
            catalog._bytes_since_snapshot = catalog._snapshot_bytes
            start_offset = opened.store.next_offset(catalog.stream_id)
            timed.holds.clear()
            before = wal.stats.syncs
            started = time.perf_counter()
            catalog.append(["producer_ids", 10**9 + n])
            writes.append(time.perf_counter() - started)
            syncs.append(wal.stats.syncs - before)
            locks.append(sum(timed.holds))
            longest.append(max(timed.holds))
            records.append(opened.store.next_offset(catalog.stream_id) - start_offset - 1)
            if opened.store.start_offset(catalog.stream_id) <= start_offset:
                raise SystemExit(f"round {n}: the snapshot was not trimmed to")
    return {
        "lock_s": statistics.median(locks),
        "lock_max_s": statistics.median(longest),
        "write_s": statistics.median(writes),
        "syncs": statistics.median(syncs),
        "records": statistics.median(records),
    }


def _write_acl(catalog: Catalog, i: int, ended: list[float]) -> None:
    """An ACL written (a snapshot made due by it written before this
    returns, off any event loop), and when it was."""
    catalog.append(["acls_add", [_acl(i)]])
    ended.append(time.perf_counter())


def measure_block_wait(
    size: int, segment: int, rounds: int, scratch: Any, at_packed: bool = False
) -> dict[str, float]:
    """How long a new block of producer ids waits for a snapshot being
    packed (see the module's docstring); only what both this revision's
    catalog and earlier ones have is used, so one copy of this script
    measures either, by its PYTHONPATH."""
    config = engine.EngineConfig()
    config = replace(config, store=replace(StreamStoreConfig(), wal_segment_bytes=segment))
    with engine.open(scratch / f"b{size}", config=config) as opened:
        catalog = opened.catalog
        filled = fill(catalog, size)
        state = catalog.state
        to_wire = state.to_wire
        waits, packs = [], []
        for n in range(rounds):
            packing = threading.Event()

            def packed(started: threading.Event = packing) -> dict[str, Any]:
                # The next id past the state's end: the block it starts is
                # written while the state is being packed.
                catalog._next_producer_id = state.producer_ids_end
                if not at_packed:
                    started.set()
                wire = to_wire()
                started.set()
                return wire

            state.to_wire = packed  # type: ignore[method-assign]
            catalog._since_snapshot = catalog_module.SNAPSHOT_EVERY
            catalog._bytes_since_snapshot = catalog._snapshot_bytes
            ended: list[float] = []
            writer = threading.Thread(target=_write_acl, args=(catalog, filled + n, ended))
            writer.start()
            if not packing.wait(600):
                raise SystemExit(f"round {n}: no snapshot was made due")
            started = time.perf_counter()
            catalog.allocate_producer_id()
            waits.append(time.perf_counter() - started)
            writer.join()
            state.to_wire = to_wire  # type: ignore[method-assign]
            packs.append(ended[0] - started)
    return {
        "block_wait_s": statistics.median(waits),
        "block_wait_max_s": max(waits),
        "pack_s": statistics.median(packs),
    }


def main() -> None:
    parser = _harness.parser(__doc__, "one 4 MiB catalog, one round")
    parser.add_argument("--sizes", default="16,64", help="catalog sizes in MiB")
    parser.add_argument("--segment-kib", type=int, default=64 * KIB)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scratch", default=None)
    parser.add_argument("--block-at", choices=["wire", "packed"], default="wire")
    args = parser.parse_args()
    sizes = [4] if args.quick else [int(s) for s in args.sizes.split(",")]
    rounds = 1 if args.quick else args.rounds
    results: dict[str, Any] = {}
    with _harness.scratch(args.scratch, "catalog-snapshot-bench-") as scratch:
        for size in sizes:
            row = measure(size * MIB, args.segment_kib * KIB, rounds, scratch)
            at_packed = args.block_at == "packed"
            segment = args.segment_kib * KIB
            waits = measure_block_wait(size * MIB, segment, rounds, scratch, at_packed)
            row.update(waits)
            results[f"{size}MiB"] = row

    def table(found: dict[str, Any]) -> None:
        print(
            f"{'catalog':>8} {'lock s':>8} {'max s':>8} {'write s':>8} {'syncs':>6} {'records':>8}"
            f" {'block s':>8} {'max s':>8} {'pack s':>8}"
        )
        for name, row in found.items():
            print(
                f"{name:>8} {row['lock_s']:8.3f} {row['lock_max_s']:8.3f} {row['write_s']:8.3f}"
                f" {row['syncs']:6.0f} {row['records']:8.0f} {row['block_wait_s']:8.4f}"
                f" {row['block_wait_max_s']:8.4f} {row['pack_s']:8.3f}"
            )

    _harness.report(results, args.json, table)


if __name__ == "__main__":
    main()
