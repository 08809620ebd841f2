"""Instructions a small partition's checkpoint costs, counted by callgrind,
for one or more source trees.

    python bench/checkpoint_instructions.py [--tree DIR]... [--calls N] [--json]

For each tree (a checkout of any revision, its C extension built; this
checkout when none is named), a child Python under ``valgrind
--tool=callgrind`` opens an engine, makes one partition with one
idempotent producer, and then makes ``--calls`` rounds of one kind:
``produce`` (one batch of one record), ``produce_checkpoint`` (the same,
then the partition's checkpoint with the producer expiration the
background thread passes, waited on until durable) or ``idle_checkpoint``
(a checkpoint with nothing changed: the background thread's call on a
partition left alone; ten times as many rounds). The same child with no
rounds is the baseline; the difference over the rounds is the figure,
per round, of every thread and of the main thread alone (the
checkpoint's own work; the others' counts include the background
threads' polls, which grow with the run's length). A written
checkpoint's own cost is ``produce_checkpoint`` less ``produce``.
Instructions do not move with the machine's load, as CPU time does:
trees are compared in one run, side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _callgrind_costs

KINDS = ("produce", "produce_checkpoint", "idle_checkpoint")

IDLE_ROUNDS = 10
"""Idle checkpoints per round of the others: each costs little, and the
figure must stand above what two runs' set-ups differ by."""

CHILD = r"""
import atexit, sys, shutil, tempfile
from pathlib import Path
import engine, native
from native import RecordSpec

kind, calls = sys.argv[1], int(sys.argv[2])
root = Path(tempfile.mkdtemp())
atexit.register(shutil.rmtree, root, True)  # a failed run's too
config = engine.EngineConfig(cleaner_interval_s=3600, checkpoint_interval_s=3600)
e = engine.open(root / "data", f"file://{root / 'objects'}", config)
e.create_topic("t", 1)
pid, epoch = e.init_producer_id()
p = e.partition("t", 0)

def batch(sequence):
    return native.encode_batch([RecordSpec(1_700_000_000_000, None, b"v")],
                               producer_id=pid, producer_epoch=epoch, base_sequence=sequence)

e.produce("t", 0, batch(0))
p.checkpoint(86_400_000).result(30)
for i in range(1, calls + 1):
    if kind != "idle_checkpoint":
        e.produce("t", 0, batch(i))
    if kind != "produce":
        written = p.checkpoint(86_400_000)
        if written is not None:
            written.result(30)
e.close()
"""


def _instructions(tree: Path, kind: str, calls: int) -> tuple[int, int]:
    """Every thread's instructions and the main thread's."""
    threads = _callgrind_costs.thread_instructions(tree, ["-c", CHILD, kind, str(calls)])
    return sum(threads), threads[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    figures: dict[str, dict[str, float]] = {}
    for tree in trees:
        base = _instructions(tree, "produce", 0)
        for kind in KINDS:
            rounds = args.calls * (IDLE_ROUNDS if kind == "idle_checkpoint" else 1)
            loaded = _instructions(tree, kind, rounds)
            for scope, index in (("", 0), (" (main thread)", 1)):
                per_round = (loaded[index] - base[index]) / rounds
                figures.setdefault(kind + scope, {})[str(tree)] = per_round
    for tree in trees:
        for scope in ("", " (main thread)"):
            figures.setdefault("checkpoint" + scope, {})[str(tree)] = (
                figures["produce_checkpoint" + scope][str(tree)]
                - figures["produce" + scope][str(tree)]
            )
    _callgrind_costs.report(figures, "instructions per round", as_json=args.json)


if __name__ == "__main__":
    main()
