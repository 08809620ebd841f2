"""The cyclic collector's work per Produce request on a served engine.

    python bench/produce_gc_collections.py [--tree DIR]... [--shape small|large]
        [--partitions N] [--warm N] [--requests N] [--rounds N] [--gen0 N] [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), ``python -m engine serve`` runs with a
``gc.callbacks`` hook that the bench switches on and off by signals, and
the same Produce requests as produce_request_instructions.py are sent
(``--shape``: one 100-byte record a request round robin over 1,000
partitions, or 64 records of 1 KiB to one partition), 32 in flight. Over
the window of ``--requests`` the hook counts each generation's
collections, the objects they found garbage and their pauses (the
longest, and the total, in the collecting thread's CPU time, which the
machine's load does not stretch, and the longest in wall time too: the
GIL is held throughout, so the event loop waits that long), and at its
end lists the objects the collector tracks that were made in the window
and are still alive, by type; at the start of each of the first eight
middle or full collections, what it walks (its generations' tracked
objects by type, a list named by its first item's type, and the
references their ``tp_traverse`` visits), counted before its pause is
timed. The server's
peak resident set is read from /proc. ``--gen0 N`` sets the young
generation's threshold at the window's start, for trying values the
tree does not set itself. Trees run in turns, ``--rounds`` times; every
figure is per 1,000 requests unless named otherwise.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import _harness
from produce_request_instructions import add_window_arguments, warmed
from small_produce_bench import _send_pipelined
from tail_instructions import HERE, _Server

HOOK = r"""
import asyncio, collections, gc, json, os, signal, sys, time, runpy
import uvloop
out = sys.argv[1]
gen0 = int(sys.argv[2])
state = {"on": False, "started": 0.0, "cpu": 0.0}
runs = [0, 0, 0]
collected = [0, 0, 0]
longest = [0.0, 0.0, 0.0]
total = [0.0, 0.0, 0.0]
longest_cpu = [0.0, 0.0, 0.0]
total_cpu = [0.0, 0.0, 0.0]
before = set()
walked = []
def census(generation):
    # What a middle or full collection is about to walk: the tracked
    # objects of its generations by type, and the references their
    # tp_traverse visits (a list's items, a dict's keys and values).
    kinds = collections.Counter()
    visits = collections.Counter()
    for g in range(generation + 1):
        for o in gc.get_objects(g):
            name = type(o).__qualname__
            # Its references as the collector visits them, not o[0]: a list
            # a C function is still filling (PyList_New, then SET_ITEM) is
            # tracked with NULL items, which traversal skips and indexing
            # reads.
            referents = gc.get_referents(o)
            if type(o) is list and referents:  # a list named by what it holds
                name = f"list[{type(referents[0]).__qualname__}]"
            kinds[name] += 1
            visits[name] += len(referents)
    walked.append({"generation": generation, "objects": sum(kinds.values()),
                   "visits": sum(visits.values()),
                   "by_type": [(k, n, visits[k]) for k, n in kinds.most_common(10)]})
def hook(phase, info):
    if not state["on"]:
        return
    if phase == "start":
        if info["generation"] and len(walked) < 8:
            census(info["generation"])
        state["started"] = time.perf_counter()
        state["cpu"] = time.thread_time()
        return
    took = time.perf_counter() - state["started"]
    cpu = time.thread_time() - state["cpu"]
    g = info["generation"]
    runs[g] += 1
    collected[g] += info["collected"]
    longest[g] = max(longest[g], took)
    total[g] += took
    longest_cpu[g] = max(longest_cpu[g], cpu)
    total_cpu[g] += cpu
gc.callbacks.append(hook)
def start():
    if gen0:
        gc.set_threshold(gen0, *gc.get_threshold()[1:])
    before.update(id(o) for o in gc.get_objects())
    state["on"] = True
def stop():
    import native
    state["on"] = False
    made = collections.Counter(
        type(o).__qualname__ for o in gc.get_objects() if id(o) not in before
    )
    with open(out, "w") as f:
        json.dump({"runs": runs, "collected": collected, "longest_s": longest,
                   "total_s": total, "longest_cpu_s": longest_cpu,
                   "total_cpu_s": total_cpu, "threshold": gc.get_threshold(),
                   "survivors": made.most_common(12), "walked": walked,
                   "native": native.IMPLEMENTATION,
                   "survivor_count": sum(made.values())}, f)
run = uvloop.run
async def _signalled(coroutine):
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, start)
    loop.add_signal_handler(signal.SIGUSR2, stop)
    return await coroutine
uvloop.run = lambda coroutine, **kw: run(_signalled(coroutine), **kw)
sys.argv = ["engine"] + sys.argv[3:]
runpy.run_module("engine", run_name="__main__", alter_sys=True)
"""
"""Runs the server with the collector's hook switched on and off by
signals, handled on the event loop's thread, as tail_instructions'
profiler is."""


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_one(
    tree: Path, shape: str, partitions: int, warm: int, requests: int, gen0: int
) -> dict[str, Any]:
    with _harness.scratch(None, "produce-gc-collections-") as scratch:
        figures = _counted_in(scratch, tree, shape, partitions, warm, requests, gen0)
    figures["requests"] = requests
    return figures


def _counted_in(
    scratch: Path, tree: Path, shape: str, partitions: int, warm: int, requests: int, gen0: int
) -> dict[str, Any]:
    """The hook's figures of a run in ``scratch``: a server that fails to
    start leaves it to run_one's removal like one that ran."""
    out = scratch / "gc.json"
    server = _Server(tree, scratch, "hooked", (HOOK, [str(out), str(gen0)]))
    try:
        address, frames = warmed(server, shape, partitions, warm)
        server.counting(True)
        time.sleep(0.3)  # the hook's census of what lived before the window
        _send_pipelined(address, frames, requests)
        server.counting(False)
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        figures: dict[str, Any] = json.loads(out.read_text())
        figures["peak_rss_kib"] = _peak_rss_kib(server.process.pid)
    finally:
        server.stop()
    return figures


def _line(tree: Path, one: dict[str, Any]) -> str:
    per = 1000 / one["requests"]
    runs = "/".join(f"{r * per:.1f}" for r in one["runs"])
    longest = max(one["longest_s"]) * 1000
    longest_cpu = max(one["longest_cpu_s"]) * 1000
    total_cpu = sum(one["total_cpu_s"]) * 1000 * per
    return (
        f"{tree}: gen0 {one['threshold'][0]}; collections per 1,000 requests (gen0/1/2) {runs};"
        f" collected {sum(one['collected']) * per:.0f}; pause CPU total {total_cpu:.2f} ms,"
        f" longest {longest_cpu:.2f} ms CPU, {longest:.2f} ms wall;"
        f" survivors {one['survivor_count']};"
        f" peak RSS {one['peak_rss_kib'] / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_window_arguments(parser, requests=30_000)
    parser.add_argument("--gen0", type=int, default=0, help="young threshold set for the window")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    partitions = args.partitions or (1000 if args.shape == "small" else 1)
    trees = args.tree or [HERE]
    results: dict[str, list[dict[str, Any]]] = {str(t): [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            one = run_one(tree, args.shape, partitions, args.warm, args.requests, args.gen0)
            results[str(tree)].append(one)
            if not args.json:
                print(_line(tree, one), flush=True)
                print(f"  survivors by type: {one['survivors']}", flush=True)
                for walk in one["walked"]:
                    print(
                        f"  generation {walk['generation']} walked {walk['objects']} objects,"
                        f" {walk['visits']} references: {walk['by_type']}",
                        flush=True,
                    )
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
