"""Instructions one long-poll wait costs the event loop's thread, counted by callgrind.

    python bench/wait_instructions.py [--tree DIR]... [--waits N] [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), an engine with one topic of one
partition, on a uvloop loop as ``tidelog serve`` runs, after
``gc.freeze()`` as ``tidelog serve`` does once started, runs under
``valgrind --tool=callgrind --separate-threads=yes`` ``--waits`` times:

- ``woken``: a wait (``wait_for_data_async`` with a growth mark) registers
  and sleeps, the store's listener reports a growth of its stream (from
  the loop's thread: the hop is the same), the wait wakes, looks and
  leaves;
- ``cancelled``: the wait registers and sleeps, and is cancelled (a client
  gone);
- ``growth``: the listener reports a growth with no wait registered.

The figure is the loop's thread's instructions per wait: a run of
``--waits`` less a run of none, divided by ``--waits`` (design record
0088). Deterministic but for where objects land in memory: a few hundred
instructions from run to run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _callgrind_costs

HERE = Path(__file__).resolve().parents[1]
KINDS = ("woken", "cancelled", "growth")

CYCLE = r"""
import asyncio, gc, sys, tempfile
from pathlib import Path
import uvloop
import engine
from engine.types import TopicPartition

count, kind = int(sys.argv[1]), sys.argv[2]
with tempfile.TemporaryDirectory() as scratch, engine.open(
    Path(scratch) / "data", config=engine.EngineConfig.small()
) as opened:
    opened.create_topic("t", 1)
    leader = opened.partition("t", 0)
    stream = leader.stream_id
    waiters = opened._waiters
    positions = {TopicPartition("t", 0): leader.high_watermark}
    marked = hasattr(opened, "growth_mark")  # revisions before 0082 have none
    gc.collect()
    gc.freeze()

    async def cycles() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            if kind == "growth":
                waiters.on_durable({stream})
                continue
            if marked:
                waiting = opened.wait_for_data_async(positions, 30.0, opened.growth_mark())
            else:
                waiting = opened.wait_for_data_async(positions, 30.0)
            wait = loop.create_task(waiting)
            await asyncio.sleep(0)  # registered and asleep
            if kind == "woken":
                waiters.on_durable({stream})
            else:
                wait.cancel()
            try:
                await wait
            except asyncio.CancelledError:
                pass

    uvloop.run(cycles())
"""


def count(tree: Path, waits: int, kind: str) -> int:
    """The loop's thread's instructions for a run of ``waits``."""
    return _callgrind_costs.thread_instructions(tree, ["-c", CYCLE, str(waits), kind])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--waits", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for tree in args.tree or [HERE]:
        none = count(tree, 0, "woken")
        results[str(tree)] = {
            kind: (count(tree, args.waits, kind) - none) / args.waits for kind in KINDS
        }
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for tree, figures in results.items():
        print(tree + ": " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
