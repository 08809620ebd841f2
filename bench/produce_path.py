"""Where a produce request's time goes inside the server, stage by stage.

    python bench/produce_path.py [--json] [--rate-mb 50] [--latency-seconds 10]

Runs ``bench/kafka_bench.py --latency-only`` (librdkafka at a fixed rate,
acks=all, linger.ms=5, against ``tidelog serve`` and librdkafka's mock
cluster) with bench/_path_trace_site on the server's PYTHONPATH, which notes
a timestamp at each step of every produce request (see its docstring), and
splits each request of the latency phase into:

- ``receive``: its first bytes read to the whole request read (the loop);
- ``handle``: read whole to its WAL append queued (decode, validate, offsets,
  log cache);
- ``to_writer``: queued to the writer thread taking the group (the writer's
  wake-up, and the GIL while the loop finishes the request);
- ``write``: the ``pwritev``; ``to_sync``: written to the fdatasync begun;
  ``sync``: the fdatasync;
- ``settle``: synced to the waiters handed to the loop (the commit hook);
  ``to_loop``: to the loop running them; ``respond``: to the response handed
  to the socket (the task's wake-up, the response's encoding);
- ``server``: first bytes to response written, the sum of the above.

Reported per stage: p50 / p90 / p99 in ms over the phase's requests, and the
same for the first and the second half of the phase (the server starts the
phase just restarted: its log cache fills from empty for log_cache_bytes /
rate seconds, and its WAL segments may not be in the page cache). Also each
thread's run and run-queue time per second, the reading thread's page
faults per request, the syncs that overlapped an object-store write against
the others, and the requests queued while the writer synced the previous
group. Beside them the kafka_bench figures of the same run (p50/p99 and the
mock's).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES = (
    ("receive", "first", "read"),
    ("handle", "read", "submit"),
    ("to_writer", "submit", "taken"),
    ("write", "write", "written"),
    ("to_sync", "written", "sync"),
    ("sync", "sync", "synced"),
    ("settle", "synced", "settle"),
    ("to_loop", "settle", "on_loop"),
    ("respond", "on_loop", "flush"),
    ("server", "first", "flush"),
)
LARGE = 64 * 1024
"""Requests at least this large are the produce requests of the phase."""


def _quantiles(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [
        round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3) for q in (0.5, 0.9, 0.99)
    ]


def requests(events: list[tuple[int, str, Any]]) -> list[dict[str, int]]:
    """Each produce request's timestamps, by stage name (ns)."""
    done: list[dict[str, int]] = []
    by_key: dict[int, dict[str, int]] = {}
    current: dict[str, int] | None = None
    first: int | None = None
    group: dict[str, int] = {}
    group_keys: set[int] = set()
    last_sync = last_synced = 0
    flushes: list[int] = []
    for stamp, stage, extra in events:
        if stage == "first":
            first = stamp
        elif stage == "read":
            current = {"first": first or stamp, "read": stamp} if extra >= LARGE else None
            first = None
        elif stage == "submit" and current is not None:
            current["submit"] = stamp
            by_key[extra] = current
            done.append(current)
            current = None
        elif stage == "taken" and extra:
            group, group_keys = {"taken": stamp}, set(extra)
            for key in extra:
                if key in by_key:
                    by_key[key]["taken"] = stamp
        elif stage in ("write", "written"):
            group[stage] = stamp
        elif stage == "sync":
            last_sync = stamp
        elif stage == "synced":
            last_synced = stamp
        elif stage == "settle":
            for key in extra:
                request = by_key.get(key)
                if request is None:
                    continue
                request.update(sync=last_sync, synced=last_synced, settle=stamp)
                if key in group_keys:
                    request.update({k: v for k, v in group.items() if k != "taken"})
        elif stage == "on_loop":
            for key in extra:
                request = by_key.pop(key, None) if key is not None else None
                if request is not None:
                    request["on_loop"] = stamp
        elif stage == "flush":
            flushes.append(stamp)
    for request in done:
        if "on_loop" in request:
            at = bisect.bisect_left(flushes, request["on_loop"])
            if at < len(flushes):
                request["flush"] = flushes[at]
    names = {name for _, start, end in STAGES for name in (start, end)}
    return [r for r in done if names <= r.keys()]


