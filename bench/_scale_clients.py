"""The Kafka clients of bench/scale_bench.py that run in child processes, and
the latency histograms they hand back.

A child runs either tailing consumers (``tail``: several confluent_kafka
Consumers, one thread each, every one with a group.id of its own, reading
one topic from offset 0 until its end marker; PARTITIONS, when given,
reads only the topic's first PARTITIONS partitions: librdkafka's mock
cluster makes every topic with four, and the fan-out writes to one;
WAIT_MS is fetch.wait.max.ms, FETCH_WAIT_MS unless given) or one replay
reader
(``replay``: every partition of a topic from offset 0 to the high
watermark it had when the reader started, as fast as it can, once it reads
``go`` on its standard input: its start-up, the costliest part of a
client's life, then falls before the window the bench measures). Each
prints ``ready`` once its consumers are connected, then one JSON line with
what it measured, and exits. A consumer thread does next to nothing per record
(unpack the produce time, count a bucket), so the clients, not their
Python, set the pace: librdkafka fetches on threads of its own.

    python bench/_scale_clients.py tail BOOTSTRAP TOPIC GROUP[,GROUP...] [PARTITIONS [WAIT_MS]]
    python bench/_scale_clients.py replay BOOTSTRAP TOPIC
"""

from __future__ import annotations

import json
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

STAMP = struct.Struct("<d")
"""The first bytes of every live record: time.time() when it was produced."""
END = b"END!"
"""The value of the record that ends a tailing consumer's run."""
BUCKET_S = 1e-4
"""Latencies are counted in buckets of 0.1 ms: histograms from many
consumers add up exactly, and a quantile is off by less than a bucket."""
FETCH_WAIT_MS = 100
"""fetch.wait.max.ms of every consumer unless told otherwise."""
RUN_TIMEOUT = 900.0
"""A consumer that has not seen its end marker by then gives up and reports."""
TIMELINE_POINTS = 60

Histogram = Counter[int]
"""Latency bucket (BUCKET_S units) -> records."""
SLOT_S = 0.1
"""Latencies are kept by the tenth of a second they were produced in, so a
window of the run (a replay burst of a second or two) is picked out to
within it."""
Slotted = dict[int, Histogram]
"""Slot of the produce time (``slot_of(time.time())``) -> its records' latencies."""


def slot_of(sent: float) -> int:
    return int(sent / SLOT_S)


def quantile(histogram: Mapping[int, int], q: float) -> float:
    """The q-quantile of a histogram, in milliseconds (0 when empty)."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    rank = min(total - 1, int(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return round((bucket + 0.5) * BUCKET_S * 1000, 2)
    raise AssertionError("unreachable")


def merge(slotted: Iterable[Slotted], start: float = 0.0, end: float = float("inf")) -> Histogram:
    """One histogram of the records produced within [start, end) (times
    as time.time() gives them), by the slots wholly inside it."""
    total: Histogram = Counter()
    for slots in slotted:
        for slot, histogram in slots.items():
            if start <= slot * SLOT_S and (slot + 1) * SLOT_S <= end:
                total.update(histogram)
    return total


def to_wire(slots: Slotted) -> dict[str, dict[str, int]]:
    return {str(s): {str(b): n for b, n in h.items()} for s, h in slots.items()}


def from_wire(raw: Mapping[str, Mapping[str, int]]) -> Slotted:
    return {int(s): Counter({int(b): n for b, n in h.items()}) for s, h in raw.items()}


def _next(consumer: Any, most: int) -> list[Any]:
    """What the consumer holds already, up to ``most``, or else the next
    record as soon as it arrives: consume(n, timeout) alone waits out its
    timeout for n records, which would add up to it to every delivery."""
    messages: list[Any] = consumer.consume(most, 0)
    if messages:
        return messages
    message = consumer.poll(0.1)
    return [] if message is None else [message]


def _config(bootstrap: str, group: str, wait_ms: int = FETCH_WAIT_MS) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": wait_ms,
        "log_level": 3,
    }


class Tail(threading.Thread):
    """One consumer in a group of its own, from offset 0 of every partition
    to the end marker on each."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        ready: threading.Semaphore,
        partitions: int | None = None,
        wait_ms: int = FETCH_WAIT_MS,
    ) -> None:
        super().__init__(name=f"tail-{group}", daemon=True)
        self.bootstrap, self.topic, self.group, self.ready = bootstrap, topic, group, ready
        self.partitions, self.wait_ms = partitions, wait_ms
        self.slots: Slotted = {}
        self.records = 0
        self.bytes = 0
        self.first = 0.0
        self.last = 0.0
        self.end_delay_ms = -1.0
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # reported in the JSON, not lost in a thread
            self.error = repr(error)
            self.ready.release()

    def _run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(_config(self.bootstrap, self.group, self.wait_ms))
        partitions = self.partitions or len(
            consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        )
        consumer.assign([TopicPartition(self.topic, p, 0) for p in range(partitions)])
        consumer.consume(1, 0.5)  # connected and fetching
        self.ready.release()
        open_partitions = set(range(partitions))
        deadline = time.monotonic() + RUN_TIMEOUT
        unpack = STAMP.unpack_from
        while open_partitions and time.monotonic() < deadline:
            messages = _next(consumer, 1000)
            if not messages:
                continue
            now = time.time()
            if not self.first:
                self.first = now
            for message in messages:
                value = message.value()
                if message.error() is not None or value is None:
                    continue
                if value[:4] == END:
                    open_partitions.discard(message.partition())
                    sent = STAMP.unpack_from(value, 4)[0]
                    self.end_delay_ms = max(self.end_delay_ms, (now - sent) * 1000)
                    continue
                sent = unpack(value)[0]
                slot = self.slots.get(slot_of(sent))
                if slot is None:
                    slot = self.slots[slot_of(sent)] = Counter()
                slot[int((now - sent) / BUCKET_S)] += 1
                self.records += 1
                self.bytes += len(value)
            self.last = now
        if open_partitions:
            self.error = f"no end marker on partitions {sorted(open_partitions)} in {RUN_TIMEOUT} s"
        consumer.close()

    def result(self) -> dict[str, Any]:
        seconds = self.last - self.first
        return {
            "group": self.group,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": round(seconds, 3),
            "end_delay_ms": round(self.end_delay_ms, 2),
            "error": self.error,
            "slots": to_wire(self.slots),
        }


