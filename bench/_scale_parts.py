"""The parts bench/scale_bench.py's scenarios are made of: the server it
measures (``python -m engine serve`` with /metrics, its RSS and CPU), topic
creation within Kafka's bound per request, the consumers' child processes
(bench/_scale_clients.py), a producer at a steady rate on a thread, and a
paced producer and a flat-out reader for the partitions and history runs."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import _scale_clients as clients
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka_bench import HOST, ServerProcess, free_port

MiB = 2**20
RECORD_BYTES = 1024
CONSUMERS_PER_PROCESS = 8


# -- the server ----------------------------------------------------------------------


class Server:
    """``python -m engine serve`` with /metrics on a port of its own."""

    def __init__(
        self,
        scratch: Path,
        data_dir: Path,
        store: dict[str, Any] | None = None,
        watch_loop: str | None = None,
    ):
        self.http_port = free_port()
        config = scratch / f"server-{self.http_port}.toml"
        lines = ["[http]", f'listen = "{HOST}:{self.http_port}"']
        if store:
            lines.append("[store]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in store.items()]
        config.write_text("\n".join(lines) + "\n")
        logs = scratch / "logs"
        logs.mkdir(exist_ok=True)
        self.process = ServerProcess(data_dir, free_port(), logs, config=config)
        if watch_loop is not None:
            # bench/loop_watch/sitecustomize.py, imported by the server's
            # Python at start, writes the loop's stalls under this prefix.
            watcher = str(Path(__file__).resolve().parent / "loop_watch")
            path = os.pathsep.join(p for p in (watcher, os.environ.get("PYTHONPATH")) if p)
            self.process.env = {"PYTHONPATH": path, "TIDELOG_LOOP_WATCH": watch_loop}

    def __enter__(self) -> Server:
        started = time.perf_counter()
        self.process.start()
        self.process.wait_ready(timeout=600.0)
        self.ready_s = time.perf_counter() - started
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.process.stop()
        finally:
            self.process.kill()

    @property
    def address(self) -> str:
        return self.process.address

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/PID/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far, every thread's."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        """The server's /metrics: every sample, by name and labels."""
        url = f"http://{HOST}:{self.http_port}/metrics"
        # The HTTP listener opens just after the Kafka one the start waits for.
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=30) as answer:
                    text = answer.read().decode()
                break
            except urllib.error.URLError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def reads(self) -> tuple[int, int]:
        """Object-store GETs so far (every one: reads, compaction, the
        manifest) and reads the log cache did not answer (fetches only)."""
        samples = self.metrics()
        gets = samples.get('tidelog_object_store_requests_total{operation="get"}', 0)
        return int(gets), int(samples.get("tidelog_log_cache_misses_total", 0))


MOST_PER_REQUEST = 5000
"""Partitions one CreateTopics or CreatePartitions request may add: Kafka's
controller refuses more than 10,000 metadata records at once (a topic and
each partition are one), and so does tidelog."""


def create_topics(address: str, topics: dict[str, int]) -> None:
    """Creates the topics, in requests under the limit: a topic of more than
    MOST_PER_REQUEST partitions is created with that many and grown."""
    admin = AdminClient({"bootstrap.servers": address, "log_level": 3})
    names = list(topics)
    for start in range(0, len(names), MOST_PER_REQUEST):
        futures = admin.create_topics(
            [
                NewTopic(name, min(topics[name], MOST_PER_REQUEST), 1)
                for name in names[start : start + MOST_PER_REQUEST]
            ],
            operation_timeout=600,
            request_timeout=600,
        )
        for future in futures.values():
            future.result(timeout=600)
    for name, total in topics.items():
        for count in range(2 * MOST_PER_REQUEST, total + MOST_PER_REQUEST, MOST_PER_REQUEST):
            grown = admin.create_partitions(
                [NewPartitions(name, min(count, total))], operation_timeout=600
            )
            for future in grown.values():
                future.result(timeout=600)


# -- clients ---------------------------------------------------------------------------


