"""How long an upload holds the stream store's lock, and what appends wait.

    python bench/upload_lock_hold.py [--tree DIR]... [--streams N]... [--block-mib N]...
        [--cache-mib N]... [--uploads N] [--rounds N] [--cache-only] [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), a child process with that tree on its
``PYTHONPATH`` opens a StreamStore (a local directory store, the WAL
fsynced), with the store's lock replaced by one that times every hold, and
appends 100-byte batches round robin over ``--streams`` streams from one
thread, as fast as it can, until ``--uploads`` blocks of ``--block-mib`` MiB
(``upload_bytes``) are uploaded after the first; the log cache holds two
blocks, so every upload evicts one. Trees take turns, every
(streams, block) pair in each of ``--rounds`` rounds.

Reported per run:

- the read: the holds in which the upload reads its block's batches out of
  the log cache (``Uploader._prepare`` on a tree that reads in one hold,
  ``read_block_shares`` on one that reads in groups): the longest hold of
  any upload, and the total an upload (the median over uploads);
- the commit's end: the holds of ``Uploader._upload`` (``mark_uploaded``
  and the eviction it makes, in that hold or a group a hold in
  ``evict_in_groups``), the longest, and the total an upload (the median);
- appends: each ``submit`` call's time (the lock's wait is in it; the WAL's
  fsync is not) from the second block on, while uploads run: p50, p99,
  p99.9 and max, and the appends a second.

And the log cache alone (``--cache-mib``; ``--cache-only``: nothing else),
in the measuring thread's CPU time, the collector off: three blocks of 100-byte
batches over ``--streams`` streams; the third block's read (its longest hold,
its total, its holds); the second block's end offsets read for the
trace (``ends_of`` in one hold, or ``read_block_ends`` a group of streams
a hold: the longest hold and the total); an upload's mark_uploaded
evicting the first block, as the tree's uploader takes the lock for it:
the longest hold, the holds' total and count, the freeing of the evicted
batches after them, where the tree hands them back, and the whole
eviction's CPU (to set beside a tree that frees them under the lock,
whose hold is the whole); and, with a
real lock, the waits of a thread taking it every 0.1 ms (as appends
would) while another reads the block five times (wall time: the longest
and the p99.9).

Every figure is beside the first tree's from the same round, with the load
average at the run's end; the freeing after the lock alone has no ratio (a
tree that frees under the lock times an empty ``del`` there).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from time import perf_counter
from typing import Any

import _harness

HERE = Path(__file__).resolve().parents[1]
BATCH_BYTES = 100
READ_SITES = ("_prepare", "read_block_shares")
"""Where the read's holds end: main's one hold, or a hold a group."""
END_SITES = ("_upload", "evict_in_groups")
"""Where the commit's end's holds end: ``mark_uploaded`` and a tree's
eviction in one hold, or an eviction a group a hold after it."""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(data_dir: str, streams: int, block_mib: int, uploads: int) -> dict[str, Any]:
    """One run, in this process, on whichever tree is on the path."""
    from s3stream import StreamStore, StreamStoreConfig, store_state
    from s3stream.uploader import Uploader

    holds: list[tuple[int, str, float]] = []
    """(block id, the function the hold ended in, seconds)"""
    current = threading.local()

    class TimedLock:
        """The store's lock, each hold timed while an upload's code holds it."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._since = 0.0

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            got = self._lock.acquire(blocking, timeout)
            if got:
                self._since = perf_counter()
            return got

        def _note(self, site: str) -> None:
            block = getattr(current, "block", None)
            if block is not None:
                holds.append((block, site, perf_counter() - self._since))

        def release(self) -> None:  # a Condition's wait, or a release by hand
            self._note("release")
            self._lock.release()

        def __enter__(self) -> bool:
            return self.acquire()

        def __exit__(self, *exc: object) -> None:
            self._note(sys._getframe(1).f_code.co_name)
            self._lock.release()

    def install(state: Any) -> None:
        state.lock = TimedLock()
        state.changed = threading.Condition(state.lock)  # type: ignore[arg-type]

    original_init = store_state.StoreState.__init__

    def timed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        install(self)

    store_state.StoreState.__init__ = timed_init  # type: ignore[method-assign]

    def marked(method: Any) -> Any:
        def run(self: Any, block: Any, *args: Any) -> Any:
            before = getattr(current, "block", None)
            current.block = block.block_id
            try:
                return method(self, block, *args)
            finally:
                current.block = before

        return run

    Uploader._prepare = marked(Uploader._prepare)  # type: ignore[method-assign]
    Uploader._upload = marked(Uploader._upload)  # type: ignore[method-assign]

    block_bytes = block_mib << 20
    config = StreamStoreConfig(
        upload_bytes=block_bytes, log_cache_bytes=2 * block_bytes, upload_interval_s=600.0
    )
    store = StreamStore.open(data_dir, config=config)
    try:
        ids = store.create_streams(streams)
        for stream_id in ids:
            store.open_stream(stream_id, 1)
        offsets = dict.fromkeys(ids, 0)
        payload = os.urandom(BATCH_BYTES)
        warm = block_bytes // BATCH_BYTES  # the first block: no upload runs yet
        waits: list[float] = []
        appended = 0
        started = 0.0
        while store.stats.uploads < uploads + 1:
            for stream_id in ids:
                offset = offsets[stream_id]
                before = perf_counter()
                future = store.submit(stream_id, offset, offset, payload)
                waited = perf_counter() - before
                offsets[stream_id] = offset + 1
                appended += 1
                if appended > warm:
                    waits.append(waited)
                elif appended == warm:
                    started = perf_counter()
                if appended % 20_000 == 0:
                    future.result()  # bounds what is in flight
        elapsed = perf_counter() - started
    finally:
        store.close(flush=False)
    measured = {block for block, _, _ in holds}
    blocks = sorted(measured)[: uploads + 1]
    read_total = []
    read_longest = 0.0
    read_holds = 0
    upload_longest = 0.0
    upload_total = []
    for block in blocks:
        reads = [s for b, site, s in holds if b == block and site in READ_SITES]
        if reads:
            read_total.append(sum(reads))
            read_longest = max(read_longest, *reads)
            read_holds = max(read_holds, len(reads))
        ends = [s for b, site, s in holds if b == block and site in END_SITES]
        upload_longest = max([upload_longest, *ends])
        upload_total.append(sum(ends))
    return {
        "streams": streams,
        "block_mib": block_mib,
        "uploads": len(read_total),
        "read_longest_ms": read_longest * 1e3,
        "read_total_ms": statistics.median(read_total) * 1e3 if read_total else 0.0,
        "read_holds": read_holds,
        "upload_end_longest_ms": upload_longest * 1e3,
        "upload_end_total_ms": statistics.median(upload_total) * 1e3 if upload_total else 0.0,
        "append_p50_us": _quantile(waits, 0.5) * 1e6,
        "append_p99_us": _quantile(waits, 0.99) * 1e6,
        "append_p999_us": _quantile(waits, 0.999) * 1e6,
        "append_max_us": max(waits) * 1e6,
        "appends_per_s": len(waits) / elapsed,
    }


