"""Instructions parse_block spends a batch, counted by callgrind.

    python bench/parse_block_instructions.py [--tree DIR]... [--blocks N]
        [--batch-bytes N]... [--rounds N] [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), in turns, ``--rounds`` times: one object
of ``--blocks`` blocks of 1 MiB, each of ``--batch-bytes`` batches, is laid
out in memory, and each block's bytes (copied out first, as a GET gives
them) are split by ``s3stream.objects.parse_block`` under
``valgrind --tool=callgrind``. The figure is the main thread's
instructions a batch: a run that parses every block less one that parses
none (the same layout and copies), divided by the batches (design record
0154, "Fetched blocks"). Deterministic but for where objects land in
memory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _callgrind_costs

HERE = Path(__file__).resolve().parents[1]

PARSE = r"""
import gc, sys
from s3stream.objects import ObjectKind, StoredBatch, encode_object, parse_block

blocks, batch_bytes, parse = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
per_block = (1 << 20) // (batch_bytes + 16)
sent = [StoredBatch(i, i + 1, bytes([i % 251]) * batch_bytes) for i in range(per_block * blocks)]
encoded = encode_object(ObjectKind.STREAM, [(1, sent)], block_bytes=1 << 20)
whole = encoded.data
fetched = [(info, whole[info.position : info.position + info.size]) for info in encoded.blocks]
gc.disable()  # the collector's share is the other bench's (fetched_block_gc.py)
kept = []
if parse:
    for info, data in fetched:
        kept.append(parse_block("object", info, data))
print(sum(map(len, kept)) if parse else len(sent))
"""


def per_batch(tree: Path, blocks: int, batch_bytes: int) -> float:
    args = ["-c", PARSE, str(blocks), str(batch_bytes)]
    parsed = _callgrind_costs.thread_instructions(tree, [*args, "1"])[0]
    unparsed = _callgrind_costs.thread_instructions(tree, [*args, "0"])[0]
    batches = blocks * ((1 << 20) // (batch_bytes + 16))
    return (parsed - unparsed) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--batch-bytes", action="append", type=int, default=[])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = args.batch_bytes or [100, 1024]
    runs = []
    for round_number in range(args.rounds):
        for tree in args.tree or [HERE]:
            for size in sizes:
                figure = per_batch(tree, args.blocks, size)
                runs.append(
                    {"round": round_number, "tree": str(tree), "batch_bytes": size,
                     "instructions_per_batch": figure}
                )  # fmt: skip
    if args.json:
        print(json.dumps({"runs": runs}, indent=1))
        return
    for run in runs:
        first = next(
            r for r in runs if r["round"] == run["round"] and r["batch_bytes"] == run["batch_bytes"]
        )
        ratio = run["instructions_per_batch"] / first["instructions_per_batch"]
        print(
            f"round {run['round']} {run['tree'][-28:]:>28} {run['batch_bytes']:>6} B batches: "
            f"{run['instructions_per_batch']:,.0f} a batch ({ratio:.3f} of the first tree's)"
        )


if __name__ == "__main__":
    main()
