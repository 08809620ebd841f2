"""Instructions the server spends per Produce request, counted by callgrind,
for the two shapes whose rate the server's CPU per request bounds.

    python bench/produce_request_instructions.py [--tree DIR]... [--shape small|large]
        [--partitions N] [--warm N] [--requests N] [--rounds N] [--profile] [--keep DIR]
        [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), ``python -m engine serve`` runs under
``valgrind --tool=callgrind`` with its counters off (tail_instructions'
server). A raw socket sends prepared Produce v9 requests (acks=all, one
partition's batch each), 32 in flight, as fast as they are answered, and
checks every answer. ``--shape small`` is a topic of ``--partitions``
partitions written round robin with one 100-byte record a request, as
librdkafka writes a topic of thousands of partitions; ``--shape large``
is one partition written with batches of 64 records of 1 KiB, as
kafka_bench's flat-out produce writes it. After ``--warm`` requests (at
least two per partition, so every partition's first append is past) the
counters are zeroed and switched on, ``--requests`` are sent and
answered, and the counters are dumped.

The figures are instructions per request: the event loop's thread, the
WAL's (the busiest thread calling fdatasync) and the rest. Instructions,
unlike CPU time, do not move with the machine's load; the loop's count is
the steadiest (the WAL's per request moves with how appends fall into
groups under valgrind's slowness). Trees are run in turns, ``--rounds``
times. ``--profile`` runs cProfile on the loop's thread over the same
window instead and prints its costliest calls, for the Python calls per
request. Each run's scratch (callgrind's dumps, 400-500 MB) is removed
however the run ends; ``--keep DIR`` copies the dumps, or the profiles,
there first.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import _harness
from _callgrind_costs import costs
from confluent_kafka.admin import AdminClient, NewTopic
from small_produce_bench import _produce_v9, _send_pipelined
from tail_instructions import (
    HERE,
    HOST,
    _callgrind_threads,
    _Server,
    keep_profile,
    print_profile,
    profiles_to,
)

import native
from native import RecordSpec

TOPIC = "requests"
COLLECTOR = re.compile(
    r"^(gc_collect|collect_generations|update_refs|subtract_refs|move_unreachable|visit_"
    r"|untrack_|move_legacy|handle_legacy|handle_weakrefs|deduce_unreachable|gc_list_"
    r"|invoke_gc_callback|finalize_garbage|delete_garbage|\w*traverse)"
)
"""CPython's cyclic collector (Modules/gcmodule.c) and the tp_traverse
functions only it calls on the broker's path: their exclusive counts
added up are the collector's share of the loop's instructions."""
SHAPES = {
    # shape: (records a batch, record bytes)
    "small": (1, 100),
    "large": (64, 1024),
}


def _frames(shape: str, partitions: int) -> list[bytes]:
    records, size = SHAPES[shape]
    specs = [
        RecordSpec(1_700_000_000_000 + i, None, bytes([i % 251]) * size, ()) for i in range(records)
    ]
    batch = bytes(native.encode_batch(specs))
    return [_produce_v9(i, TOPIC, i % partitions, batch) for i in range(max(partitions, 64))]


def warmed(server: _Server, shape: str, partitions: int, warm: int) -> tuple[str, list[bytes]]:
    """The served topic made, and ``warm`` requests (at least two per
    partition) sent and answered: the server's address and the frames."""
    address = f"{HOST}:{server.port}"
    admin = AdminClient({"bootstrap.servers": address})
    for future in admin.create_topics([NewTopic(TOPIC, partitions, 1)]).values():
        future.result(300)
    frames = _frames(shape, partitions)
    _send_pipelined(address, frames, max(warm, 2 * partitions))
    return address, frames


def run_one(
    tree: Path,
    shape: str,
    partitions: int,
    warm: int,
    requests: int,
    mode: str,
    keep: Path | None = None,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """One run in a scratch directory of its own, removed however the run
    ends: callgrind's dumps are 400-500 MB a run. What outlives it is
    copied out first: with ``keep``, the dumps under it; in profile mode,
    the profile to ``profile_to``, a file the caller owns."""
    with _harness.scratch(None, "produce-request-instructions-") as scratch:
        server = _Server(tree, scratch, mode)
        try:
            address, frames = warmed(server, shape, partitions, warm)
            server.counting(True)
            started = time.perf_counter()
            _send_pipelined(address, frames, requests)
            server.counting(False)
            elapsed = time.perf_counter() - started
            time.sleep(1.0 if mode == "callgrind" else 0.3)
        finally:
            server.stop()
        result: dict[str, Any] = {"requests": requests, "seconds": round(elapsed, 1)}
        if mode == "callgrind":
            result["threads"] = _callgrind_threads(scratch, server.process.pid)
            result["collector"] = _collector(scratch, server.process.pid)
            if keep is not None:
                shutil.copytree(scratch, keep / f"{tree.name}-{time.monotonic_ns()}")
        else:
            result["profile"] = keep_profile(scratch, profile_to)
        return result


def _collector(scratch: Path, pid: int) -> int:
    """The cyclic collector's instructions on the event loop's thread
    (thread 1) in the window's dump."""
    total = 0
    for path in scratch.glob(f"callgrind.out.{pid}.1-01"):
        _, exclusive = costs(path)
        total += sum(count for name, count in exclusive.items() if COLLECTOR.match(name))
    return total


def add_window_arguments(parser: argparse.ArgumentParser, requests: int) -> None:
    """The trees, the shape and the window's size, as every bench of these
    requests takes them."""
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--partitions", type=int, default=None, help="1000 small, 1 large")
    parser.add_argument("--warm", type=int, default=500)
    parser.add_argument("--requests", type=int, default=requests)
    parser.add_argument("--rounds", type=int, default=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_window_arguments(parser, requests=3000)
    parser.add_argument("--profile", action="store_true", help="cProfile instead of callgrind")
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy each run's dumps (or --profile's profile) under this directory",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    partitions = args.partitions or (1000 if args.shape == "small" else 1)
    if not args.profile and shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    trees = args.tree or [HERE]
    mode = "profile" if args.profile else "callgrind"
    results: dict[str, list[dict[str, Any]]] = {str(t): [] for t in trees}
    with profiles_to(args.keep if args.profile else None) as profiles:
        for round_number in range(args.rounds):
            for i, tree in enumerate(trees):
                profile_to = profiles / f"{i}-{tree.name}-{round_number}.prof"
                one = run_one(
                    tree,
                    args.shape,
                    partitions,
                    args.warm,
                    args.requests,
                    mode,
                    args.keep,
                    profile_to,
                )
                results[str(tree)].append(one)
                if args.json:
                    continue
                if mode == "callgrind":
                    per = {k: v / one["requests"] for k, v in one["threads"].items()}
                    print(
                        f"{tree}: {one['requests']} requests"
                        f" ({args.shape}, {partitions} partitions);"
                        f" per request loop {per['loop']:,.0f} wal {per['wal']:,.0f}"
                        f" other {per['other']:,.0f};"
                        f" of the loop's, the collector's"
                        f" {one['collector'] / one['requests']:,.0f}",
                        flush=True,
                    )
                else:
                    print_profile(f"{tree}: {one['requests']} requests", one["profile"])
        if args.json:
            print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