def measure_cache(streams: int, block_mib: int) -> dict[str, Any]:
    """The log cache alone, in this thread's CPU time (which the machine's
    load stretches far less than a wall clock): three blocks of
    ``block_mib`` MiB of 100-byte batches over ``streams`` streams, made as
    the produce path makes them, the collector off after; the third
    block's read, in one hold or
    group by group as the tree does it, and the second's mark_uploaded
    with the eviction of the first (and, where the tree hands the evicted
    batches back, their freeing after it)."""
    import gc
    from time import thread_time

    import native
    from s3stream.log_cache import LogCache
    from s3stream.objects import StoredBatch

    block_bytes = block_mib << 20
    cache = LogCache(4 * block_bytes)
    per_block = block_bytes // BATCH_BYTES
    blocks = []
    for _ in range(3):
        request = bytearray(os.urandom(BATCH_BYTES * 1000))
        view = memoryview(request)
        for i in range(per_block):
            at = (i % 1000) * BATCH_BYTES
            if at == 0:
                request = bytearray(os.urandom(BATCH_BYTES * 1000))
                view = memoryview(request)
            payload = view[at : at + BATCH_BYTES]
            cache.add(
                1 + i % streams, native.untracked_record(StoredBatch, i, i + 1, payload, None)
            )
        blocks.append(cache.seal())
    gc.collect()
    gc.disable()  # its pauses are the collector's, measured elsewhere (0152, 0156)
    holds: list[float] = []

    class TimedLock:
        def __enter__(self) -> None:
            self._since = thread_time()

        def __exit__(self, *exc: object) -> None:
            holds.append(thread_time() - self._since)

    ends_of, evict = _ends_and_eviction()
    try:
        from s3stream.block_shares import read_block_shares
    except ImportError:  # a tree that reads a block in one hold

        def read(lock: Any) -> None:
            with lock:
                cache.batches_of(blocks[2])
    else:

        def read(lock: Any) -> None:
            read_block_shares(lock, cache, blocks[2])

    read(TimedLock())
    waits = _waits_beside(read)
    read_holds = holds[:]
    holds.clear()
    ends_of(TimedLock(), cache, blocks[1])
    ends_holds = holds[:]
    holds.clear()
    cache.mark_uploaded(blocks[0])  # under the bound: nothing evicted yet
    cache.max_bytes = cache.size - 1  # the next upload evicts the oldest block
    since = thread_time()
    evict(TimedLock(), cache, blocks[1])
    evict_total = thread_time() - since
    return {
        "streams": streams,
        "block_mib": block_mib,
        "read_longest_ms": max(read_holds) * 1e3,
        "read_total_ms": sum(read_holds) * 1e3,
        "read_holds": len(read_holds),
        "ends_longest_ms": max(ends_holds) * 1e3,
        "ends_total_ms": sum(ends_holds) * 1e3,
        "evict_hold_ms": max(holds) * 1e3,
        "evict_holds_ms": sum(holds) * 1e3,
        "evict_holds": len(holds),
        "freed_after_ms": (evict_total - sum(holds)) * 1e3,
        "evict_total_ms": evict_total * 1e3,
        "contended_longest_wait_ms": waits[-1] * 1e3,
        "contended_p999_wait_ms": waits[int(0.999 * len(waits))] * 1e3,
    }