def analyse(trace: dict[str, Any], started_unix: float, seconds: float) -> dict[str, Any]:
    anchor_ns, anchor_unix = trace["anchor"]

    def unix(stamp: int) -> float:
        return float(anchor_unix - (anchor_ns - stamp) / 1e9)

    events = [e for e in trace["events"] if started_unix <= unix(e[0]) <= started_unix + seconds]
    found = sorted(requests(events), key=lambda r: r["first"])
    if not found:
        raise RuntimeError("no produce request was traced in the latency phase")
    half = len(found) // 2
    result: dict[str, Any] = {"requests": len(found), "stages_ms": {}}
    for name, start, end in STAGES:
        spans = [(r[end] - r[start]) / 1e6 for r in found]
        result["stages_ms"][name] = {
            "all": _quantiles(spans),
            "first_half": _quantiles(spans[:half]),
            "second_half": _quantiles(spans[half:]),
        }
    samples = [s for s in trace["samples"] if started_unix <= unix(s[0]) <= started_unix + seconds]
    if len(samples) >= 2:
        (began, before), (ended, after) = samples[0], samples[-1]
        per_s = 1e-6 / ((ended - began) / 1e9)
        threads: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for task in before.keys() & after.keys():
            name = after[task][0]
            threads[name][0] += (after[task][1] - before[task][1]) * per_s
            threads[name][1] += (after[task][2] - before[task][2]) * per_s
        result["threads_ran_waited_ms_per_s"] = {
            name: [round(ran, 1), round(waited, 1)]
            for name, (ran, waited) in sorted(threads.items(), key=lambda t: -t[1][0])
            if ran + waited >= 0.5
        }
    reads = trace["faults"]
    faults = [
        b[1] - a[1] for a, b in itertools.pairwise(reads) if (a[0], b[0]) == ("first", "read")
    ]
    if faults:
        result["read_page_faults"] = {
            "first_half_mean": round(sum(faults[: len(faults) // 2]) / (len(faults) // 2 or 1), 1),
            "second_half_mean": round(
                sum(faults[len(faults) // 2 :]) / (len(faults) - len(faults) // 2), 1
            ),
        }
    puts = [(s, s + d) for s, stage, d in events if stage == "object_put"]
    during = [r for r in found if any(a < r["synced"] and b > r["sync"] for a, b in puts)]
    apart = [r for r in found if r not in during]
    for label, chosen in (("sync_during_object_put", during), ("sync_apart", apart)):
        if chosen:
            spans = [(r["synced"] - r["sync"]) / 1e6 for r in chosen]
            result[label] = {"requests": len(chosen), "ms": _quantiles(spans)}
    syncs = sorted((r["sync"], r["synced"]) for r in found)
    starts = [s for s, _ in syncs]
    behind = 0
    for r in found:
        at = bisect.bisect_right(starts, r["submit"]) - 1
        behind += at >= 0 and syncs[at][0] < r["submit"] < syncs[at][1]
    result["queued_while_the_writer_synced"] = behind
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--rate-mb", type=float, default=50)
    parser.add_argument("--latency-seconds", type=float, default=10)
    parser.add_argument(
        "--repo",
        type=Path,
        default=HERE.parent,
        help="the checkout whose server and kafka_bench run (default: this one), to"
        " compare revisions with the same tracer",
    )
    args = parser.parse_args()
    repo = args.repo.resolve()
    with tempfile.TemporaryDirectory(prefix="produce-path-") as scratch:
        prefix = os.path.join(scratch, "trace")
        path = os.pathsep.join(
            p
            for p in (
                str(HERE / "_path_trace_site"),
                str(HERE.parent),
                os.environ.get("PYTHONPATH"),
            )
            if p
        )
        env = dict(os.environ, TIDELOG_PATH_TRACE=prefix, PYTHONPATH=path)
        command = [
            sys.executable,
            str(repo / "bench" / "kafka_bench.py"),
            "--latency-only",
            "--json",
            "--rate-mb",
            str(args.rate_mb),
            "--latency-seconds",
            str(args.latency_seconds),
        ]
        run = subprocess.run(command, env=env, cwd=repo, capture_output=True, check=True, text=True)
        bench = json.loads(run.stdout)
        started, seconds = bench["latency_started_unix"], bench["latency_seconds"]
        traces = sorted(Path(scratch).glob("trace.*"), key=lambda p: p.stat().st_mtime)
        with open(traces[-1], "rb") as latest:  # the server restarted for the phase
            result = analyse(pickle.load(latest), started, seconds)
    for key in ("p50_ms", "p99_ms", "mock_p50_ms", "mock_p99_ms", "latency_run_queue"):
        result[key] = bench[key]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['requests']} produce requests; stage ms p50 / p90 / p99")
    print(f"{'stage':10s} {'all':>22s} {'first half':>22s} {'second half':>22s}")
    for name, parts in result["stages_ms"].items():
        cells = ["{:6.3f} {:6.3f} {:7.3f}".format(*parts[k]) for k in parts]
        print(f"{name:10s} " + " ".join(f"{cell:>22s}" for cell in cells))
    for key, value in result.items():
        if key not in ("stages_ms", "requests"):
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
