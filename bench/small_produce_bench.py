"""The server's CPU per small Produce request: one librdkafka producer
(acks=all, linger.ms 0) sends 1-record batches round-robin to many
partitions at a steady rate, so that each Produce request carries one
partition's one-record batch, as librdkafka's requests to a topic of
thousands of partitions do.

    python bench/small_produce_bench.py [--partitions 1000] [--rate 2000]
                                        [--seconds 10] [--json] [--quick]

The figure is ``server_cpu_us_per_request``: the server process's CPU
(every thread's time on a CPU, from the scheduler's statistics) over the
produce, divided by the Produce requests librdkafka's statistics counted.
``threads`` splits it by thread (the event loop is the process's main
thread); ``records_per_request`` checks the shape.
Compare revisions with bench/compare.py, alternating.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import _harness
from _scale_parts import Server, create_topics
from confluent_kafka import KafkaError, Message, Producer

TOPIC = "small"
RECORD = b"x" * 100


def _thread_cpu(pid: int) -> dict[tuple[int, str], float]:
    """Each live thread's CPU seconds so far, by thread id and name (the
    main thread, which runs the event loop, named ``loop``): the
    scheduler's own count, in nanoseconds (/proc/PID/task/TID/schedstat),
    not /proc's stat, whose times move by the 4 ms tick."""
    used: dict[tuple[int, str], float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                ran_ns = int(stat.read().split()[0])
            with open(f"/proc/{pid}/task/{task}/comm", encoding="ascii") as comm:
                name = comm.read().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        used[(int(task), "loop" if int(task) == pid else name)] = ran_ns / 1e9
    return used


def _used_by_name(
    before: dict[tuple[int, str], float], after: dict[tuple[int, str], float]
) -> dict[str, float]:
    """The CPU each thread name took between two readings, thread by thread:
    a thread that ended between them is left out (its time cannot be read
    any more), never counted against another thread of its name."""
    used: dict[str, float] = {}
    for (tid, name), ran in after.items():
        used[name] = used.get(name, 0.0) + ran - before.get((tid, name), 0.0)
    return used


def produce(address: str, partitions: int, rate: float, seconds: float) -> dict[str, Any]:
    """Sends ``rate`` records a second for ``seconds``, one record to each
    partition in turn; returns the records and Produce requests sent."""
    stats: list[dict[str, Any]] = []
    producer = Producer(
        {
            "bootstrap.servers": address,
            "acks": "all",
            "linger.ms": 0,
            "compression.type": "none",
            "enable.idempotence": False,
            "statistics.interval.ms": 100,
            "stats_cb": lambda text: stats.append(json.loads(text)),
            "log_level": 3,
        }
    )
    producer.list_topics(TOPIC, timeout=60)
    errors: list[str] = []

    def delivered(err: KafkaError | None, _: Message) -> None:
        if err is not None:
            errors.append(str(err))

    count = int(rate * seconds)
    started = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate))
        while sent < due:
            producer.produce(TOPIC, RECORD, partition=sent % partitions, on_delivery=delivered)
            sent += 1
        producer.poll(0.0005)
    if producer.flush(120.0) > 0 or errors:
        raise RuntimeError(f"produce failed: {errors[:1] or 'undelivered after 120 s'}")
    stats.clear()
    deadline = time.perf_counter() + 5
    while not stats and time.perf_counter() < deadline:
        producer.poll(0.05)
    if not stats:
        raise RuntimeError("no statistics from librdkafka")
    requests = sum(
        broker["req"].get("Produce", 0)
        for broker in stats[-1]["brokers"].values()
        if broker.get("nodeid", -1) >= 0
    )
    return {"records": count, "requests": requests, "seconds": time.perf_counter() - started}