def _ends_and_eviction() -> tuple[Any, Any]:
    """How the tree reads a block's ends for the trace, and marks a block
    uploaded with the eviction it brings, each taking the lock it is given
    as the uploader takes the store's: in groups of holds
    (``read_block_ends``, ``evict_in_groups``), or in one hold, the
    evicted batches freed after it (0157) or under it (before)."""
    try:
        from s3stream.block_shares import evict_in_groups, read_block_ends
    except ImportError:

        def ends_of(lock: Any, cache: Any, block: Any) -> None:
            with lock:
                cache.ends_of(block)

        def evict(lock: Any, cache: Any, block: Any) -> None:
            with lock:
                evicted = cache.mark_uploaded(block)
            del evicted

        return ends_of, evict

    def evict_in_groups_after(lock: Any, cache: Any, block: Any) -> None:
        with lock:
            cache.mark_uploaded(block)
        evict_in_groups(lock, cache)

    return read_block_ends, evict_in_groups_after


def _waits_beside(read: Any) -> list[float]:
    """The waits, sorted, of a thread that takes a real lock every 0.1 ms
    (as appends would) while another reads the block under it five times."""
    import threading

    lock = threading.Lock()
    done = threading.Event()

    def reads() -> None:
        for _ in range(5):
            read(lock)
            threading.Event().wait(0.01)
        done.set()

    reader = threading.Thread(target=reads)
    waits: list[float] = []
    reader.start()
    while not done.is_set():
        before = perf_counter()
        with lock:
            pass
        waits.append(perf_counter() - before)
        done.wait(0.0001)
    reader.join()
    return sorted(waits)


def _run(tree: Path, *args: object) -> dict[str, Any]:
    """This script run with ``args`` in a child, ``tree`` on its path; its
    JSON line."""
    return _harness.child_json(tree, __file__, *args)


def _child(tree: Path, scratch: Path, streams: int, block_mib: int, uploads: int) -> dict[str, Any]:
    data_dir = scratch / f"{tree.name}-{streams}-{block_mib}"
    try:
        return _run(tree, "--child", data_dir, streams, block_mib, uploads)
    finally:
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


