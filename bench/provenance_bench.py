"""What provenance stamping costs on the produce path: MB/s appended to a
``tidelog.provenance = stamp`` topic beside a ``none`` topic of the same
engine, in one run, uncompressed and zstd.

    python bench/provenance_bench.py [--mb 32] [--record-bytes 256] [--quick] [--json]

The batches (64 KiB of records each, from native.encode_batch) are made
before timing; each round appends ``--mb`` of them through Engine.submit to
each topic in turn and waits until they are durable (fsynced in the WAL),
with a Provenance like the one a SASL connection carries. Rounds alternate
the topics, so drift on a shared machine touches both; the figure is the
best round of each.

- ``none_mb_s`` / ``stamp_mb_s``: produce MB/s (input bytes) per codec;
- ``stamp_vs_none``: the share of the none topic's rate the stamp topic keeps.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import Future
from typing import Any

import _harness

import engine
import native
from engine.partition import AppendResult
from engine.provenance import Provenance
from native import Compression, RecordSpec
from s3stream import StreamStoreConfig

BATCH_BYTES = 64 * 1024
ROUNDS = 3
WRITER = Provenance("User:agent-17", "SASL_SSL", "planner-7", "10.0.0.17:53122")


def batches(total: int, record_bytes: int, codec: int) -> list[bytes]:
    per_batch = max(1, BATCH_BYTES // record_bytes)
    # Hex text: it compresses about as well as the JSON of agents' records.
    noise = random.Random(7)
    batch = native.encode_batch(
        [
            RecordSpec(
                1_700_000_000_000 + i,
                b"key-%d" % i,
                noise.randbytes(record_bytes // 2 + 1).hex()[:record_bytes].encode(),
            )
            for i in range(per_batch)
        ],
        compression=codec,
    )
    return [batch] * max(1, total // len(batch))


def produce(e: engine.Engine, topic: str, data: list[bytes]) -> float:
    """MB/s of input appended and durable."""
    start = time.perf_counter()
    pending: list[Future[AppendResult]] = [
        e.submit(topic, 0, bytearray(batch), provenance=WRITER) for batch in data
    ]
    for future in pending:
        future.result(60)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in data) / elapsed / 1e6


def main() -> None:
    parser = _harness.parser(__doc__, "4 MB per round")
    parser.add_argument("--mb", type=int, default=32)
    parser.add_argument("--record-bytes", type=int, default=256)
    parser.add_argument("--dir", default=None, help="where the scratch data directory goes")
    args = parser.parse_args()
    total = (4 if args.quick else args.mb) * 1024 * 1024
    config = engine.EngineConfig(
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
    )
    results: dict[str, Any] = {
        "implementation": native.IMPLEMENTATION,
        "mb_per_round": total // (1024 * 1024),
        "record_bytes": args.record_bytes,
        **_harness.cpus(),
    }
    with _harness.scratch(args.dir, "provenance-bench-") as root:
        e = engine.open(root / "data", str(root / "bucket"), config)
        try:
            for name, codec in (("none", Compression.NONE), ("zstd", Compression.ZSTD)):
                data = batches(total, args.record_bytes, codec)
                e.create_topic(f"plain-{name}", 1, {"retention.bytes": str(total)})
                e.create_topic(
                    f"stamp-{name}",
                    1,
                    {"tidelog.provenance": "stamp", "retention.bytes": str(total)},
                )
                best = {"none": 0.0, "stamp": 0.0}
                for _ in range(ROUNDS):
                    best["none"] = max(best["none"], produce(e, f"plain-{name}", data))
                    best["stamp"] = max(best["stamp"], produce(e, f"stamp-{name}", data))
                results[name] = {
                    "none_mb_s": round(best["none"], 1),
                    "stamp_mb_s": round(best["stamp"], 1),
                    "stamp_vs_none": round(best["stamp"] / best["none"], 3),
                }
        finally:
            e.close()
    _harness.report(results, args.json, _table)


def _table(results: dict[str, Any]) -> None:
    print(
        f"produce to one partition, {results['mb_per_round']} MB per round, "
        f"{results['record_bytes']}-byte records, native: {results['implementation']}"
    )
    for codec in ("none", "zstd"):
        row = results[codec]
        print(
            f"  {codec:<5} none topic {row['none_mb_s']:>8.1f} MB/s   "
            f"stamp topic {row['stamp_mb_s']:>8.1f} MB/s   stamp/none {row['stamp_vs_none']:.2f}"
        )


if __name__ == "__main__":
    main()