class ClientProcess:
    """A child running bench/_scale_clients.py: waited on until ready, then
    until it prints its JSON line. ``nice``: the child runs this many nice
    values below the bench (librdkafka's threads inherit it). A replay
    reader starts reading at ``go``."""

    def __init__(self, *args: str, nice: int = 0) -> None:
        script = Path(__file__).resolve().parent / "_scale_clients.py"
        # nice(1) execs the child in its place: the pid is the client's.
        lowered = ["nice", "-n", str(nice)] if nice else []
        self.process = subprocess.Popen(
            [*lowered, sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        self.reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _line(self, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        if line is None:
            assert self.process.stderr is not None
            raise RuntimeError(f"a client exited early: {self.process.stderr.read()[-2000:]}")
        return line

    def wait_ready(self, timeout: float = 180.0) -> None:
        while self._line(timeout) != "ready":
            pass

    def go(self) -> None:
        """Lets a ready replay reader start reading."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float = clients.RUN_TIMEOUT + 120) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(self._line(timeout))
            return value
        finally:
            self.kill()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child so far, every thread's."""
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


def tailing(
    address: str,
    topic: str,
    consumers: int,
    prefix: str,
    partitions: int | None = None,
    wait_ms: int | None = None,
) -> list[ClientProcess]:
    """Consumers in child processes, each in a group of its own, reading
    every partition of the topic (or its first ``partitions``), with
    fetch.wait.max.ms ``wait_ms`` (clients.FETCH_WAIT_MS if None)."""
    groups = [f"{prefix}-{i}" for i in range(consumers)]
    extra = [] if partitions is None else [str(partitions)]
    if wait_ms is not None:
        extra.append(str(wait_ms))
    children = [
        ClientProcess(
            "tail", address, topic, ",".join(groups[at : at + CONSUMERS_PER_PROCESS]), *extra
        )
        for at in range(0, consumers, CONSUMERS_PER_PROCESS)
    ]
    for child in children:
        child.wait_ready()
    return children


@dataclass
class LiveProducer:
    """A producer on its own thread at ``rate`` records a second of 1 KiB
    (the first 8 bytes: the time just before produce()); its delivery
    latencies by the second they were sent in. ``stop`` ends each
    partition with an end marker for the tailing consumers."""

    address: str
    topic: str
    rate: float
    partitions: int = 1
    slots: clients.Slotted = field(default_factory=dict)
    sent: int = 0
    errors: int = 0
    first_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="live-producer", daemon=True)
        self._thread.start()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors += 1
            self.first_error = self.first_error or str(err)
            return
        value = msg.value()
        latency = msg.latency()
        if value is None or latency is None or value[:4] == clients.END:
            return
        at = clients.slot_of(clients.STAMP.unpack_from(value)[0])
        slot = self.slots.get(at)
        if slot is None:
            slot = self.slots[at] = Counter()
        slot[int(latency / clients.BUCKET_S)] += 1

    def _run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.address,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "none",
                "queue.buffering.max.kbytes": 1024 * 1024,
                "log_level": 3,
            }
        )
        producer.list_topics(self.topic, timeout=30)
        value = bytearray(_random(RECORD_BYTES))
        pack = clients.STAMP.pack_into
        started = time.perf_counter()
        while not self._stop.is_set():
            due = int((time.perf_counter() - started) * self.rate) - self.sent
            for _ in range(min(due, 5000)):
                pack(value, 0, time.time())
                producer.produce(
                    self.topic,
                    bytes(value),
                    partition=self.sent % self.partitions,
                    on_delivery=self._delivered,
                )
                self.sent += 1
            producer.poll(0.001 if due <= 0 else 0)
        for partition in range(self.partitions):
            marker = clients.END + clients.STAMP.pack(time.time())
            producer.produce(self.topic, marker, partition=partition, on_delivery=self._delivered)
        if producer.flush(120.0) > 0:
            self.errors += 1
            self.first_error = self.first_error or "records undelivered 120 s after the run"

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(180.0)
        if self._thread.is_alive():
            raise RuntimeError("the live producer did not finish within 180 s")
        if self.errors:
            raise RuntimeError(f"live producer: {self.errors} errors ({self.first_error})")


def _random(size: int) -> bytes:
    return os.urandom(size)


def paced(address: str, topics: list[str], partitions: int, total: int, rate_mb: float) -> Paced:
    """Produces ``total`` bytes of 1 KiB records at ``rate_mb``, to each
    topic's partitions in turn (as round-robin keys would); the rate it
    reached (first produce() to last delivery) and its delivery latencies."""
    producer = Producer(
        {
            "bootstrap.servers": address,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "none",
            "queue.buffering.max.kbytes": 1024 * 1024,
            "log_level": 3,
        }
    )
    for topic in topics:
        producer.list_topics(topic, timeout=60)
    value = _random(RECORD_BYTES)
    count = total // RECORD_BYTES
    rate = rate_mb * MiB / RECORD_BYTES
    latencies: Counter[int] = Counter()
    errors: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
            return
        latencies[int((msg.latency() or 0.0) / clients.BUCKET_S)] += 1

    targets = [(topic, p) for p in range(partitions) for topic in topics]
    started = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - started) * rate)) - sent
        for _ in range(max(0, due)):
            topic, partition = targets[sent % len(targets)]
            try:
                producer.produce(topic, value, partition=partition, on_delivery=delivered)
            except BufferError:
                break
            sent += 1
        producer.poll(0.001)
    if producer.flush(600.0) > 0 or errors:
        raise RuntimeError(f"produce failed: {errors[:1] or 'undelivered after 600 s'}")
    elapsed = time.perf_counter() - started
    return Paced(
        total / MiB / elapsed, clients.quantile(latencies, 0.5), clients.quantile(latencies, 0.99)
    )


class Paced(NamedTuple):
    mb_s: float
    p50_ms: float
    p99_ms: float


def read_all(address: str, topics: list[str], partitions: int, total: int) -> float:
    """Reads every record of the topics' partitions from offset 0 with one
    consumer; MB/s from assignment to the last record."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": f"read-all-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * MiB,
            "log_level": 3,
        }
    )
    count = total // RECORD_BYTES
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
    started = time.perf_counter()
    deadline = started + 600
    got = 0
    while got < count and time.perf_counter() < deadline:
        got += sum(1 for m in consumer.consume(10_000, 0.5) if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    if got < count:
        raise RuntimeError(f"read {got} of {count} records in 600 s")
    return total / MiB / elapsed
