"""Creating many topics with large CreateTopics requests while a producer keeps producing.

    python bench/topics_bench.py [--topics 10000] [--per-request 5000] [--baseline-seconds 5]
                                 [--rate 200] [--quick] [--json] [--data-dir PATH]

One run, on loopback, every figure measured in it:

- the server: ``python -m engine serve`` in a child process (its default
  object store, a directory beside its data);
- canary: a confluent_kafka Producer (acks=all, linger.ms=0, so a record is
  sent at once and its latency is the server's answer, not the client's
  batching) sends 1 KiB records to a topic of its own at ``--rate`` records
  per second, from before the creation until after it. A record's latency
  runs from produce() to its delivery report's callback;
- baseline: the canary alone for ``--baseline-seconds``: ``before_p50_ms``
  and ``before_p99_ms``;
- creation: an AdminClient creates ``--topics`` topics of one partition, in
  CreateTopics requests of ``--per-request`` topics one after another. The
  default, 5,000, is the most one request may hold: Kafka's controller
  refuses a request of more than 10,000 metadata records (a topic and each
  of its partitions are one) with POLICY_VIOLATION, and so does tidelog.
  ``create_s`` runs from the first call to the last topic's result
  (``request_s`` per request), and ``during_p50_ms`` / ``during_p99_ms``
  are the canary's records in flight meanwhile (sent before the creation
  ended, answered after it started). ``during_vs_before_p99`` is their
  ratio: how much large CreateTopics requests cost everyone else; and
  ``last_vs_first_request`` compares the last request with the first, which
  met fewer topics already there (1.0: a topic costs the same however many
  exist);
- afterwards: the server is stopped with SIGTERM (``stop_s``: it flushes and
  uploads) and started again (``restart_s``: until it listens, every topic
  loaded), and Metadata lists every topic (``topics_listed``).

``--json`` prints one JSON object; its headline keys are create_s,
during_p99_ms, before_p99_ms, during_vs_before_p99 and last_vs_first_request.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import _harness
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_bench import ServerProcess, free_port

RECORD_BYTES = 1024
CANARY_TOPIC = "canary"
PREFIX = "bench-topic-"
DEFAULTS = {"topics": 10_000, "per_request": 5_000, "baseline_seconds": 5.0}
QUICK = {"topics": 1000, "per_request": 500, "baseline_seconds": 1.0}
TARGETS = {"create_s": ("<=", 20.0), "during_p99_ms": ("<=", 50.0)}
CREATE_TIMEOUT = 600.0
"""A creation this slow is a result to report, not a hang (the old server took minutes)."""
SETTLE_SECONDS = 0.5
"""The canary runs this long after the creation, so its last records count."""
CANARY_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 0,
    "compression.type": "none",
    "log_level": 3,
}


@dataclass
class Canary:
    """A producer on its own thread at a steady rate; records every latency
    with its send time, so any window of the run can be picked out after."""

    address: str
    rate: float
    sent_at: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(120.0)
        if self._thread.is_alive():
            raise RuntimeError("the canary did not finish within 120 s")

    def _delivered(self, sent_at: float, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors += 1
            self.first_error = self.first_error or str(err)
            return
        self.sent_at.append(sent_at)
        self.latencies.append(time.perf_counter() - sent_at)

    def _run(self) -> None:
        producer = Producer({**CANARY_CONFIG, "bootstrap.servers": self.address})
        producer.list_topics(CANARY_TOPIC, timeout=30)
        value = os.urandom(RECORD_BYTES)
        interval = 1.0 / self.rate
        next_send = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            if now < next_send:
                producer.poll(min(next_send - now, 0.05))
                continue
            producer.produce(
                CANARY_TOPIC, value, partition=0, on_delivery=partial(self._delivered, now)
            )
            next_send += interval
            producer.poll(0)
        if producer.flush(60.0) > 0:
            self.errors += 1
            self.first_error = self.first_error or "records undelivered 60 s after the run"

    def window(self, start: float, end: float) -> list[float]:
        """Latencies of the records in flight at some point of [start, end):
        sent before its end and answered after its start."""
        return [
            latency
            for sent_at, latency in zip(self.sent_at, self.latencies, strict=True)
            if sent_at < end and sent_at + latency >= start
        ]

    def within(self, start: float, end: float) -> list[float]:
        """Latencies of the records sent and answered inside [start, end)."""
        return [
            latency
            for sent_at, latency in zip(self.sent_at, self.latencies, strict=True)
            if start <= sent_at and sent_at + latency < end
        ]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def create_topics(
    address: str, names: list[str], per_request: int
) -> tuple[list[float], int, str | None]:
    """Creates the topics, ``per_request`` to a CreateTopics request, one
    request after another: (seconds of each request, failures, the first
    failure)."""
    admin = AdminClient({"bootstrap.servers": address, "log_level": 3})
    admin.list_topics(timeout=30)  # connected: not timed
    seconds: list[float] = []
    failures, first = 0, None
    for start in range(0, len(names), per_request):
        started = time.perf_counter()
        futures = admin.create_topics(
            [
                NewTopic(name, num_partitions=1, replication_factor=1)
                for name in names[start : start + per_request]
            ],
            operation_timeout=CREATE_TIMEOUT,
            request_timeout=CREATE_TIMEOUT,
        )
        for future in futures.values():
            try:
                future.result(timeout=CREATE_TIMEOUT)
            except Exception as error:  # every failure is counted, the first shown
                failures += 1
                first = first or str(error)
        seconds.append(time.perf_counter() - started)
    return seconds, failures, first


def list_topics(address: str) -> int:
    admin = AdminClient({"bootstrap.servers": address, "log_level": 3})
    return sum(1 for name in admin.list_topics(timeout=60).topics if name.startswith(PREFIX))


@dataclass(frozen=True)
class Settings:
    topics: int
    per_request: int
    baseline_seconds: float
    rate: float


def run(scratch: Path, settings: Settings) -> dict[str, Any]:
    logs = scratch / "logs"
    logs.mkdir()
    server = ServerProcess(scratch / "data", free_port(), logs)
    server.start()
    exit_codes = []
    try:
        server.wait_ready()
        admin = AdminClient({"bootstrap.servers": server.address, "log_level": 3})
        (future,) = admin.create_topics([NewTopic(CANARY_TOPIC, 1, 1)]).values()
        future.result(timeout=60)
        del admin  # its connection would outlive the server's stop, with noise
        canary = Canary(server.address, settings.rate)
        canary.start()
        time.sleep(1.0)  # connected and warm: not part of the baseline
        baseline_start = time.perf_counter()
        time.sleep(settings.baseline_seconds)
        create_start = time.perf_counter()
        names = [f"{PREFIX}{i:06d}" for i in range(settings.topics)]
        request_s, failures, first_failure = create_topics(
            server.address, names, settings.per_request
        )
        create_s = sum(request_s)
        create_end = time.perf_counter()
        time.sleep(SETTLE_SECONDS)
        canary.stop()
        if canary.errors:
            raise RuntimeError(f"canary: {canary.errors} delivery errors ({canary.first_error})")
        stop_started = time.perf_counter()
        exit_codes.append(server.stop())
        stop_s = time.perf_counter() - stop_started
        restart_started = time.perf_counter()
        server.start()
        server.wait_ready(timeout=600.0)
        restart_s = time.perf_counter() - restart_started
        listed = list_topics(server.address)
        exit_codes.append(server.stop())
    finally:
        server.kill()
    before = canary.within(baseline_start, create_start)
    during = canary.window(create_start, create_end)
    if not before or not during:
        raise RuntimeError(
            f"the canary delivered {len(before)} records before and {len(during)} during"
        )
    results: dict[str, Any] = {
        "topics": settings.topics,
        "partitions_per_topic": 1,
        "per_request": settings.per_request,
        "requests": len(request_s),
        "request_s": [round(r, 3) for r in request_s],
        "last_vs_first_request": round(request_s[-1] / request_s[0], 2),
        "create_failures": failures,
        "first_failure": first_failure,
        "topics_listed": listed,
        "create_s": round(create_s, 3),
        "topics_per_s": round(settings.topics / create_s, 1),
        "canary_rate": settings.rate,
        "record_bytes": RECORD_BYTES,
        "before_records": len(before),
        "before_p50_ms": round(quantile(before, 0.5) * 1000, 3),
        "before_p99_ms": round(quantile(before, 0.99) * 1000, 3),
        "during_records": len(during),
        "during_p50_ms": round(quantile(during, 0.5) * 1000, 3),
        "during_p99_ms": round(quantile(during, 0.99) * 1000, 3),
        "during_max_ms": round(max(during) * 1000, 3),
        "stop_s": round(stop_s, 3),
        "restart_s": round(restart_s, 3),
        "server_exit_codes": exit_codes,
        "cpus_usable": _harness.cpus()["cpus_usable"],
    }
    results["during_vs_before_p99"] = round(results["during_p99_ms"] / results["before_p99_ms"], 2)
    results["targets"] = {
        f"{key} {op} {bound:g}": results[key] <= bound for key, (op, bound) in TARGETS.items()
    }
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{results['topics']:,} topics of 1 partition in {results['requests']} CreateTopics "
        f"request(s) of {results['per_request']:,} (confluent-kafka AdminClient), a canary "
        f"producing {results['canary_rate']:g} "
        f"records/s of {results['record_bytes']} B (acks=all, linger.ms=0); "
        f"{results['cpus_usable']} CPUs\n"
    )
    print(
        f"create: {results['create_s']:.2f} s ({results['topics_per_s']:,.0f} topics/s), "
        f"{results['create_failures']} failed, {results['topics_listed']:,} listed after restart"
    )
    print(
        f"per request: {', '.join(f'{r:.2f}' for r in results['request_s'])} s; "
        f"last_vs_first_request {results['last_vs_first_request']:.2f}"
    )
    print(f"\n{'':<14} {'records':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in ("before", "during"):
        print(
            f"{'canary ' + phase:<14} {results[phase + '_records']:>8} "
            f"{results[phase + '_p50_ms']:>8.2f} {results[phase + '_p99_ms']:>8.2f}"
        )
    print(
        f"\nduring_vs_before_p99 {results['during_vs_before_p99']:.2f}   "
        f"max during {results['during_max_ms']:.1f} ms\n"
        f"server stop (SIGTERM: flush, upload) {results['stop_s']:.2f} s, restart "
        f"{results['restart_s']:.2f} s, exit codes {results['server_exit_codes']}"
    )
    _harness.print_targets(results["targets"])


def main() -> None:
    parser = _harness.parser(__doc__, quick="a smoke test: 1000 topics in 2 requests, 1 s")
    parser.add_argument("--topics", type=int, default=None, help="topics to create (10000)")
    parser.add_argument(
        "--per-request", type=int, default=None, help="topics per CreateTopics request (5000)"
    )
    parser.add_argument(
        "--baseline-seconds", type=float, default=None, help="canary alone before (5)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="canary records per second")
    parser.add_argument(
        "--data-dir", default=None, help="scratch directory, emptied after (default: a temp dir)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else DEFAULTS
    settings = Settings(
        topics=args.topics if args.topics is not None else int(sizes["topics"]),
        per_request=(
            args.per_request if args.per_request is not None else int(sizes["per_request"])
        ),
        baseline_seconds=(
            args.baseline_seconds
            if args.baseline_seconds is not None
            else float(sizes["baseline_seconds"])
        ),
        rate=args.rate,
    )
    with _harness.scratch(args.data_dir, "tidelog-topics-bench-") as scratch:
        results = run(scratch, settings)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