def tail(
    bootstrap: str,
    topic: str,
    groups: list[str],
    partitions: int | None = None,
    wait_ms: int = FETCH_WAIT_MS,
) -> dict[str, Any]:
    ready = threading.Semaphore(0)
    threads = [Tail(bootstrap, topic, group, ready, partitions, wait_ms) for group in groups]
    for thread in threads:
        thread.start()
    for _ in threads:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a consumer did not connect within 120 s")
    print("ready", flush=True)
    for thread in threads:
        thread.join(RUN_TIMEOUT + 60)
    return {"consumers": [thread.result() for thread in threads]}


def replay(bootstrap: str, topic: str) -> dict[str, Any]:
    """Every partition from 0 to its high watermark at the start."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **_config(bootstrap, f"replay-{time.monotonic_ns()}"),
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30).topics[topic]
    ends = {}
    for partition in metadata.partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        if high > 0:
            ends[partition] = high
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("replay: stdin closed before go")
    total = sum(ends.values())
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    started_wall, started, cpu = time.time(), time.perf_counter(), time.process_time()
    timeline: list[list[float]] = [[0.0, 0.0]]
    read_bytes = records = 0
    step = max(1, total // TIMELINE_POINTS)
    next_sample = step
    deadline = started + RUN_TIMEOUT
    while ends and time.perf_counter() < deadline:
        for message in _next(consumer, 10_000):
            value = message.value()
            if message.error() is not None:
                continue
            records += 1
            read_bytes += len(value) if value is not None else 0
            partition = message.partition()
            if partition in ends and message.offset() + 1 >= ends[partition]:
                del ends[partition]
        if records >= next_sample:
            elapsed = time.perf_counter() - started
            timeline.append([round(elapsed, 3), round(read_bytes / 2**20, 2)])
            next_sample = records + step
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu  # librdkafka's threads too
    consumer.close()
    return {
        "records": records,
        "cpu_seconds": round(cpu, 3),
        "bytes": read_bytes,
        "seconds": round(elapsed, 3),
        "started": started_wall,
        "ended": started_wall + elapsed,
        "complete": not ends,
        "timeline": timeline,
    }


def main(argv: list[str]) -> int:
    mode, bootstrap, topic = argv[:3]
    if mode == "tail":
        partitions = int(argv[4]) if len(argv) > 4 else None
        wait_ms = int(argv[5]) if len(argv) > 5 else FETCH_WAIT_MS
        result = tail(bootstrap, topic, argv[3].split(","), partitions, wait_ms)
    elif mode == "replay":
        result = replay(bootstrap, topic)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
