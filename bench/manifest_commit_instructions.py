"""A manifest commit's cost as the manifest grows: instructions, CPU and bytes per commit.

    python bench/manifest_commit_instructions.py [--tree DIR]... [--streams 1,100,1000,10000]
        [--objects-per-stream 3] [--commits 128] [--width 8] [--reopen] [--cpu] [--quick]
        [--json]

For each tree (a checkout of any revision, its C extension built; this
checkout when none is named) and each stream count, a child Python opens
a manifest on an in-memory object store with ``checkpoint_every`` 64 and
background clean-up, as a stream store opens its own, and commits, on
the main thread, that many streams and ``--objects-per-stream`` objects
a stream (each holding one range of one stream, with its chain links),
then commits on to a checkpoint, as a writer that has run a while has
written one (the first checkpoint after an open packs every object,
docs/design/0140). Then a thread of its own makes ``--commits`` commits shaped as an
upload's: one object of ``--width`` streams' ranges and their trims,
the streams taken in turn, the next upload laid out against the state
after it first (the uploader's put-ahead) and then committed. Under
callgrind (the default) the figures are the committing thread's
instructions per commit and the checkpoint threads' per commit (their
total over the checkpoints the commits reached, one every 64); with
``--cpu``, that thread's CPU time per commit and the whole process's,
checkpoints included, which move with the machine's load where the
instructions do not. Bytes per commit are those the commits put in the
store: each version's delta, and the checkpoints' bytes spread over the
commits. Trees are measured in turns, each stream count's trees side by
side. With ``--reopen`` the manifest is opened again after the set-up's
checkpoint, as a restart or a takeover opens it, so that the first
checkpoint counted is the first after an open: it packs every object
unless the open kept the packed objects of the checkpoint it read
(docs/design/0145). The set-up ends with a full collection, so none
it made due falls in one run's counted commits and not another's
(docs/design/0150). ``--json`` prints one JSON object.
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
import json, os, sys, threading, time
"""
    + _manifest_setup.IMPORTS
    + r"""
streams, per_stream, commits, width, reopen = map(int, sys.argv[1:6])
out = sys.argv[6]
EVERY = 64

class CountingStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.put_bytes = {"log": 0, "checkpoint": 0}
        self.checkpoints = 0
    def put(self, key, data):
        version = super().put(key, data)
        if key.startswith("manifest/checkpoint/"):
            self.put_bytes["checkpoint"] += len(self._objects[key][0])
            self.checkpoints += 1
        return version
    def put_if_absent(self, key, data):
        version = super().put_if_absent(key, data)
        self.put_bytes["log"] += len(data)
        return version

# Up to a checkpoint in the set-up, as a writer that has run a while has
# written one: the counted commits reach the next ones.
store = CountingStore()
"""
    + _manifest_setup.MANIFEST_UP_TO_A_CHECKPOINT
    + r"""if reopen:  # as a restart opens it: the set-up's checkpoint is the one read
    manifest = Manifest.open(store, checkpoint_every=EVERY, background_cleanup=True)
start = per_stream * 10
uploads = []
for c in range(commits):
    touched = sorted({ids[(c * width + i) % streams] for i in range(width)})
    at = start + c * 10
    meta = object_of(object_id + c, [RangeMeta(s, at, at + 10, 1024, links()) for s in touched])
    uploads.append([["add_object", meta.to_wire()]] + [["trim", s, 0] for s in touched])
before = dict(store.put_bytes)
checkpoints_before = store.checkpoints
figures = {}

def commit_all():
    state_after = getattr(manifest, "state_after", None)
    cpu = time.thread_time()
    for ops in uploads:
        if state_after is not None:
            state_after(ops)
        else:  # before 0140 the uploader copied the state and applied the ops itself
            after = manifest.state.copy()
            for op in ops:
                after.apply(op)
        if manifest.commit(ops).seq % EVERY == 0:
            # Each checkpoint written, none replaced by the next while it
            # waits for the cleaner: the same checkpoints in every run.
            manifest.join_cleanup()
    figures["thread_cpu_s"] = time.thread_time() - cpu

# A full collection the set-up (an open's 400,000 objects at 10,000
# streams) has made due is run now: left to land in the counted window of
# one run and not the other's, it was some 130 M instructions.
__import__("gc").collect()
print("ready", flush=True)  # instructions are counted from here (callgrind_control)
sys.stdin.readline()
process_cpu = time.process_time()
committer = threading.Thread(target=commit_all)
committer.start()
committer.join()
manifest.join_cleanup()
figures["process_cpu_s"] = time.process_time() - process_cpu
figures["delta_bytes"] = store.put_bytes["log"] - before["log"]
figures["checkpoint_bytes"] = store.put_bytes["checkpoint"] - before["checkpoint"]
figures["checkpoints"] = store.checkpoints - checkpoints_before
figures["objects"] = len(manifest.state.objects)
with open(out, "w") as f:
    json.dump(figures, f)
print("done", flush=True)
sys.stdin.readline()
"""
)


