"""A manifest's open and its first checkpoint after it, as the manifest grows:
instructions, or wall and CPU time, of each.

    python bench/manifest_open_instructions.py [--tree DIR]... [--streams 1000,10000]
        [--objects-per-stream 3] [--after 16] [--width 8] [--rounds 1] [--wall]
        [--quick] [--json]

For each tree (a checkout of any revision, its C extension built; this
checkout when none is named) and each stream count, a child Python writes,
on an in-memory object store, a manifest of that many streams and
``--objects-per-stream`` objects a stream (each holding one range of one
stream, with its chain links) up to a checkpoint, then ``--after``
commits shaped as an upload's (one object of ``--width`` streams' ranges
and their trims), as a writer that ran a while after its last checkpoint
left them. Then three windows are counted, each apart:

- the open: ``Manifest.open`` (with background clean-up, as a stream
  store opens it), on the main thread: the checkpoint read back into the
  state, the deltas after it replayed, the fence written;
- the first checkpoint after it: the uploads' commits go on to the next
  checkpoint version, and the checkpoint is counted on its clean-up
  thread (encoding, framing, its PUT, the deletions it allows);
- the checkpoint after that (64 commits later): a writer's later
  checkpoint, which repacks only the streams and objects changed since
  the one before (docs/design/0150), for comparison in the same run.

Under callgrind (the default) the figures are instructions; with
``--wall``, wall time (``perf_counter``) and the thread's CPU time
(``thread_time``) of each, which move with the machine's load where the
instructions do not. Both checkpoints' bytes are hashed, so that trees
are seen to write the same bytes. Trees are measured in turns, each
stream count's trees side by side, ``--rounds`` times; the 1-minute load
average at each child's start is reported beside its figures. The set-up
ends with a full collection, so that none it made due lands in a window.
``--json`` prints one JSON object.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import _callgrind_costs
import _harness
import _manifest_setup

CHILD = (
    r"""
import gc, hashlib, json, os, sys, threading, time
from s3stream.manifest_checkpoints import CheckpointWriter
"""
    + _manifest_setup.IMPORTS
    + r"""

streams, per_stream, after, width = map(int, sys.argv[1:5])
out = sys.argv[5]
EVERY = 64

figures = {"load_average": os.getloadavg()[0]}
checkpoint_times = []
checkpoint_seqs = []
write_checkpoint = CheckpointWriter._write_checkpoint

def timed_checkpoint(self, state):
    wall, cpu = time.perf_counter(), time.thread_time()
    write_checkpoint(self, state)
    checkpoint_times.append((time.perf_counter() - wall, time.thread_time() - cpu))
    checkpoint_seqs.append(state.seq)

CheckpointWriter._write_checkpoint = timed_checkpoint

store = MemoryStore()
"""
    + _manifest_setup.MANIFEST_UP_TO_A_CHECKPOINT
    + r"""start = per_stream * 10
uploads = 0

def upload():
    global uploads
    touched = sorted({ids[(uploads * width + i) % streams] for i in range(width)})
    at = start + uploads * 10
    ranges = [RangeMeta(s, at, at + 10, 1024, links()) for s in touched]
    meta = object_of(object_id + uploads, ranges)
    uploads += 1
    return manifest.commit([["add_object", meta.to_wire()]] + [["trim", s, 0] for s in touched])

for _ in range(after):
    upload()
del manifest
checkpoint_times.clear()
checkpoint_seqs.clear()
gc.collect()

def window(name):
    print(name, flush=True)  # the parent counts from here to the next line
    sys.stdin.readline()

window("ready")
wall, cpu = time.perf_counter(), time.thread_time()
manifest = Manifest.open(store, checkpoint_every=EVERY, background_cleanup=True)
figures["open_wall_s"] = time.perf_counter() - wall
figures["open_cpu_s"] = time.thread_time() - cpu
figures["open_seq"] = manifest.state.seq
window("opened")
while upload().seq % EVERY:
    pass
manifest.join_cleanup()
window("first checkpoint")
while upload().seq % EVERY:
    pass
manifest.join_cleanup()
window("later checkpoint")
figures["checkpoint_times"] = checkpoint_times
figures["checkpoints"] = []
for seq in checkpoint_seqs:  # hashed outside the windows counted
    data = store.get(f"manifest/checkpoint/{seq:020d}")
    digest = hashlib.sha256(data).hexdigest()
    figures["checkpoints"].append({"seq": seq, "bytes": len(data), "sha256": digest})
figures["objects"] = len(manifest.state.objects)
with open(out, "w") as f:
    json.dump(figures, f)
"""
)

WINDOWS = ("ready", "opened", "first checkpoint", "later checkpoint")
"""What the child says at the start of each window and at the end of the
last: the open, the first checkpoint after it, the one after that."""


def _run(tree: Path, args: list[str], wall: bool) -> dict[str, Any]:
    """The child's own figures, and under callgrind (without ``wall``) each
    window's instructions: the open's on the main thread, each
    checkpoint's on the clean-up threads (every thread but the main one)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        argv = ["-c", CHILD, *args, str(out / "figures.json")]
        _callgrind_costs.run_in_windows(tree, argv, out, WINDOWS, counted=not wall)
        figures: dict[str, Any] = json.loads((out / "figures.json").read_text())
        if not wall:
            # Dump part N holds window N; its thread 01 is the main one.
            def counts(part: int) -> list[int]:
                dumps = sorted(
                    out.glob(f"callgrind.out.{part}-*"), key=lambda d: int(d.name.rsplit("-")[-1])
                )
                return [_callgrind_costs._total(dump) for dump in dumps]

            figures["open_instructions"] = counts(1)[0]
            figures["first_checkpoint_instructions"] = sum(counts(2)[1:])
            figures["later_checkpoint_instructions"] = sum(counts(3)[1:])
    return figures


