"""What the hash chain costs the upload and what verifying it runs at.

    python bench/chain_bench.py [--quick] [--json] [--mib 64]

The chain (docs/tamper-evidence.md) is computed where the uploader lays
out an object, on its own thread, never on the produce path. For batches
of 1 KiB and of 16 KiB (a small produce and a full producer batch) it
measures, in one run, laying out the same batches as objects without links
(``prepare_runs``, the upload's work before the chain) and with them
(``prepare_objects``, what uploads do now): ``linked_vs_unlinked`` is the
ratio of their times, what the chain adds to an upload's CPU. Beside them:
SHA-256 alone over the batches, and ``verify_stream`` over the objects
beside parsing the same objects (``parse_object``), so
``verify_vs_parse`` is what proving the chain costs over reading.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import _harness

from s3stream.chain_verify import verify_stream
from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch, parse_object
from s3stream.store import MemoryStore
from s3stream.uploader import ObjectIds, Run, add_ops, prepare_objects, prepare_runs

UPLOAD_BYTES = 8 * 1024 * 1024
"""One upload's worth of a stream (the log cache's default upload size)."""


def _best(call: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _measure(batch_bytes: int, total: int, rounds: int) -> dict[str, Any]:
    payload = os.urandom(batch_bytes)
    count = total // batch_bytes
    per_upload = max(1, UPLOAD_BYTES // batch_bytes)
    uploads = [
        [StoredBatch(o, o + 1, payload) for o in range(b, min(b + per_upload, count))]
        for b in range(0, count, per_upload)
    ]
    layout = {"epoch": 1, "now_ms": 0, "block_bytes": 1 << 20, "stream_object_bytes": 1 << 62}

    def unlinked() -> None:
        ids = ObjectIds(1)
        for batches in uploads:
            run = Run(batches[0].base_offset, batches[-1].end_offset, batches)
            prepare_runs([(1, [run])], ids=ids, **layout)

    def linked() -> tuple[MemoryStore, ManifestState]:
        bucket, state, ids = MemoryStore(), ManifestState(), ObjectIds(1)
        state.apply(["create_stream", 1, 0])
        for batches in uploads:
            objects = prepare_objects([(1, batches)], state=state, ids=ids, **layout)
            for prepared in objects:
                bucket.put(prepared.meta.key, prepared.data)
            for op in add_ops(objects):
                state.apply(op)
        return bucket, state

    def hashing() -> None:
        link = bytes(32)
        for batches in uploads:
            for b in batches:
                digest = hashlib.sha256(link)
                digest.update(b.payload)
                link = digest.digest()

    bucket, state = linked()

    def parse() -> None:
        for meta in state.objects.values():
            parse_object(meta.key, bucket.get(meta.key))

    def verify() -> None:
        assert verify_stream(bucket, state, 1).ok

    times = {
        "unlinked_s": _best(unlinked, rounds),
        "linked_s": _best(linked, rounds),
        "sha256_s": _best(hashing, rounds),
        "parse_s": _best(parse, rounds),
        "verify_s": _best(verify, rounds),
    }
    mib = count * batch_bytes / (1 << 20)
    return {
        "batches": count,
        "mib": mib,
        **times,
        "sha256_mib_s": mib / times["sha256_s"],
        "verify_mib_s": mib / times["verify_s"],
        "linked_vs_unlinked": times["linked_s"] / times["unlinked_s"],
        "verify_vs_parse": times["verify_s"] / times["parse_s"],
    }


def main() -> None:
    parser = _harness.parser(__doc__, "8 MiB per size, one round")
    parser.add_argument("--mib", type=int, default=64, help="MiB of batches per size")
    args = parser.parse_args()
    total = (8 if args.quick else args.mib) << 20
    rounds = 1 if args.quick else 3
    results: dict[str, Any] = {"cpus": _harness.cpus()}
    for size in (1024, 16 * 1024):
        results[f"batch_{size}"] = _measure(size, total, rounds)
    _harness.report(results, args.json, _print_table)


def _print_table(results: dict[str, Any]) -> None:
    print(f"cpus: {results['cpus']}")
    header = (
        f"{'batch':>8} {'MiB':>6} {'unlinked s':>11} {'linked s':>9} {'linked/unl':>10} "
        f"{'sha256 MiB/s':>13} {'verify MiB/s':>13} {'verify/parse':>12}"
    )
    print(header)
    for name, r in results.items():
        if not name.startswith("batch_"):
            continue
        print(
            f"{name[6:]:>8} {r['mib']:>6.0f} {r['unlinked_s']:>11.3f} {r['linked_s']:>9.3f} "
            f"{r['linked_vs_unlinked']:>10.2f} {r['sha256_mib_s']:>13.0f} "
            f"{r['verify_mib_s']:>13.0f} {r['verify_vs_parse']:>12.2f}"
        )


if __name__ == "__main__":
    main()
