"""Remote acknowledgements: how long an append waits for its object's commit, beside the PUTs.

    python bench/remote_ack_bench.py [--appends 3000] [--appenders 8] [--streams N] [--rounds 3]
                                     [--hedge-after X] [--hedge-floor-ms MS]
                                     [--store moto|local] [--quick] [--json]

A StreamStore writes to moto's S3 server (its own process on loopback, as
in replay_bench.py), WAL fsync, with ``--appenders`` appenders, each on a
stream of its own, appending 1 KiB batches with ``REMOTE`` options one after
another (each waits for its acknowledgement before the next): the latency
of each, from the append to its acknowledgement, i.e. to the commit of the
object holding it to the manifest. Between the rounds of appends, with
nothing else running, the same store client times the two PUTs an upload
is made of: an object the size of the uploads just measured, and a small
object (a manifest record's size). The ratios divide the acknowledgement
latency by those PUTs' medians measured in the same run:
``remote_ack_p99_vs_upload`` = p99 of the acks ÷ (object PUT + small PUT),
the time of one upload; an acknowledgement that waits out at most the
upload in flight and then its own is at most about 2. A commit also HEADs
the manifest version before its own (docs/object-format.md, "Opening and fencing"),
whose median is reported beside them but not counted in the ratio.
The stream store hedges its requests as ``[store] hedge_after`` and
``hedge_floor_ms`` say (``--hedge-after 0``: never, the figure without
hedges); the hedges sent and won are reported. ``--streams`` makes the
store hold that many streams (at least the appenders'), each of the
others given a batch and uploaded before the rounds: the manifest every
commit starts from is then that large (docs/design/0140). The PUTs timed for the
baseline are never hedged. ``--store local`` writes to a local directory
store instead (every PUT a file written and fsynced, docs/operations.md),
the figures without moto's process and its HTTP: what the store itself
adds to the uploads. ``--json`` prints one JSON object.

Beside them, ack by ack, what each acknowledgement waited on, from the
store's own record of its uploads (``StreamStore.trace_uploads``,
s3stream/ack_trace.py, docs/design/0151): ``uploads_waited_max``, the
most uploads any acknowledgement waited for (the one in flight when it
asked and its own: 2); the server's own share of each wait, its latency
less the time a store request of those uploads was in flight or they
waited for the WAL's sync (the batching window, layout, the commit's
encoding, the threads' hand-offs; the WAL's share reported beside it),
p50/p99 beside the configured window (``remote_linger_s``), the
windows' p99 and longest, and how long after it was due (the window
over, or the batch complete) a block was sealed; and
``remote_ack_p99_vs_own_requests``, the p99 over all acknowledgements
of each one's latency over the requests it waited on: the cadence's
share, apart from the store's own tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _harness
from replay_bench import BUCKET, moto_server

if TYPE_CHECKING:
    from s3stream.ack_trace import AckWait, Append
    from s3stream.store import ObjectStore

BATCH = 1024
PUT_SAMPLES = 40
TARGETS = {"remote_ack_p99_vs_upload": 2.5}
"""At most the upload in flight plus its own, with room for a shared machine's noise."""


def main() -> None:
    parser = _harness.parser(__doc__, quick="600 appends, one round")
    parser.add_argument("--appends", type=int, default=3000, help="remote appends per round")
    parser.add_argument("--appenders", type=int, default=8, help="concurrent appenders")
    parser.add_argument(
        "--streams",
        type=int,
        default=0,
        help="streams in the store, each with an uploaded batch (default: the appenders')",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of appends and PUTs")
    parser.add_argument(
        "--hedge-after",
        type=float,
        default=None,
        help="[store] hedge_after (default: the store's; 0: no hedged requests)",
    )
    parser.add_argument("--hedge-floor-ms", type=float, default=None, help="[store] hedge_floor_ms")
    parser.add_argument(
        "--store",
        choices=("moto", "local"),
        default="moto",
        help="moto's S3 server on loopback, or a local directory store",
    )
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--background-nice",
        type=int,
        default=None,
        help="the store's [store] background_nice (default: its default; 0: off)",
    )
    args = parser.parse_args()
    appends, rounds = (600, 1) if args.quick else (args.appends, args.rounds)
    with _harness.scratch(args.dir, "tidelog-remote-ack-") as scratch:
        results = run(
            scratch,
            appends,
            args.appenders,
            rounds,
            args.hedge_after,
            args.hedge_floor_ms,
            args.background_nice,
            args.store,
            args.streams,
        )
    _harness.report(results, args.json, print_table)


