"""Reading a partition back and building record batches, for the engine's tests.

Reads go through ``Engine.fetch`` and ``native.decode_records`` rather than
the embedded consumer, so a test of the log does not depend on the consumer.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import native
from engine import ConsumerRecord, Engine, TopicPartition
from native import Record, RecordSpec

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_partition(e: Engine, topic: str, partition: int, start: int | None = None) -> list[Record]:
    """Every record from ``start`` (default: the log start) to the high
    watermark, checking that each batch's records lie at or after the
    offset asked for."""
    log_start, end = e.offsets(topic, partition)
    offset = log_start if start is None else start
    records: list[Record] = []
    while offset < end:
        fetched = e.fetch(topic, partition, offset, 1 << 20)
        if fetched.read_pending:  # the store is slow: no records yet, ask again
            continue
        for payload in fetched.records:
            records.extend(r for r in native.decode_records(payload) if r.offset >= offset)
        assert fetched.next_offset > offset, f"{topic}-{partition}: fetch at {offset} stalled"
        offset = fetched.next_offset
    return records


def consume_all(e: Engine, topic: str) -> list[ConsumerRecord]:
    """Every record of every partition of ``topic``, through the embedded
    consumer (so timestamps are the effective ones: LogAppendTime applied)."""
    ends = {
        TopicPartition(topic, p): e.offsets(topic, p)[1] for p in range(e.partition_count(topic))
    }
    with e.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign(ends)
        consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            got = consumer.poll(timeout=10)
            assert got, f"{topic}: no records before the high watermarks {ends}"
            records.extend(got)
    return sorted(records, key=lambda r: (r.partition, r.offset))


def batch(
    values: list[bytes],
    *,
    key: bytes | None = b"k",
    timestamp: int = 1_700_000_000_000,
    **options: object,
) -> bytes:
    """One v2 record batch of ``values`` (``options`` go to native.encode_batch)."""
    specs = [RecordSpec(timestamp + i, key, value) for i, value in enumerate(values)]
    return native.encode_batch(specs, **options)  # type: ignore[arg-type]


def produce_in_transaction(
    e: Engine, topic: str, partition: int, value: bytes, producer_id: int, epoch: int
) -> None:
    """Writes ``value`` to ``topic``-``partition`` as the producer's first
    batch there (sequence 0) in its open transaction."""
    e.produce(
        topic,
        partition,
        batch(
            [value],
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=0,
            is_transactional=True,
        ),
    )


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process that imports tidelog from this tree."""
    env = dict(os.environ, **extra)
    paths = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def child_command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name(script)), *args]


def run_child(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs ``command`` as a child that imports tidelog from this tree, its
    output captured as text; fails the test unless it exits 0."""
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done
