"""Mirror throughput: ``tidelog mirror`` copying a topic from one tidelog
server to another, against producing the same records straight to the
same target.

    python bench/mirror_bench.py [--records 200000] [--record-bytes 1024]
                                 [--partitions 3] [--quick] [--json] [--data-dir PATH]

One run, on loopback, every figure measured in it:

- two servers: ``python -m engine serve`` in child processes, the source
  and the target (each its default object store, beside its data);
- load (not measured): ``--records`` records of ``--record-bytes`` value
  bytes (and a 16-byte key, one header) produced to the source's topic of
  ``--partitions`` partitions;
- baseline, ``direct``: the same records produced straight to a topic of the
  target by an idempotent producer (acks=all), as the mirror's is, timed
  from the first produce() to the last delivery report;
- ``mirror``: ``tidelog mirror --once`` run in this process
  (engine/mirror/runner.py), timed from its start (reading its progress,
  creating the topic on the target) to its end (every record acknowledged,
  syncs and progress written, checkpoints done).

Both report records/s and MB/s (value bytes); ``mirror_vs_direct`` is the
mirror's records/s over the baseline's. Both run in this process, so each
also reports the CPU this process spent meanwhile, its client threads
included (``direct_cpu_s``, ``mirror_cpu_s``; the servers' not counted):
on a machine shared with other work, ``mirror_cpu_vs_direct`` (the
mirror's CPU over the baseline's) moves far less between runs than the
rates do. ``--json`` prints one JSON object;
its headline keys are mirror_records_per_s, direct_records_per_s and
mirror_vs_direct.
"""

from __future__ import annotations

import time
from typing import Any

import _harness
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_bench import ServerProcess, free_port

from engine.mirror.runner import MirrorRunner
from engine.mirror.settings import MirrorSettings

DEFAULTS = {"records": 200_000, "record_bytes": 1024, "partitions": 3}
QUICK = {"records": 20_000, "record_bytes": 256, "partitions": 3}
PRODUCER: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "log_level": 3,
}


def _create(address: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": address})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(60)


def _produce(
    address: str, topic: str, records: int, size: int, partitions: int
) -> tuple[float, float]:
    """Seconds from the first produce() to the last delivery report, and
    the CPU seconds this process spent meanwhile."""
    producer = Producer({"bootstrap.servers": address, **PRODUCER})
    value = b"v" * size
    started = time.perf_counter()
    cpu = time.process_time()
    for n in range(records):
        while True:
            try:
                producer.produce(
                    topic,
                    value,
                    f"key-{n:012d}".encode(),
                    partition=n % partitions,
                    headers=[("n", b"1")],
                )
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(600) != 0:
        raise RuntimeError(f"{topic}: records not delivered")
    return time.perf_counter() - started, time.process_time() - cpu


def run(records: int, record_bytes: int, partitions: int, data_dir: str | None) -> dict[str, Any]:
    with _harness.scratch(data_dir, "mirror-bench-") as root:
        source = ServerProcess(root / "source", free_port(), root)
        target = ServerProcess(root / "target", free_port(), root)
        source.start()
        target.start()
        source.wait_ready()
        target.wait_ready()
        try:
            _create(source.address, "mirrored", partitions)
            _create(target.address, "direct", partitions)
            _produce(source.address, "mirrored", records, record_bytes, partitions)
            direct_s, direct_cpu_s = _produce(
                target.address, "direct", records, record_bytes, partitions
            )
            started = time.perf_counter()
            cpu = time.process_time()
            report = MirrorRunner(
                MirrorSettings(source.address, target.address, topics="mirrored"), once=True
            ).run()
            mirror_s = time.perf_counter() - started
            mirror_cpu_s = time.process_time() - cpu
        finally:
            exits = [source.stop(), target.stop()]
    megabytes = records * record_bytes / 1e6
    return {
        "records": records,
        "record_bytes": record_bytes,
        "partitions": partitions,
        "copied": report.copied,
        "syncs": report.syncs,
        "direct_s": direct_s,
        "mirror_s": mirror_s,
        "direct_records_per_s": records / direct_s,
        "mirror_records_per_s": records / mirror_s,
        "direct_mb_per_s": megabytes / direct_s,
        "mirror_mb_per_s": megabytes / mirror_s,
        "mirror_vs_direct": direct_s / mirror_s,
        "direct_cpu_s": direct_cpu_s,
        "mirror_cpu_s": mirror_cpu_s,
        "mirror_cpu_vs_direct": mirror_cpu_s / direct_cpu_s,
        "server_exit_codes": exits,
        **_harness.cpus(),
        "librdkafka": _harness.librdkafka_version(),
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['records']:,} records of {results['record_bytes']} B in"
        f" {results['partitions']} partitions, tidelog -> tidelog on loopback"
    )
    print(f"{'':10} {'records/s':>12} {'MB/s':>8} {'seconds':>8} {'CPU s':>8}")
    for name in ("direct", "mirror"):
        print(
            f"{name:10} {results[f'{name}_records_per_s']:>12,.0f}"
            f" {results[f'{name}_mb_per_s']:>8.1f} {results[f'{name}_s']:>8.2f}"
            f" {results[f'{name}_cpu_s']:>8.2f}"
        )
    print(f"mirror_vs_direct: {results['mirror_vs_direct']:.2f}")
    print(f"mirror_cpu_vs_direct: {results['mirror_cpu_vs_direct']:.2f}")


def main() -> None:
    parser = _harness.parser(__doc__, f"{QUICK['records']:,} records of {QUICK['record_bytes']} B")
    parser.add_argument("--records", type=int)
    parser.add_argument("--record-bytes", type=int)
    parser.add_argument("--partitions", type=int)
    parser.add_argument("--data-dir", help="where the servers' data goes (a temp dir by default)")
    args = parser.parse_args()
    base = QUICK if args.quick else DEFAULTS
    results = run(
        args.records or base["records"],
        args.record_bytes or base["record_bytes"],
        args.partitions or base["partitions"],
        args.data_dir,
    )
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