def _child_args(
    streams: int, per_stream: int, commits: int, width: int, reopen: bool = False
) -> list[str]:
    counts = [streams, per_stream, commits, min(width, streams), int(reopen)]
    return ["-c", CHILD, *map(str, counts)]


def _run(tree: Path, args: list[str], cpu: bool) -> dict[str, Any]:
    """The child's own figures, and under callgrind (without ``cpu``) its
    threads' instructions over the commits alone (counted only from the
    end of the set-up, which otherwise takes minutes under callgrind): the
    committing thread's, and the checkpoint threads' (those after it)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        argv = [*args, str(out / "figures.json")]
        _callgrind_costs.run_in_windows(tree, argv, out, ("ready", "done"), counted=not cpu)
        figures: dict[str, Any] = json.loads((out / "figures.json").read_text())
        if not cpu:
            # The first dump (part 1) of each thread: 01 the main one, which
            # waited, 02 the committing one, the rest the checkpoints'.
            dumps = sorted(out.glob("callgrind.out.1-*"))
            counts = [_callgrind_costs._total(dump) for dump in dumps]
            figures["commit_thread_instructions"] = counts[1]
            figures["checkpoint_instructions"] = sum(counts[2:])
    return figures


def main() -> None:
    parser = _harness.parser(__doc__, quick="1 and 100 streams, 64 commits")
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--streams", default="1,100,1000,10000", help="stream counts, by commas")
    parser.add_argument("--objects-per-stream", type=int, default=3)
    parser.add_argument("--commits", type=int, default=128)
    parser.add_argument("--width", type=int, default=8, help="streams an upload's object holds")
    parser.add_argument(
        "--reopen", action="store_true", help="open again before the counted commits"
    )
    parser.add_argument("--cpu", action="store_true", help="CPU time instead of instructions")
    args = parser.parse_args()
    trees = args.tree or [Path(__file__).resolve().parent.parent]
    counts = [1, 100] if args.quick else [int(n) for n in args.streams.split(",")]
    commits = 64 if args.quick else args.commits
    results: dict[str, Any] = {
        "commits": commits,
        "objects_per_stream": args.objects_per_stream,
        "width": args.width,
        "reopen": args.reopen,
        "measure": "cpu" if args.cpu else "instructions",
        "trees": [str(t) for t in trees],
        **_harness.cpus(),
    }
    for streams in counts:
        child = _child_args(streams, args.objects_per_stream, commits, args.width, args.reopen)
        row: dict[str, Any] = {}
        for tree in trees:
            row[str(tree)] = _per_commit(_run(tree, child, args.cpu), commits)
        base = row[str(trees[0])]
        for tree in trees[1:]:
            row[f"{tree} vs {trees[0]}"] = {
                key: round(value / base[key], 3) if base[key] else None
                for key, value in row[str(tree)].items()
                if key != "objects"
            }
        results[f"s{streams}"] = row
    _harness.report(results, args.json, print_table)


def _per_commit(figures: dict[str, Any], commits: int) -> dict[str, float]:
    row = {
        "objects": figures["objects"],
        "delta_bytes": round(figures["delta_bytes"] / commits, 1),
        "checkpoint_bytes": round(figures["checkpoint_bytes"] / commits, 1),
        "checkpoints": figures["checkpoints"],
    }
    if "commit_thread_instructions" in figures:
        row["commit_instructions"] = round(figures["commit_thread_instructions"] / commits)
        row["checkpoint_instructions"] = round(figures["checkpoint_instructions"] / commits)
    else:
        row["commit_cpu_us"] = round(figures["thread_cpu_s"] / commits * 1e6, 1)
        row["process_cpu_us"] = round(figures["process_cpu_s"] / commits * 1e6, 1)
    return row


def print_table(results: dict[str, Any]) -> None:
    print(
        f"per commit ({results['commits']} commits, {results['width']} streams an upload, "
        f"{results['objects_per_stream']} objects a stream; {results['measure']}"
        f"{'; opened again before them' if results.get('reopen') else ''})"
    )
    trees = results["trees"]
    for key, row in results.items():
        if not key.startswith("s") or not isinstance(row, dict):
            continue
        print(f"\n{key[1:]} streams, {row[trees[0]]['objects']} objects")
        fields = [k for k in row[trees[0]] if k != "objects"]
        print(f"{'':<24}" + "".join(f"{f:>24}" for f in fields))
        for name, figures in row.items():
            label = name if len(name) <= 22 else "..." + name[-19:]
            cells = "".join(f"{'-' if figures.get(f) is None else figures[f]:>24}" for f in fields)
            print(f"{label:<24}{cells}")


if __name__ == "__main__":
    main()