FIGURES = (
    "read_longest_ms",
    "read_total_ms",
    "read_holds",
    "upload_end_longest_ms",
    "upload_end_total_ms",
    "append_p99_us",
    "append_p999_us",
    "append_max_us",
    "appends_per_s",
)


NO_RATIO = frozenset({"freed_after_ms"})
"""Figures with no counterpart on a tree that frees the evicted batches
under the lock (there the freeing is in ``evict_hold_ms``, and this times
an empty ``del``): ``evict_total_ms`` is the one to set beside it."""


CACHE_FIGURES = (
    "read_longest_ms",
    "read_total_ms",
    "read_holds",
    "ends_longest_ms",
    "ends_total_ms",
    "evict_hold_ms",
    "evict_holds_ms",
    "evict_holds",
    "freed_after_ms",
    "evict_total_ms",
    "contended_longest_wait_ms",
    "contended_p999_wait_ms",
)


def print_table(results: dict[str, Any]) -> None:
    print(f"{BATCH_BYTES}-byte batches; holds in ms, appends' submit in us")
    print("A StreamStore, wall time:")
    _print_runs(results["runs"], FIGURES)
    print("The log cache alone, thread CPU time:")
    _print_runs(results["cache_runs"], CACHE_FIGURES)


def _print_runs(runs: list[dict[str, Any]], figures: tuple[str, ...]) -> None:
    """Each run's figures; after a later tree's, its ratio to the first
    tree's of the same round and shape."""
    print(" ".join(f"{n:>17}" for n in ("round", "tree", "streams", "MiB", *figures, "loadavg")))
    for run in runs:
        base = next(
            r
            for r in runs
            if (r["round"], r["streams"], r["block_mib"])
            == (run["round"], run["streams"], run["block_mib"])
        )
        cells = [str(run["round"]), Path(run["tree"]).name, str(run["streams"])]
        cells.append(str(run["block_mib"]))
        cells += _harness.figure_cells(run, base, figures, NO_RATIO)
        cells.append(f"{run['loadavg']:.1f}")
        print(" ".join(f"{cell:>17}" for cell in cells))


def main() -> None:
    if sys.argv[1:2] == ["--cache-child"]:
        print(json.dumps(measure_cache(int(sys.argv[2]), int(sys.argv[3]))))
        return
    if sys.argv[1:2] == ["--child"]:
        data_dir, streams, block_mib, uploads = sys.argv[2:6]
        print(json.dumps(measure(data_dir, int(streams), int(block_mib), int(uploads))))
        return
    parser = _harness.parser(__doc__, "100 streams, 1 MiB blocks, two uploads, one round")
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--streams", action="append", type=int, default=[])
    parser.add_argument("--block-mib", action="append", type=int, default=[])
    parser.add_argument("--cache-mib", action="append", type=int, default=[])
    parser.add_argument("--uploads", type=int, default=3)
    parser.add_argument("--cache-only", action="store_true", help="the log cache alone")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    streams = args.streams or [1000, 10_000]
    blocks = args.block_mib or [8, 32]
    cache_blocks = args.cache_mib or [8, 32]
    if args.quick:
        streams, blocks, args.uploads, args.rounds = [100], [1], 1, 1
        cache_blocks = [1]
    trees = args.tree or [HERE]
    runs: list[dict[str, Any]] = []
    cache_runs: list[dict[str, Any]] = []
    for round_number in range(args.rounds):
        for count in streams:
            for block_mib in cache_blocks:
                for tree in trees:
                    cached = _run(tree, "--cache-child", count, block_mib)
                    cache_runs.append(
                        {"round": round_number, "tree": str(tree), **cached,
                         "loadavg": os.getloadavg()[0]}
                    )  # fmt: skip
    with _harness.scratch(None, "upload-lock-hold-") as scratch:
        for round_number in range(0 if args.cache_only else args.rounds):
            for count in streams:
                for block_mib in blocks:
                    for tree in trees:
                        run = _child(tree, scratch, count, block_mib, args.uploads)
                        runs.append(
                            {"round": round_number, "tree": str(tree), **run,
                             "loadavg": os.getloadavg()[0]}
                        )  # fmt: skip
    results = {"batch_bytes": BATCH_BYTES, "runs": runs, "cache_runs": cache_runs}
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
