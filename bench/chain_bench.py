"""What the hash chain costs the upload and what verifying it runs at.

    python bench/chain_bench.py [--quick] [--json] [--mib 64]

The chain (docs/tamper-evidence.md) is computed where the uploader lays
out an object, on its own thread, never on the produce path. For batches
from 1 KiB (a small produce) through 16 KiB (a full producer batch) to
1 MiB (librdkafka's batches under a bulk load) it measures, in one run:

* the chain's hashes alone over the same batches, per batch as the chain
  calls them: SHA-256 (``sha256_mib_s``, algorithm 1, what versions before
  BLAKE3 link with), BLAKE3 keyed with the link (``blake3_mib_s``) and the
  chain as it links now (``chain_mib_s``, algorithm 2: BLAKE3 from
  ``BLAKE3_FROM_BYTES`` on, SHA-256 below); ``chain_vs_sha256`` is how
  many times faster than SHA-256 the chain links now, per batch size, the
  figure the size rule was chosen by;
* laying out the batches as objects without links (``prepare_runs``, the
  upload's work before the chain) and with them (``prepare_objects``, what
  uploads do now): ``linked_vs_unlinked`` is what the chain adds to an
  upload's CPU;
* ``verify_stream`` over the objects beside parsing the same objects
  (``parse_object``): ``verify_vs_parse`` is what proving the chain costs
  over reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import _harness
import blake3

from s3stream.chain_hash import CURRENT, ChainHash, extend
from s3stream.chain_verify import verify_stream
from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch, parse_object
from s3stream.store import MemoryStore
from s3stream.uploader import ObjectIds, Run, add_ops, prepare_objects, prepare_runs

SIZES = (1024, 1536, 2048, 4096, 16 * 1024, 64 * 1024, 1024 * 1024)
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

    stored = [b for batches in uploads for b in batches]

    def sha256() -> None:
        extend(ChainHash.SHA256, bytes(32), stored)

    def blake3_keyed() -> None:
        link = bytes(32)
        for b in stored:
            link = blake3.blake3(b.payload, key=link).digest()

    def current() -> None:
        extend(CURRENT, bytes(32), stored)

    bucket, state = linked()

    def parse() -> None:
        for meta in state.objects.values():
            parse_object(meta.key, bucket.get(meta.key))

    def verify() -> None:
        assert verify_stream(bucket, state, 1).ok

    times = {
        "unlinked_s": _best(unlinked, rounds),
        "linked_s": _best(linked, rounds),
        "sha256_s": _best(sha256, rounds),
        "blake3_s": _best(blake3_keyed, rounds),
        "chain_s": _best(current, rounds),
        "parse_s": _best(parse, rounds),
        "verify_s": _best(verify, rounds),
    }
    mib = count * batch_bytes / (1 << 20)
    return {
        "batches": count,
        "mib": mib,
        **times,
        "sha256_mib_s": mib / times["sha256_s"],
        "blake3_mib_s": mib / times["blake3_s"],
        "chain_mib_s": mib / times["chain_s"],
        "chain_vs_sha256": times["sha256_s"] / times["chain_s"],
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
    for size in SIZES:
        results[f"batch_{size}"] = _measure(size, total, rounds)
    _harness.report(results, args.json, _print_table)


def _print_table(results: dict[str, Any]) -> None:
    print(f"cpus: {results['cpus']}")
    header = (
        f"{'batch':>8} {'MiB':>4} {'sha256 MiB/s':>12} {'blake3 MiB/s':>12} {'chain MiB/s':>11} "
        f"{'chain/sha256':>12} {'unlinked s':>10} {'linked s':>8} {'linked/unl':>10} "
        f"{'verify MiB/s':>12} {'verify/parse':>12}"
    )
    print(header)
    for name, r in results.items():
        if not name.startswith("batch_"):
            continue
        print(
            f"{name[6:]:>8} {r['mib']:>4.0f} {r['sha256_mib_s']:>12.0f} {r['blake3_mib_s']:>12.0f} "
            f"{r['chain_mib_s']:>11.0f} {r['chain_vs_sha256']:>12.2f} {r['unlinked_s']:>10.3f} "
            f"{r['linked_s']:>8.3f} {r['linked_vs_unlinked']:>10.2f} {r['verify_mib_s']:>12.0f} "
            f"{r['verify_vs_parse']:>12.2f}"
        )


if __name__ == "__main__":
    main()
