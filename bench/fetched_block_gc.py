"""The cyclic collector's work on blocks fetched from the object store.

    python bench/fetched_block_gc.py [--tree DIR]... [--blocks N] [--batch-bytes N]
        [--replay-mib N] [--rounds N] [--json]

For each source tree (a checkout of any revision, its C extension built;
this checkout when none is named), a child process with that tree on its
``PYTHONPATH`` measures, in turns, ``--rounds`` times:

- parse: ``--blocks`` blocks of 1 MiB of ``--batch-bytes`` batches, each
  read back from a local store (a GET's bytes) and split by
  ``parse_block``, all kept; then one ``gc.collect()``: the objects the
  collector tracks that are alive and were not before, a batch;
- replay: a stream of ``--replay-mib`` MiB of ``--batch-bytes`` batches,
  uploaded once (one bucket for every tree and round: the object format
  is the same), read from offset 0 to its end by a StreamStore that has
  only the bucket (every block from the object store, through the
  Fetcher, the block cache and its read-ahead), with a ``gc.callbacks``
  hook: each generation's collections, the longest pause and the
  collector's total, in the collecting thread's CPU time (which the
  machine's load does not stretch), and the replay's CPU time (the
  process's: the reader threads' too).

Every figure is beside the first tree's from the same round.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import _harness

HERE = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, os, sys, tempfile, time
from pathlib import Path
import native
from s3stream import StreamStore, StreamStoreConfig
from s3stream.objects import ObjectKind, StoredBatch, encode_object, parse_block
from s3stream.store import LocalStore

mode, bucket_dir, blocks, batch_bytes, replay_mib = sys.argv[1:6]
blocks, batch_bytes, replay_mib = int(blocks), int(batch_bytes), int(replay_mib)
MiB = 1 << 20
out = {"implementation": native.IMPLEMENTATION}

def bucket():
    return LocalStore(bucket_dir + "/bucket")

def quiet():  # no upload nor compaction but those the bench asks for
    return StreamStoreConfig(upload_interval_s=3600.0, compaction_interval_s=3600.0)

def payload(i):
    return (i % 251).to_bytes(1, "little") * batch_bytes

if mode == "setup":
    store = StreamStore.open(Path(bucket_dir) / "writer", bucket(), quiet())
    stream = store.create_stream()
    store.open_stream(stream, 1)
    count = replay_mib * MiB // batch_bytes
    with store.gathered():
        for i in range(count):
            store.append(stream, i, i, payload(i))
            if i % 20000 == 19999:
                assert store.flush(timeout=600)
    assert store.flush(timeout=600)
    store.close()
    out["stream"] = stream
    out["batches"] = count
elif mode == "parse":
    # Under the parent's scratch, which goes however a child ends (a timeout's kill too).
    with tempfile.TemporaryDirectory(dir=bucket_dir) as scratch:
        local = LocalStore(scratch)
        per_block = MiB // batch_bytes
        sent = [StoredBatch(i, i + 1, payload(i)) for i in range(per_block * blocks)]
        encoded = encode_object(ObjectKind.STREAM, [(1, sent)], block_bytes=MiB)
        local.put("object", encoded.data)
        infos = encoded.blocks
        del sent, encoded
        gc.collect()
        before = len(gc.get_objects())
        kept = []
        start = time.thread_time()
        for info in infos:
            data = local.get("object", info.position, info.position + info.size)
            kept.append(parse_block("object", info, data))
        out["parse_cpu_ms"] = (time.thread_time() - start) * 1e3
        gc.collect()
        batches = sum(len(b) for b in kept)
        out["parsed_batches"] = batches
        out["tracked_after_collect"] = len(gc.get_objects()) - before
        out["tracked_per_batch"] = out["tracked_after_collect"] / batches
else:  # replay
    stream = int(sys.argv[6])
    runs = [0, 0, 0]
    longest = [0.0, 0.0, 0.0]
    total = [0.0, 0.0, 0.0]
    state = {"cpu": 0.0}
    def hook(phase, info):
        if phase == "start":
            state["cpu"] = time.thread_time()
            return
        took = time.thread_time() - state["cpu"]
        g = info["generation"]
        runs[g] += 1
        longest[g] = max(longest[g], took)
        total[g] += took
    with tempfile.TemporaryDirectory(dir=bucket_dir) as scratch:
        store = StreamStore.open(Path(scratch) / "reader", bucket(), quiet())
        end = store.end_offset(stream)
        gc.collect()
        gc.callbacks.append(hook)
        start = time.process_time()
        offset = 0
        read = 0
        while offset < end:
            result = store.fetch(stream, offset, MiB)
            read += sum(len(b.payload) for b in result.batches)
            offset = result.next_offset
        cpu = time.process_time() - start
        gc.callbacks.remove(hook)
        out["replay_mib"] = read / MiB
        out["replay_cpu_ms"] = cpu * 1e3
        out["gets"] = store.reader.gets
        store.close(flush=False)
    for g in range(3):
        out[f"gen{g}_collections"] = runs[g]
        out[f"gen{g}_longest_ms"] = longest[g] * 1e3
        out[f"gen{g}_total_ms"] = total[g] * 1e3
    out["collector_total_ms"] = sum(total) * 1e3
    out["longest_pause_ms"] = max(longest) * 1e3
print(json.dumps(out))
"""


def _child(tree: Path, *args: object) -> dict[str, Any]:
    return _harness.child_json(tree, "-c", CHILD, *args)


FIGURES = (
    "tracked_per_batch",
    "parse_cpu_ms",
    "gen0_collections",
    "gen1_collections",
    "gen2_collections",
    "longest_pause_ms",
    "gen1_longest_ms",
    "collector_total_ms",
    "replay_cpu_ms",
)


def print_table(results: dict[str, Any]) -> None:
    """Each run's figures, and after a later tree's its ratio to the first
    tree's in the same round."""
    print(f"{results['batches']} batches of {results['batch_bytes']} bytes replayed")
    print(" ".join(f"{name:>20}" for name in ("round", "tree", *FIGURES, "loadavg")))
    for run in results["runs"]:
        base = next(r for r in results["runs"] if r["round"] == run["round"])
        cells = [str(run["round"]), Path(run["tree"]).name]
        cells += _harness.figure_cells(run, base, FIGURES)
        cells.append(f"{run['loadavg']:.1f}")
        print(" ".join(f"{cell:>20}" for cell in cells))


def main() -> None:
    parser = _harness.parser(__doc__, "8 blocks, a 16 MiB replay, one round")
    parser.add_argument("--tree", action="append", type=Path, default=[])
    parser.add_argument("--blocks", type=int, default=64)
    parser.add_argument("--batch-bytes", type=int, default=1024)
    parser.add_argument("--replay-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.blocks, args.replay_mib, args.rounds = 8, 16, 1
    trees = args.tree or [HERE]
    sizes = (args.blocks, args.batch_bytes, args.replay_mib)
    runs: list[dict[str, Any]] = []
    with _harness.scratch(None, "fetched-block-gc-") as bucket:
        made = _child(trees[-1], "setup", bucket, *sizes)
        for round_number in range(args.rounds):
            for tree in trees:
                parsed = _child(tree, "parse", bucket, *sizes)
                replayed = _child(tree, "replay", bucket, *sizes, made["stream"])
                runs.append(
                    {"round": round_number, "tree": str(tree), **parsed, **replayed,
                     "loadavg": os.getloadavg()[0]}
                )  # fmt: skip
    results = {"batches": made["batches"], "batch_bytes": args.batch_bytes, "runs": runs}
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
