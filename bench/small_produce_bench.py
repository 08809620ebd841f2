"""The server's CPU per small Produce request: one librdkafka producer
(acks=all, linger.ms 0) sends 1-record batches round-robin to many
partitions at a steady rate, so that each Produce request carries one
partition's one-record batch, as librdkafka's requests to a topic of
thousands of partitions do.

    python bench/small_produce_bench.py [--partitions 1000] [--rate 2000]
                                        [--seconds 10] [--json] [--quick]
                                        [--pipelined]

The figure is ``server_cpu_us_per_request``: the server process's CPU
(every thread's time on a CPU, from the scheduler's statistics) over the
produce, divided by the Produce requests librdkafka's statistics counted.
``threads`` splits it by thread (the event loop is the process's main
thread); ``records_per_request`` checks the shape.

``--pipelined`` measures the same requests without librdkafka or its
pacing: a raw socket sends prepared one-partition Produce v9 requests
(one 100-byte record each), 32 in flight, as fast as they are answered,
in six spans of a quarter of ``--requests`` each; the figures are the
lowest and the median span's server CPU and loop CPU per request. Many
requests arrive in each read and share a WAL group, so the loop's share is
mostly its Python per request, which the paced run hides under its
wake-ups.
Compare revisions with bench/compare.py, alternating.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
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


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _produce_v9(correlation_id: int, topic: str, partition: int, batch: bytes) -> bytes:
    """A Produce v9 request frame (flexible, header v2): acks=all, one
    topic, one partition's ``batch``, no tagged fields."""
    client = b"small-produce-bench"
    name = topic.encode()
    body = b"".join(
        (
            struct.pack(">hhih", 0, 9, correlation_id, len(client)),
            client,
            b"\0",  # the header's tagged fields
            b"\0",  # no transactional id
            struct.pack(">hi", -1, 30_000),
            _uvarint(2),  # one topic
            _uvarint(len(name) + 1),
            name,
            _uvarint(2),  # one partition
            struct.pack(">i", partition),
            _uvarint(len(batch) + 1),
            batch,
            b"\0\0\0",  # the partition's, the topic's and the request's tagged fields
        )
    )
    return struct.pack(">i", len(body)) + body


def _send_pipelined(address: str, frames: list[bytes], count: int, window: int = 32) -> None:
    """Sends ``count`` of ``frames`` in turn, ``window`` unanswered at most,
    and checks every answer's correlation id and error code."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answers = sock.makefile("rb")
        sent = answered = 0
        while answered < count:
            while sent < count and sent - answered < window:
                sock.sendall(frames[sent % len(frames)])
                sent += 1
            (size,) = struct.unpack(">i", answers.read(4))
            answer = answers.read(size)
            # correlation id, tagged fields, one topic, its name, one partition, index, error
            (correlation_id,) = struct.unpack_from(">i", answer, 0)
            name_end = 7 + answer[6] - 1
            (error,) = struct.unpack_from(">h", answer, name_end + 5)
            if correlation_id != answered % len(frames) or error != 0:
                raise RuntimeError(f"answer {answered}: id {correlation_id}, error {error}")
            answered += 1


def pipelined(partitions: int, requests: int, scratch: Path) -> dict[str, Any]:
    import native
    from native import RecordSpec

    batch = bytes(native.encode_batch([RecordSpec(1_700_000_000_000, None, RECORD, ())]))
    frames = [_produce_v9(i, TOPIC, i, batch) for i in range(partitions)]
    span = max(1, requests // 4)
    spans: list[tuple[float, float]] = []
    with Server(scratch, scratch / "data") as server:
        create_topics(server.address, {TOPIC: partitions})
        _send_pipelined(server.address, frames, 2 * partitions)  # every partition's first append
        pid = server.process.pid
        for _ in range(6):
            before = _thread_cpu(pid)
            _send_pipelined(server.address, frames, span)
            used = _used_by_name(before, _thread_cpu(pid))
            spans.append((sum(used.values()) / span * 1e6, used.get("loop", 0.0) / span * 1e6))
    server_us = sorted(total for total, _ in spans)
    loop_us = sorted(loop for _, loop in spans)
    return {
        "partitions": partitions,
        "pipelined_requests_per_span": span,
        "pipelined_server_cpu_us_per_request_min": round(server_us[0], 1),
        "pipelined_server_cpu_us_per_request_median": round(statistics.median(server_us), 1),
        "pipelined_loop_cpu_us_per_request_min": round(loop_us[0], 1),
        "pipelined_loop_cpu_us_per_request_median": round(statistics.median(loop_us), 1),
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
    if "pipelined_requests_per_span" in results:
        print(
            f"{results['partitions']} partitions, pipelined one-partition Produce v9,"
            f" {results['pipelined_requests_per_span']} requests a span, load"
            f" {results['load_average']:.2f}"
        )
        for what in ("server", "loop"):
            low = results[f"pipelined_{what}_cpu_us_per_request_min"]
            middle = results[f"pipelined_{what}_cpu_us_per_request_median"]
            print(f"  {what} CPU per request: {low} us lowest span, {middle} us median")
        return
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
    parser.add_argument(
        "--pipelined", action="store_true", help="raw pipelined requests instead (see above)"
    )
    parser.add_argument("--requests", type=int, default=40_000, help="--pipelined's requests")
    parser.add_argument("--data-dir", default=None, help="scratch directory (default: temp)")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else args.seconds
    with _harness.scratch(args.data_dir, "small-produce-") as scratch:
        if args.pipelined:
            requests = 4_000 if args.quick else args.requests
            results = pipelined(args.partitions, requests, scratch)
            results["load_average"] = os.getloadavg()[0]
            _harness.report(results, args.json, _print)
            return
        results = {} if args.embedded_only else run(args.partitions, args.rate, seconds, scratch)
        results.update(embedded(args.partitions, int(args.rate * seconds), scratch))
        results["load_average"] = os.getloadavg()[0]
    _harness.report(results, args.json, _print)


if __name__ == "__main__":
    main()