def run(
    scratch: Path,
    appends: int,
    appenders: int,
    rounds: int,
    hedge_after: float | None = None,
    hedge_floor_ms: float | None = None,
    background_nice: int | None = None,
    store_kind: str = "moto",
    stream_count: int = 0,
) -> dict[str, Any]:
    from s3stream import StreamStore, StreamStoreConfig
    from s3stream.ack_trace import ack_waits

    config = StreamStoreConfig()
    if hedge_after is not None:
        config = dataclasses.replace(config, hedge_after=hedge_after)
    if hedge_floor_ms is not None:
        config = dataclasses.replace(config, hedge_floor_ms=hedge_floor_ms)
    if background_nice is not None:
        config = dataclasses.replace(config, background_nice=background_nice)
    with _object_store(store_kind, scratch) as make_store:
        store = StreamStore.open(scratch / "data", make_store(), config)
        streams = [store.create_stream() for _ in range(appenders)]
        for stream in streams:
            store.open_stream(stream, 1)
        filled = _fill_streams(store, max(stream_count - appenders, 0))
        plain = make_store()
        trace = store.trace_uploads()
        appended: list[Append] = []
        puts: list[float] = []
        small_puts: list[float] = []
        heads: list[float] = []
        uploads = uploaded = 0
        try:
            for round_number in range(rounds):
                before = (store.stats.uploads, store.stats.uploaded_bytes)
                appended += asyncio.run(_append_all(store, streams, appends // appenders))
                uploads += store.stats.uploads - before[0]
                uploaded += store.stats.uploaded_bytes - before[1]
                size = max(1, uploaded // max(uploads, 1))
                puts += _put_latencies(plain, f"put-{round_number}", size)
                small_puts += _put_latencies(plain, f"small-{round_number}", 512)
                heads += _head_latencies(plain, f"latency/small-{round_number}-0")
            sent, won = store.hedges.snapshot() if store.hedges else ({}, {})
            waits = ack_waits(trace.uploads(), appended)
        finally:
            store.close()
            plain.close()
    acks = [(a.acknowledged - a.asked) * 1000 for a in appended]
    put_ms = statistics.median(puts)
    small_ms = statistics.median(small_puts)
    upload_ms = put_ms + small_ms
    results: dict[str, Any] = {
        "appends": len(acks),
        "appenders": appenders,
        "streams": len(streams) + filled,
        "rounds": rounds,
        "batch_bytes": BATCH,
        "store": store_kind,
        "background_nice": config.background_nice,
        "remote_ack_p50_ms": round(_quantile(acks, 0.50), 2),
        "remote_ack_p99_ms": round(_quantile(acks, 0.99), 2),
        "remote_ack_max_ms": round(max(acks), 2),
        "put_p50_ms": round(put_ms, 2),
        "put_p99_ms": round(_quantile(puts, 0.99), 2),
        "small_put_p50_ms": round(small_ms, 2),
        "head_p50_ms": round(statistics.median(heads), 2),
        "upload_ms": round(upload_ms, 2),
        "uploads": uploads,
        "object_bytes": uploaded // max(uploads, 1),
        "acks_per_upload": round(len(acks) / max(uploads, 1), 2),
        "hedge_after": config.hedge_after,
        "hedge_floor_ms": config.hedge_floor_ms,
        "hedges_sent": sent,
        "hedges_won": won,
        "remote_ack_p50_vs_upload": round(_quantile(acks, 0.50) / upload_ms, 3),
        "remote_ack_p99_vs_upload": round(_quantile(acks, 0.99) / upload_ms, 3),
        **_per_ack(waits, config.remote_linger_s),
        **_harness.cpus(),
    }
    results["targets"] = {
        f"{key} <= {bound}": results[key] <= bound for key, bound in TARGETS.items()
    }
    return results


def _per_ack(waits: list[AckWait], linger_s: float) -> dict[str, Any]:
    """The figures of what each acknowledgement waited on (module docstring)."""
    if not waits:
        return {"acks_traced": 0}
    own = [w.own_share * 1000 for w in waits]
    ratios = [w.latency / w.requests for w in waits if w.requests > 0]
    windows = [w.window * 1000 for w in waits]
    waited = Counter(w.uploads_waited for w in waits)
    # None when no traced acknowledgement overlapped a store request (an
    # upload answered before any request of it was traced): a ratio over no
    # acknowledgement is no figure, and the table says so.
    over_requests = (
        (round(_quantile(ratios, 0.50), 3), round(_quantile(ratios, 0.99), 3))
        if ratios
        else (None, None)
    )
    return {
        "acks_traced": len(waits),
        "uploads_waited_max": max(waited),
        "uploads_waited": {str(n): waited[n] for n in sorted(waited)},
        "in_flight_left_p99_ms": round(
            _quantile([w.in_flight_left * 1000 for w in waits], 0.99), 2
        ),
        "own_share_p50_ms": round(_quantile(own, 0.50), 2),
        "own_share_p99_ms": round(_quantile(own, 0.99), 2),
        "wal_wait_p99_ms": round(_quantile([w.wal * 1e3 for w in waits], 0.99), 2),
        "window_ms": round(linger_s * 1000, 2),
        "window_p99_ms": round(_quantile(windows, 0.99), 2),
        "window_max_ms": round(max(windows), 2),
        "seal_late_p99_ms": round(_quantile([w.seal_late * 1e3 for w in waits], 0.99), 2),
        "seal_late_max_ms": round(max(w.seal_late for w in waits) * 1e3, 2),
        "hand_back_p50_ms": round(_quantile([w.hand_back * 1000 for w in waits], 0.50), 2),
        "hand_back_p99_ms": round(_quantile([w.hand_back * 1000 for w in waits], 0.99), 2),
        "acks_over_requests": len(ratios),
        "remote_ack_p50_vs_own_requests": over_requests[0],
        "remote_ack_p99_vs_own_requests": over_requests[1],
    }


@contextlib.contextmanager
def _object_store(kind: str, scratch: Path) -> Iterator[Callable[[], ObjectStore]]:
    """Makes clients of one object store: moto's S3 server (its bucket
    made) or a local directory in ``scratch``."""
    from s3stream.store import LocalStore, S3Store

    if kind == "local":
        yield lambda: LocalStore(scratch / "bucket")
        return
    with moto_server() as server:

        def make_store() -> S3Store:
            return S3Store(
                BUCKET,
                "bench",
                endpoint_url=server.endpoint,
                region="us-east-1",
                access_key_id="bench",
                secret_access_key="bench",
            )

        make_store().create_bucket_if_missing()
        yield make_store


def _fill_streams(store: Any, count: int) -> int:
    """``count`` more streams, each holding one uploaded batch; how many
    were made."""
    if not count:
        return 0
    payload = os.urandom(BATCH)
    added = store.create_streams(count)
    for stream in added:
        store.open_stream(stream, 1)
    for written in [store.submit(stream, 0, 0, payload) for stream in added]:
        written.result()
    store.flush()
    return len(added)


async def _append_all(store: Any, streams: list[int], per_appender: int) -> list[Append]:
    """Each append's stream, end offset and times, on the trace's clock."""
    from s3stream import REMOTE
    from s3stream.ack_trace import Append

    payload = os.urandom(BATCH)
    appended: list[Append] = []

    async def appender(stream: int) -> None:
        for _ in range(per_appender):
            base = store.next_offset(stream)
            started = time.monotonic()
            await store.append_async(stream, base, base, payload, REMOTE)
            appended.append(Append(stream, base + 1, started, time.monotonic()))

    await asyncio.gather(*(appender(stream) for stream in streams))
    return appended


def _put_latencies(store: Any, name: str, size: int) -> list[float]:
    data = os.urandom(size)
    latencies = []
    for i in range(PUT_SAMPLES):
        started = time.perf_counter()
        store.put(f"latency/{name}-{i}", [data])
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _head_latencies(store: Any, key: str) -> list[float]:
    latencies = []
    for _ in range(PUT_SAMPLES):
        started = time.perf_counter()
        store.head(key)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_STORES = {"moto": "moto's S3 server on loopback", "local": "a local directory store"}


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['appends']:,} remote appends of {results['batch_bytes']} B by "
        f"{results['appenders']} appenders, {results['streams']:,} streams, "
        f"{results['rounds']} round(s); "
        f"{_STORES[results['store']]}; {results['cpus_usable']} CPUs\n"
    )
    rows = [
        ("remote ack, p50", "remote_ack_p50_ms"),
        ("remote ack, p99", "remote_ack_p99_ms"),
        ("remote ack, max", "remote_ack_max_ms"),
        (f"object PUT ({results['object_bytes']:,} B), p50", "put_p50_ms"),
        ("object PUT, p99", "put_p99_ms"),
        ("small PUT (a manifest record), p50", "small_put_p50_ms"),
        ("HEAD (a commit's check), p50", "head_p50_ms"),
        ("one upload (object PUT + small PUT)", "upload_ms"),
    ]
    for label, key in rows:
        print(f"{label:<40} {results[key]:>9.2f} ms")
    print(
        f"\n{results['uploads']:,} uploads, {results['acks_per_upload']:.1f} acks per upload\n"
        f"hedged after {results['hedge_after']}x the median (at least "
        f"{results['hedge_floor_ms']} ms): sent {results['hedges_sent']}, "
        f"won {results['hedges_won']}\n"
        f"remote_ack_p50_vs_upload {results['remote_ack_p50_vs_upload']:.2f}   "
        f"remote_ack_p99_vs_upload {results['remote_ack_p99_vs_upload']:.2f}"
    )
    if results["acks_traced"]:
        print(
            f"\nack by ack ({results['acks_traced']:,} traced): uploads waited "
            f"{results['uploads_waited']} (most {results['uploads_waited_max']}); "
            f"in flight left, p99 {results['in_flight_left_p99_ms']:.2f} ms\n"
            f"server's own share p50 {results['own_share_p50_ms']:.2f} ms, "
            f"p99 {results['own_share_p99_ms']:.2f} ms (WAL's sync waited, p99 "
            f"{results['wal_wait_p99_ms']:.2f} ms); window configured "
            f"{results['window_ms']:.2f} ms, p99 {results['window_p99_ms']:.2f}, "
            f"max {results['window_max_ms']:.2f}; sealed after due, p99 "
            f"{results['seal_late_p99_ms']:.2f}, max {results['seal_late_max_ms']:.2f} ms\n"
            f"hand-back p50 "
            f"{results['hand_back_p50_ms']:.2f}, p99 {results['hand_back_p99_ms']:.2f} ms"
        )
        print(_over_own_requests(results))
    _harness.print_targets(results["targets"])


def _over_own_requests(results: dict[str, Any]) -> str:
    p50 = results["remote_ack_p50_vs_own_requests"]
    p99 = results["remote_ack_p99_vs_own_requests"]
    if p50 is None or p99 is None:
        return (
            "remote_ack_vs_own_requests absent: no traced acknowledgement "
            "overlapped a store request"
        )
    return f"remote_ack_p50_vs_own_requests {p50:.2f}   remote_ack_p99_vs_own_requests {p99:.2f}"


if __name__ == "__main__":
    main()
