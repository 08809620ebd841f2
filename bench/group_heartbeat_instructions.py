"""Instructions the group coordinator spends per heartbeat and per durable
commit, counted by callgrind, for one or more source trees.

    python bench/group_heartbeat_instructions.py [--tree DIR]... [--calls N] [--json]

For each tree (a checkout of any revision, its C extension built; this
checkout when none is named), a child Python under ``valgrind
--tool=callgrind`` opens an engine, forms a classic group of one member
and a consumer group of one member, and then makes ``--calls`` calls of
one kind: a classic Heartbeat (no write), a steady ConsumerGroupHeartbeat
(no write), or an OffsetCommit waited on until durable (a write that
succeeds: its callback and its answer). The same child with no calls is
the baseline; the difference over ``--calls`` is the figure, per call, of
every thread (the WAL's included for the commit). Instructions do not
move with the machine's load, as CPU time does: trees are compared in one
run, each kind's figures side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import _callgrind_costs

KINDS = ("classic_heartbeat", "consumer_heartbeat", "durable_commit")

CHILD = r"""
import atexit, sys, shutil, tempfile
from pathlib import Path
import engine
from engine.groups.consumer_heartbeat import Heartbeat
from engine.types import OffsetAndMetadata, TopicPartition

kind, calls = sys.argv[1], int(sys.argv[2])
root = Path(tempfile.mkdtemp())
atexit.register(shutil.rmtree, root, True)  # a failed run's too
groups = engine.GroupConfig(group_initial_rebalance_delay_ms=0)
config = engine.EngineConfig(cleaner_interval_s=3600, groups=groups)
e = engine.open(root / "data", f"file://{root / 'objects'}", config)
e.create_topic("t", 1)
g = e.groups
joined = g.join_group("c", "", None, "consumer", [("range", b"m")], 30000, 30000,
                      require_known_member_id=False).result(30)
g.sync_group("c", joined.generation_id, joined.member_id, None, "consumer", "range",
             {joined.member_id: b""}).result(30)
member = g.consumer_group_heartbeat(Heartbeat("k", "m", 0, rebalance_timeout_ms=30000,
    subscribed_topic_names=["t"], owned_partitions={})).result(30)
tp = TopicPartition("t", 0)
for i in range(calls):
    if kind == "classic_heartbeat":
        g.heartbeat("c", joined.generation_id, joined.member_id, None)
    elif kind == "consumer_heartbeat":
        g.consumer_group_heartbeat(Heartbeat("k", "m", member.member_epoch)).result(30)
    else:
        g.commit_offsets("c", joined.generation_id, joined.member_id, None,
                         {tp: OffsetAndMetadata(i)}).result(30)
e.close()
"""


def _instructions(tree: Path, kind: str, calls: int) -> int:
    """Every thread's instructions (the WAL's included for the commit)."""
    return sum(_callgrind_costs.thread_instructions(tree, ["-c", CHILD, kind, str(calls)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    figures: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        for tree in trees:
            base = _instructions(tree, kind, 0)
            loaded = _instructions(tree, kind, args.calls)
            figures.setdefault(kind, {})[str(tree)] = (loaded - base) / args.calls
    _callgrind_costs.report(figures, "instructions per call", as_json=args.json)


if __name__ == "__main__":
    main()
