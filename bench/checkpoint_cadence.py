"""Checkpoints and state appends per second of partitions written at a
trickle, by the cadence (docs/design/0128) against a checkpoint of every
changed partition at every look (the cadence before it), in one run.

    python bench/checkpoint_cadence.py [--partitions N]... [--record-bytes B]
        [--records-per-s R] [--seconds S] [--json]

Each partition gets ``--records-per-s`` records of ``--record-bytes`` a
second, round robin, on a virtual clock: between two looks of the
engine's thread (``checkpoint_interval_s``, 5 s) each partition is
appended one batch of what that interval brings it, and the look is
taken. Counts, not times: they do not move with the machine's load. The
state appends are those of the partitions' state streams (a checkpoint
in parts counts each part). The last line per count is the engine's
reopen after a crash at the end, which replays what no checkpoint covers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import engine
import native
from engine.clock import ManualClock
from native import RecordSpec
from s3stream import StreamStoreConfig

LOOK_S = 5.0
STORE = StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600)


def _run(
    partitions: int, record_bytes: int, records_per_s: float, seconds: float, every_look: bool
) -> dict[str, Any]:
    clock = ManualClock()
    config = engine.EngineConfig(
        checkpoint_interval_s=3600.0, cleaner_interval_s=3600.0, store=STORE
    )
    with tempfile.TemporaryDirectory(prefix="cadence-") as root:
        e = engine.open(Path(root), config=config, clock=clock)
        e.create_topic("t", partitions)
        leaders = [e.partition("t", i) for i in range(partitions)]
        per_look = max(1, round(records_per_s * LOOK_S))
        batch = native.encode_batch(
            [RecordSpec(clock.time_ms(), None, b"v" * record_bytes)] * per_look
        )
        looks = int(seconds / LOOK_S)
        for _ in range(looks):
            # One sync of the WAL for the look's appends, not one each.
            pending = [e.submit("t", i, batch) for i in range(partitions)]
            for future in pending:
                future.result()
            clock.advance(LOOK_S)
            if every_look:
                e.checkpoint()
            else:
                e.checkpoint_due()
        appends = sum(e.store.next_offset(p.state_stream_id) for p in leaders)
        checkpointed = sum(1 for p in leaders if p.checkpointed_end >= 0)
        unsaved = sum(p.unsaved_bytes for p in leaders)
        appended = sum(p.bytes_in for p in leaders)
        e.close(flush=False)
        started = time.perf_counter()
        reopened = engine.open(Path(root), config=config, clock=clock)
        reopen_s = time.perf_counter() - started
        reopened.close(flush=False)
    elapsed = looks * LOOK_S
    return {
        "state_appends_per_s": appends / elapsed,
        "partitions_checkpointed": checkpointed,
        "appended_mib": appended / 2**20,
        "replay_mib_at_crash": unsaved / 2**20,
        "reopen_s": reopen_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, action="append", default=[])
    parser.add_argument("--record-bytes", type=int, default=100)
    parser.add_argument("--records-per-s", type=float, default=1.0, help="per partition")
    parser.add_argument("--seconds", type=float, default=600.0, help="virtual")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for partitions in args.partitions or [1000, 10_000]:
        for name, every_look in (("every_look", True), ("cadence", False)):
            results[f"{partitions}/{name}"] = _run(
                partitions, args.record_bytes, args.records_per_s, args.seconds, every_look
            )
        base, new = results[f"{partitions}/every_look"], results[f"{partitions}/cadence"]
        results[f"{partitions}/ratio"] = new["state_appends_per_s"] / base["state_appends_per_s"]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"{'run':<22} {'appends/s':>10} {'replay MiB':>11} {'reopen s':>9}")
    for key, row in results.items():
        if isinstance(row, dict):
            print(
                f"{key:<22} {row['state_appends_per_s']:>10.1f}"
                f" {row['replay_mib_at_crash']:>11.2f} {row['reopen_s']:>9.2f}"
            )
        else:
            print(f"{key:<22} {row:>10.4f}")


if __name__ == "__main__":
    main()