def _row(figures: dict[str, Any], wall: bool) -> dict[str, Any]:
    first, later = figures["checkpoints"]
    row: dict[str, Any] = {
        "objects": figures["objects"],
        "load_average": round(figures["load_average"], 2),
        "checkpoint_bytes": first["bytes"],
        "checkpoint_sha256": [first["sha256"][:16], later["sha256"][:16]],
    }
    if wall:
        (first_wall, first_cpu), (later_wall, later_cpu) = figures["checkpoint_times"]
        row |= {
            "open_wall_ms": round(figures["open_wall_s"] * 1e3, 2),
            "open_cpu_ms": round(figures["open_cpu_s"] * 1e3, 2),
            "first_checkpoint_wall_ms": round(first_wall * 1e3, 2),
            "first_checkpoint_cpu_ms": round(first_cpu * 1e3, 2),
            "later_checkpoint_wall_ms": round(later_wall * 1e3, 2),
            "later_checkpoint_cpu_ms": round(later_cpu * 1e3, 2),
        }
    else:
        row |= {
            "open_instructions": figures["open_instructions"],
            "first_checkpoint_instructions": figures["first_checkpoint_instructions"],
            "later_checkpoint_instructions": figures["later_checkpoint_instructions"],
        }
    return row


MEASURED = (
    "open_instructions",
    "first_checkpoint_instructions",
    "later_checkpoint_instructions",
    "open_wall_ms",
    "open_cpu_ms",
    "first_checkpoint_wall_ms",
    "first_checkpoint_cpu_ms",
    "later_checkpoint_wall_ms",
    "later_checkpoint_cpu_ms",
)


def main() -> None:
    parser = _harness.parser(__doc__, quick="100 and 1,000 streams, one round")
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--streams", default="1000,10000", help="stream counts, by commas")
    parser.add_argument("--objects-per-stream", type=int, default=3)
    parser.add_argument("--after", type=int, default=16, help="commits after the checkpoint read")
    parser.add_argument("--width", type=int, default=8, help="streams an upload's object holds")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tree, in turns")
    parser.add_argument("--wall", action="store_true", help="wall and CPU time, not instructions")
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    counts = [100, 1000] if args.quick else [int(n) for n in args.streams.split(",")]
    rounds = 1 if args.quick else args.rounds
    results: dict[str, Any] = {
        "objects_per_stream": args.objects_per_stream,
        "after": args.after,
        "width": args.width,
        "measure": "wall" if args.wall else "instructions",
        "trees": [str(t) for t in trees],
        **_harness.cpus(),
    }
    for streams in counts:
        child = [str(streams), str(args.objects_per_stream), str(args.after)]
        child.append(str(min(args.width, streams)))
        runs: dict[str, list[dict[str, Any]]] = {str(tree): [] for tree in trees}
        for _ in range(rounds):
            for tree in trees:
                runs[str(tree)].append(_row(_run(tree, child, args.wall), args.wall))
        row: dict[str, Any] = dict(runs)
        base = runs[str(trees[0])]
        for tree in trees[1:]:
            row[f"{tree} vs {trees[0]}"] = [
                {key: round(run[key] / first[key], 3) for key in MEASURED if first.get(key)}
                for run, first in zip(runs[str(tree)], base, strict=True)
            ]
        results[f"s{streams}"] = row
    _harness.report(results, args.json, print_table)


def print_table(results: dict[str, Any]) -> None:
    print(
        f"the open and the checkpoints after it ({results['objects_per_stream']} objects a "
        f"stream, {results['after']} commits after the checkpoint read; {results['measure']})"
    )
    trees = results["trees"]
    for key, row in results.items():
        if not key.startswith("s") or not isinstance(row, dict):
            continue
        first_run = row[trees[0]][0]
        print(f"\n{key[1:]} streams, {first_run['objects']} objects at the end")
        fields = [f for f in MEASURED if f in first_run] + ["load_average"]
        print(f"{'':<28}" + "".join(f"{f:>31}" for f in fields))
        for name, runs in row.items():
            label = name if len(name) <= 26 else "..." + name[-23:]
            for number, figures in enumerate(runs, 1):
                cells = "".join(f"{figures.get(f, '-'):>31}" for f in fields)
                print(f"{label + f' #{number}':<28}{cells}")
        hashes = {tuple(run["checkpoint_sha256"]) for tree in trees for run in row[tree]}
        same = "the same" if len(hashes) == 1 else "NOT the same"
        print(f"checkpoints' bytes: {same} in every run ({first_run['checkpoint_bytes']:,} bytes)")


if __name__ == "__main__":
    main()
