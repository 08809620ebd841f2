"""What a partition's checkpoint costs when many producers wrote to it and
one goes on at a trickle: bytes appended to the state stream and the
partition lock's hold per checkpoint, and the recovery after a crash.

    python bench/producer_checkpoint_bench.py [--producers 100000] [--checkpoints 40]
                                              [--quick] [--json]

``--producers`` idempotent producers write one batch each to a one-partition
topic, and a checkpoint is waited on; then, ``--checkpoints`` times, one of
them writes one batch and the partition is checkpointed (waited on until
durable). Only public calls are used, so the script measures any revision
put first on ``PYTHONPATH``: compare revisions by running it against each
in turns.

- ``bytes_median`` / ``bytes_mean``: bytes the store accepted for the state
  stream per checkpoint (a checkpoint in parts counts its parts; the mean
  includes the full checkpoints among them);
- ``hold_ms_median`` / ``hold_ms_mean``: the partition lock held per
  checkpoint (every hold inside the call, summed);
- ``recovery_s``: the engine opened again after a crash (no close's
  checkpoint) and the partition's leader rebuilt;
- ``table_bytes``: the producer table, packed.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import _harness
import msgpack

import engine
import native
from native import RecordSpec
from s3stream import StreamStoreConfig

TS = 1_700_000_000_000


class TimedLock:
    """The partition's lock, each hold's seconds noted (the same lock
    underneath: exclusion is unchanged)."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.holds: list[float] = []
        self._since = 0.0

    def __enter__(self) -> TimedLock:
        self.lock.acquire()
        self._since = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.holds.append(time.perf_counter() - self._since)
        self.lock.release()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return self.lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self.lock.release()


def _batch(producer_id: int, sequence: int) -> bytes:
    return native.encode_batch(
        [RecordSpec(TS, None, b"v")],
        producer_id=producer_id,
        producer_epoch=0,
        base_sequence=sequence,
    )


def run(root: Path, producers: int, checkpoints: int) -> dict[str, float]:
    config = engine.EngineConfig(
        store=StreamStoreConfig(upload_interval_s=3600, compaction_interval_s=3600),
        checkpoint_interval_s=3600,
        cleaner_interval_s=3600,
    )
    e = engine.open(root / "data", f"file://{root / 'bucket'}", config)
    e.create_topic("t", 1)
    pids = [e.init_producer_id()[0] for _ in range(producers)]
    for pid in pids:
        e.produce("t", 0, _batch(pid, 0))
    partition = e.partition("t", 0)
    first = partition.checkpoint()
    assert first is not None
    first.result(120)
    table = len(msgpack.packb(partition.producers.to_wire(), use_bin_type=True))
    state = partition.state_stream_id
    appended = [0]
    submit = e.store.submit

    def counted(stream_id: int, base: int, last: int, payload: Any, *a: Any, **k: Any) -> Any:
        handle = submit(stream_id, base, last, payload, *a, **k)
        if stream_id == state:
            appended[0] += len(payload)
        return handle

    e.store.submit = counted  # type: ignore[method-assign]
    timed = TimedLock(partition.lock)
    partition.lock = timed  # type: ignore[assignment]
    sizes: list[int] = []
    holds: list[float] = []
    for sequence in range(1, checkpoints + 1):
        e.produce("t", 0, _batch(pids[0], sequence))
        appended[0] = 0
        timed.holds.clear()
        written = partition.checkpoint()
        assert written is not None
        written.result(120)
        sizes.append(appended[0])
        holds.append(sum(timed.holds))
    e.close(flush=False)
    started = time.perf_counter()
    e = engine.open(root / "data", f"file://{root / 'bucket'}", config)
    assert len(e.partition("t", 0).producers.producers) == producers
    recovery = time.perf_counter() - started
    e.close()
    return {
        "table_bytes": table,
        "bytes_median": statistics.median(sizes),
        "bytes_mean": statistics.fmean(sizes),
        "hold_ms_median": 1000 * statistics.median(holds),
        "hold_ms_mean": 1000 * statistics.fmean(holds),
        "recovery_s": recovery,
    }


def _table(results: dict[str, float]) -> None:
    for name, value in results.items():
        print(f"{name:>16}  {value:,.3f}")


def main() -> None:
    parser = _harness.parser(__doc__, "2,000 producers, 5 checkpoints")
    parser.add_argument("--producers", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=int, default=40)
    args = parser.parse_args()
    producers, checkpoints = (2000, 5) if args.quick else (args.producers, args.checkpoints)
    with _harness.scratch(None, "producer-checkpoint-bench-") as root:
        results = run(root, producers, checkpoints)
    _harness.report(results, args.json, _table)


if __name__ == "__main__":
    main()
