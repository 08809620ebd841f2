"""Instructions a read's look-ups in the manifest's state cost as the
manifest grows, counted by callgrind.

    python bench/manifest_lookup_instructions.py [--tree DIR]...
        [--streams 1,100,1000,10000] [--lookups 100000] [--quick] [--json]

For each tree (a checkout of any revision, its C extension built; this
checkout when none is named) and each stream count, a child Python reads
a manifest state of that many streams and 3 objects a stream (one range
each) from a checkpoint's body, as an open reads it, then makes
``--lookups`` look-ups of what a read from objects asks of the state
(s3stream/reader.py, ``Reader.read``; stream_store.py): whether the
stream has ranges, the range holding an offset, that range's object and
the stream's metadata, of streams taken in a fixed scattered order. The
child runs twice per tree, with no look-ups and with them, in turns, and
the figure is the difference per look-up: the set-up, the same in both
runs, drops out. Trees are measured side by side at each stream count.
``--json`` prints one JSON object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _callgrind_costs
import _harness

CHILD = r"""
import sys
from s3stream.manifest_state import ManifestState

streams, lookups = map(int, sys.argv[1:3])
links = [bytes(32), bytes(range(32)), 1]
body = {
    "seq": 1, "epoch": 1, "owner": "", "owner_since": 1, "fence_versions": [1],
    "next_stream_id": streams + 1, "next_object_id": 3 * streams + 1,
    "streams": [[s, 1, 0, 30, 0] for s in range(1, streams + 1)],
    "objects": [
        [3 * (s - 1) + k + 1, f"o/{s}/{k}", 1, 4096, 0, [[s, 10 * k, 10 * k + 10, 4096, links]]]
        for s in range(1, streams + 1)
        for k in range(3)
    ],
    "garbage": [],
}
state = ManifestState.from_wire(body)
found_objects = 0
for i in range(lookups):
    stream_id = (i * 7919) % streams + 1
    offset = (i * 13) % 30
    found = state.ranges[stream_id].find(offset) if stream_id in state.ranges else None
    if found is not None:
        meta = state.objects[found[2]]
        found_objects += meta.object_id > 0
    stream = state.streams.get(stream_id)
assert found_objects == lookups, found_objects
"""


def main() -> None:
    parser = _harness.parser(__doc__, quick="1 and 1,000 streams, 10,000 look-ups")
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--streams", default="1,100,1000,10000", help="stream counts, by commas")
    parser.add_argument("--lookups", type=int, default=100_000)
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    counts = [1, 1000] if args.quick else [int(n) for n in args.streams.split(",")]
    lookups = 10_000 if args.quick else args.lookups
    results: dict[str, Any] = {
        "lookups": lookups,
        "trees": [str(t) for t in trees],
        **_harness.cpus(),
    }
    for streams in counts:
        row: dict[str, Any] = {}
        for tree in trees:
            none, some = (
                sum(_callgrind_costs.thread_instructions(tree, ["-c", CHILD, str(streams), str(n)]))
                for n in (0, lookups)
            )
            row[str(tree)] = round((some - none) / lookups, 1)
        base = row[str(trees[0])]
        for tree in trees[1:]:
            row[f"{tree} vs {trees[0]}"] = round(row[str(tree)] / base, 3)
        results[f"s{streams}"] = row
    _harness.report(results, args.json, print_table)


def print_table(results: dict[str, Any]) -> None:
    print(f"instructions per look-up ({results['lookups']} look-ups)")
    for key, row in results.items():
        if not key.startswith("s") or not isinstance(row, dict):
            continue
        print(f"\n{key[1:]} streams")
        for name, figure in row.items():
            label = name if len(name) <= 40 else "..." + name[-37:]
            print(f"{label:<42}{figure:>12}")


if __name__ == "__main__":
    main()
