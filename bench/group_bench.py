"""Consumer groups and transactions on tidelog's wire server, driven by librdkafka.

    python bench/group_bench.py [--records 400000] [--partitions 16] [--members 4]
                                [--quick] [--json] [--data-dir PATH] [--config FILE]

One run, on loopback, every figure measured in it, each beside its baseline:

- group: ``--members`` confluent_kafka Consumers (one thread each) subscribe
  to a ``--partitions`` topic in one group while a Producer writes
  ``--records`` 1 KiB records (acks=all, linger.ms=5); ``group_e2e_mb_s``
  runs from the first produce() to the last record consumed, commits
  included (every member commits what it read, asynchronously, after each
  batch). Baseline: the same producer and the same consumers with assign()
  over the same partitions and no group (``assign_e2e_mb_s``), so
  ``group_vs_assign`` is what group membership costs.
- rebalance: with the group consuming, one member leaves (close()) and, once
  the group has settled, a new one joins; ``rebalance_leave_s`` and
  ``rebalance_join_s`` run from the close() or the new member's subscribe()
  to the moment every partition is owned by exactly one live member again
  (as the members' assignment callbacks report), for the eager "range" and
  the incremental "cooperative-sticky" assignor. The clients' own pace
  bounds these: a member learns of a rebalance on its next heartbeat
  (``heartbeat.interval.ms``, beside the figures).
- transactions: one Producer sends the same records to one partition with
  ``enable.idempotence`` (``idempotent_mb_s``), then a transactional Producer
  with one transaction per ``--txn-records`` records (``transactional_mb_s``);
  ``txn_vs_idempotent`` is their ratio. The same pair against librdkafka's
  own mock cluster (``mock_txn_vs_idempotent``) shows what transactions cost
  the client itself.

The server runs with ``group.initial.rebalance.delay.ms`` 0 unless
``--config`` says otherwise (Kafka's default of 3 s would only delay the
group's first formation, which is not what is measured).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _harness
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kafka_bench import (
    MIB,
    PRODUCER_CONFIG,
    RECORD_BYTES,
    Deliveries,
    MockCluster,
    ServerProcess,
    create_topics,
    free_port,
    make_values,
)

QUICK = {"records": 40_000, "txn_records": 20_000}
DEFAULTS = {"records": 400_000, "txn_records": 200_000}
HEARTBEAT_MS = 500
SESSION_MS = 6000
SETTLE_TIMEOUT = 60.0
STALL_TIMEOUT = 60.0
SERVER_CONFIG = "[engine]\ngroup_initial_rebalance_delay_ms = 0\n"
GROUP_TOPIC = "bench-group"
TXN_TOPIC = "bench-txn"
IDEMPOTENT_TOPIC = "bench-idempotent"

CONSUMER_CONFIG: dict[str, Any] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "heartbeat.interval.ms": HEARTBEAT_MS,
    "session.timeout.ms": SESSION_MS,
    "fetch.max.bytes": 16 * MIB,
    "log_level": 3,
}


# -- group members -------------------------------------------------------------------


@dataclass
class Ownership:
    """Which member owns which partitions, from the members' own callbacks."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    owners: dict[int, set[str]] = field(default_factory=dict)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def assign(self, member: str, partitions: list[TopicPartition]) -> None:
        with self.lock:
            for tp in partitions:
                self.owners.setdefault(tp.partition, set()).add(member)
            self.changed.notify_all()

    def revoke(self, member: str, partitions: list[TopicPartition] | None) -> None:
        with self.lock:
            for partition, owners in self.owners.items():
                if partitions is None or any(tp.partition == partition for tp in partitions):
                    owners.discard(member)
            self.changed.notify_all()

    def wait_settled(self, members: set[str], partitions: int, timeout: float) -> float:
        """Waits until each partition has exactly one owner, all of them in
        ``members``, and each member owns some; returns when (perf_counter)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                owners = [self.owners.get(p, set()) for p in range(partitions)]
                owning = set().union(*owners)
                settled = all(len(o) == 1 for o in owners) and owning <= members
                if settled and (owning == members or len(members) > partitions):
                    return time.perf_counter()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"the group did not settle: {self.owners}")
                self.changed.wait(remaining)


class Member:
    """A consumer thread: consumes, counts, commits what it read."""

    def __init__(
        self,
        name: str,
        config: dict[str, Any],
        topic: str,
        ownership: Ownership | None,
        assigned: list[TopicPartition] | None = None,
    ) -> None:
        self.name = name
        self.ownership = ownership
        self.consumer = Consumer({**CONSUMER_CONFIG, **config, "client.id": name})
        self.records = 0
        self.bytes = 0
        self.last = 0.0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        if assigned is not None:
            self.consumer.assign(assigned)
        else:
            self.consumer.subscribe(
                [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The client assigns (or, cooperatively, adds) these once this returns.
        if self.ownership is not None:
            self.ownership.assign(self.name, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.ownership is not None:
            self.ownership.revoke(self.name, partitions)
        with_offsets = [tp for tp in consumer.position(partitions) if tp.offset >= 0]
        if with_offsets:
            try:
                consumer.commit(offsets=with_offsets, asynchronous=False)
            except KafkaException as error:  # a rebalance in progress: nothing to keep
                if error.args[0].code() not in (
                    KafkaError._NO_OFFSET,
                    KafkaError.REBALANCE_IN_PROGRESS,
                ):
                    raise

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.ownership is not None:
            self.ownership.revoke(self.name, partitions)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.consumer.consume(1000, 0.1)
                for msg in batch:
                    error = msg.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    self.bytes += len(msg)
                self.records += len(batch)
                if batch:
                    self.last = time.perf_counter()
                    if self.ownership is not None:
                        self.consumer.commit(asynchronous=True)
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop")
        if self.ownership is not None:
            self.ownership.revoke(self.name, None)
        self.consumer.close()
        if self.error is not None:
            raise RuntimeError(f"{self.name} failed") from self.error


def produce_idempotent(address: str, topic: str, records: int, values: list[bytes]) -> float:
    """Sends ``records`` records to partition 0 with an idempotent producer;
    returns the seconds from the first send to the last delivery report. One
    record sent before the clock starts gets the producer id and metadata."""
    producer = Producer(
        {**PRODUCER_CONFIG, "bootstrap.servers": address, "enable.idempotence": True}
    )
    warm_up = Deliveries()
    _send(producer, topic, values[0], warm_up, 0)
    producer.flush(60)
    warm_up.check(1, f"warming up {topic}")
    deliveries = Deliveries()
    started = time.perf_counter()
    for i in range(records):
        _send(producer, topic, values[i % len(values)], deliveries, 0)
    producer.flush(120)
    deliveries.check(records, f"producing to {topic}")
    return deliveries.last - started


def _send(
    producer: Producer,
    topic: str,
    value: bytes,
    deliveries: Callable[..., None],
    partition: int = -1,
) -> None:
    while True:
        try:
            producer.produce(topic, value, partition=partition, on_delivery=deliveries)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.01)


def end_to_end(
    address: str,
    partitions: int,
    members: int,
    records: int,
    values: list[bytes],
    grouped: bool,
    run_id: str,
) -> dict[str, float]:
    """Produces ``records`` while ``members`` consumers read them; returns
    MiB/s from the first produce to the last record consumed."""
    topic = f"{GROUP_TOPIC}-{run_id}"
    create_topics(address, partitions, topic)
    ownership = Ownership() if grouped else None
    config = {"bootstrap.servers": address, "group.id": f"bench-{run_id}"}
    consumers = []
    for i in range(members):
        mine = (
            None
            if grouped
            else [TopicPartition(topic, p, 0) for p in range(i, partitions, members)]
        )
        consumers.append(Member(f"member-{i}", config, topic, ownership, mine))
    if ownership is not None:
        ownership.wait_settled({m.name for m in consumers}, partitions, SETTLE_TIMEOUT)
    started = time.perf_counter()
    producer = Producer({**PRODUCER_CONFIG, "bootstrap.servers": address})
    deliveries = Deliveries()
    for i in range(records):
        _send(producer, topic, values[i % len(values)], deliveries, i % partitions)
    producer.flush(120)
    deliveries.check(records, f"producing to {topic}")
    deadline = time.monotonic() + STALL_TIMEOUT
    while sum(m.records for m in consumers) < records:
        if time.monotonic() > deadline:
            raise RuntimeError(f"consumed {sum(m.records for m in consumers)} of {records}")
        time.sleep(0.01)
    finished = max(m.last for m in consumers)
    consumed = sum(m.bytes for m in consumers)
    for member in consumers:
        member.stop()
    if sum(m.records for m in consumers) != records:
        raise RuntimeError(f"{sum(m.records for m in consumers)} records consumed, {records} sent")
    return {"mb_s": consumed / MIB / (finished - started), "seconds": finished - started}


def rebalance_times(
    address: str, partitions: int, members: int, strategy: str, run_id: str
) -> dict[str, float]:
    """Seconds for the group to settle after a member leaves, then after one joins."""
    topic = f"{GROUP_TOPIC}-rebalance-{run_id}"
    create_topics(address, partitions, topic)
    ownership = Ownership()
    config = {
        "bootstrap.servers": address,
        "group.id": f"bench-rebalance-{run_id}",
        "partition.assignment.strategy": strategy,
    }
    group = [Member(f"member-{i}", config, topic, ownership) for i in range(members)]
    try:
        ownership.wait_settled({m.name for m in group}, partitions, SETTLE_TIMEOUT)
        leaving = group.pop()
        started = time.perf_counter()
        leaving.stop()
        left = ownership.wait_settled({m.name for m in group}, partitions, SETTLE_TIMEOUT) - started
        started = time.perf_counter()
        group.append(Member(f"member-{members}", config, topic, ownership))
        joined = (
            ownership.wait_settled({m.name for m in group}, partitions, SETTLE_TIMEOUT) - started
        )
    finally:
        for member in group:
            member.stop()
    return {"leave_s": left, "join_s": joined}


def transactional_vs_idempotent(
    address: str, records: int, txn_records: int, values: list[bytes], run_id: str, create: bool
) -> dict[str, float]:
    idempotent_topic, txn_topic = f"{IDEMPOTENT_TOPIC}-{run_id}", f"{TXN_TOPIC}-{run_id}"
    if create:
        create_topics(address, 1, idempotent_topic, txn_topic)
    seconds = produce_idempotent(address, idempotent_topic, records, values)
    idempotent = records * RECORD_BYTES / MIB / seconds

    producer = Producer(
        {**PRODUCER_CONFIG, "bootstrap.servers": address, "transactional.id": f"bench-{run_id}"}
    )
    producer.init_transactions(60)
    deliveries = Deliveries()
    started = time.perf_counter()
    for start in range(0, records, txn_records):
        producer.begin_transaction()
        for i in range(start, min(records, start + txn_records)):
            _send(producer, txn_topic, values[i % len(values)], deliveries, 0)
        producer.commit_transaction(120)
    seconds = time.perf_counter() - started
    deliveries.check(records, f"producing transactions to {txn_topic}")
    transactional = records * RECORD_BYTES / MIB / seconds
    return {
        "idempotent_mb_s": idempotent,
        "transactional_mb_s": transactional,
        "ratio": transactional / idempotent,
    }


# -- the run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    records: int
    txn_records: int
    transaction_records: int
    partitions: int
    members: int
    config: Path | None


def run(scratch: Path, settings: Settings) -> dict[str, Any]:
    values = make_values()
    results: dict[str, Any] = {
        "record_bytes": RECORD_BYTES,
        "records": settings.records,
        "partitions": settings.partitions,
        "members": settings.members,
        "heartbeat_interval_ms": HEARTBEAT_MS,
        "session_timeout_ms": SESSION_MS,
        "txn_records": settings.txn_records,
        "records_per_transaction": settings.transaction_records,
    }
    cluster = MockCluster()
    try:
        mock = transactional_vs_idempotent(
            cluster.address,
            settings.txn_records,
            settings.transaction_records,
            values,
            "mock",
            False,
        )
    finally:
        cluster.close()
    results["mock_idempotent_mb_s"] = round(mock["idempotent_mb_s"], 1)
    results["mock_transactional_mb_s"] = round(mock["transactional_mb_s"], 1)
    results["mock_txn_vs_idempotent"] = round(mock["ratio"], 3)

    config = settings.config
    if config is None:
        config = scratch / "server.toml"
        config.write_text(SERVER_CONFIG)
    server = ServerProcess(scratch / "data", free_port(), scratch, config=config)
    try:
        server.start()
        server.wait_ready()
        for name, grouped in (("assign", False), ("group", True)):
            e2e = end_to_end(
                server.address,
                settings.partitions,
                settings.members,
                settings.records,
                values,
                grouped,
                name,
            )
            results[f"{name}_e2e_mb_s"] = round(e2e["mb_s"], 1)
            results[f"{name}_e2e_s"] = round(e2e["seconds"], 3)
        for strategy in ("range", "cooperative-sticky"):
            times = rebalance_times(
                server.address, settings.partitions, settings.members, strategy, strategy
            )
            key = strategy.replace("-", "_")
            results[f"rebalance_leave_s_{key}"] = round(times["leave_s"], 3)
            results[f"rebalance_join_s_{key}"] = round(times["join_s"], 3)
        txn = transactional_vs_idempotent(
            server.address,
            settings.txn_records,
            settings.transaction_records,
            values,
            "server",
            True,
        )
        results["idempotent_mb_s"] = round(txn["idempotent_mb_s"], 1)
        results["transactional_mb_s"] = round(txn["transactional_mb_s"], 1)
        results["txn_vs_idempotent"] = round(txn["ratio"], 3)
        results["server_exit_code"] = server.stop()
    except BaseException:
        print(f"the server's last lines:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.kill()
    results["group_vs_assign"] = round(results["group_e2e_mb_s"] / results["assign_e2e_mb_s"], 3)
    return results


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("group end to end, MiB/s", "group_e2e_mb_s", "assign_e2e_mb_s", "group_vs_assign"),
        ("idempotent produce, MiB/s", "idempotent_mb_s", "mock_idempotent_mb_s", None),
        ("transactional produce, MiB/s", "transactional_mb_s", "mock_transactional_mb_s", None),
        ("transactional / idempotent", "txn_vs_idempotent", "mock_txn_vs_idempotent", None),
    ]
    print(
        f"{results['members']} members, {results['partitions']} partitions, "
        f"{results['records']} records of {results['record_bytes']} B; "
        f"heartbeat.interval.ms {results['heartbeat_interval_ms']}"
    )
    print(f"{'figure':34} {'tidelog':>10} {'baseline':>10} {'ratio':>8}")
    for label, key, baseline, ratio in rows:
        shown = f"{results[ratio]:>8}" if ratio else ""
        print(f"{label:34} {results[key]:>10} {results[baseline]:>10} {shown}")
    print("baselines: assign() without a group; librdkafka's mock cluster")
    for strategy in ("range", "cooperative_sticky"):
        leave, join = (results[f"rebalance_{k}_s_{strategy}"] for k in ("leave", "join"))
        print(f"rebalance ({strategy}): a member leaves {leave} s, one joins {join} s")


def main() -> None:
    parser = _harness.parser(__doc__, quick="a smoke test: a tenth of the records")
    parser.add_argument("--records", type=int, default=None, help="records of the group phase")
    parser.add_argument(
        "--txn-records", type=int, default=None, help="records of the produce phase"
    )
    parser.add_argument(
        "--records-per-transaction", type=int, default=1000, help="records in each transaction"
    )
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--data-dir", default=None, help="scratch directory, emptied after")
    parser.add_argument("--config", default=None, help="a config file for the server (TOML)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else DEFAULTS
    settings = Settings(
        records=args.records if args.records is not None else sizes["records"],
        txn_records=args.txn_records if args.txn_records is not None else sizes["txn_records"],
        transaction_records=args.records_per_transaction,
        partitions=args.partitions,
        members=args.members,
        config=Path(args.config).resolve() if args.config is not None else None,
    )
    with _harness.scratch(args.data_dir, "tidelog-group-bench-") as scratch:
        results = run(scratch, settings)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