def run(partitions: int, rate: float, seconds: float, scratch: Path) -> dict[str, Any]:
    with Server(scratch, scratch / "data") as server:
        create_topics(server.address, {TOPIC: partitions})
        # A short warm-up: connections, metadata, the partitions' first appends.
        produce(server.address, partitions, rate, min(2.0, seconds))
        pid = server.process.pid
        before, idle_from = _thread_cpu(pid), time.perf_counter()
        time.sleep(1.0)
        idle = sum(_used_by_name(before, _thread_cpu(pid)).values())
        idle_cores = idle / (time.perf_counter() - idle_from)
        before = _thread_cpu(pid)
        sent = produce(server.address, partitions, rate, seconds)
        after = _thread_cpu(pid)
    requests = sent["requests"]  # the warm-up's producer was another client
    used = _used_by_name(before, after)
    total = sum(used.values())
    threads = {
        name: round(cpu / requests * 1e6, 1)
        for name, cpu in sorted(used.items(), key=lambda item: -item[1])
        if cpu > 0
    }
    return {
        "partitions": partitions,
        "rate": rate,
        "requests": requests,
        "records_per_request": round(sent["records"] / requests, 3),
        "server_cpu_us_per_request": round(total / requests * 1e6, 1),
        "loop_cpu_us_per_request": round(used.get("loop", 0.0) / requests * 1e6, 1),
        "idle_server_cores": round(idle_cores, 3),
        "threads": threads,
        "load_average": os.getloadavg()[0],
    }


def embedded(partitions: int, appends: int, scratch: Path) -> dict[str, Any]:
    """The same appends made in-process, with no socket and no client:
    ``Engine.submit_async`` of a one-record batch to each partition in
    turn on a uvloop loop, 64 in flight, each made a future as the Produce
    handler does and awaited; the loop thread's
    own CPU (``time.thread_time``) per append. Less of the machine's noise
    than the whole server's, for costs of a microsecond or two."""
    import asyncio

    import uvloop

    import engine
    import native
    from native import RecordSpec

    batch = native.encode_batch([RecordSpec(1_700_000_000_000, None, RECORD, ())])
    opened = engine.open(scratch / "embedded")
    try:
        opened.create_topic(TOPIC, partitions)

        async def run() -> float:
            in_flight: list[asyncio.Future[Any]] = []
            started = time.thread_time()
            for i in range(appends):
                # A fresh copy: the append rewrites the batch's header in place.
                # ensure_future, as the Produce handler does: an awaitable
                # awaited only later must run (and be counted) meanwhile.
                durable = opened.submit_async(TOPIC, i % partitions, bytearray(batch))
                in_flight.append(asyncio.ensure_future(durable))
                if len(in_flight) == 64:
                    await in_flight.pop(0)
            for durable in in_flight:
                await durable
            return time.thread_time() - started

        loop = uvloop.new_event_loop()
        try:
            loop.run_until_complete(run())  # warm-up: every partition's first append
            used = loop.run_until_complete(run())
        finally:
            loop.close()
    finally:
        opened.close()
    return {"embedded_loop_cpu_us_per_append": round(used / appends * 1e6, 2)}


def _print(results: dict[str, Any]) -> None:
    if "requests" not in results:
        print(
            "in-process, the loop's CPU per append:",
            results["embedded_loop_cpu_us_per_append"],
            "us",
        )
        return
    print(
        f"{results['partitions']} partitions, {results['rate']:.0f} records/s,"
        f" {results['requests']} Produce requests"
        f" ({results['records_per_request']} records each), load {results['load_average']:.2f}"
    )
    print(f"  server CPU per request: {results['server_cpu_us_per_request']} us")
    print(f"  the loop's:             {results['loop_cpu_us_per_request']} us")
    print(f"  idle server: {results['idle_server_cores']} cores")
    if "embedded_loop_cpu_us_per_append" in results:
        print(
            f"  in-process, the loop's per append: {results['embedded_loop_cpu_us_per_append']} us"
        )
    for name, us in results["threads"].items():
        print(f"    {name:<20} {us:>8.1f} us")


def main() -> None:
    parser = _harness.parser(__doc__, "1,000 requests")
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="records (requests) a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--embedded-only", action="store_true", help="only the in-process appends")
    parser.add_argument("--data-dir", default=None, help="scratch directory (default: temp)")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else args.seconds
    with _harness.scratch(args.data_dir, "small-produce-") as scratch:
        results = {} if args.embedded_only else run(args.partitions, args.rate, seconds, scratch)
        results.update(embedded(args.partitions, int(args.rate * seconds), scratch))
        results["load_average"] = os.getloadavg()[0]
    _harness.report(results, args.json, _print)


if __name__ == "__main__":
    main()
