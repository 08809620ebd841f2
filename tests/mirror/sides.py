"""Helpers of the mirror's tests: a source with everything that shifts
offsets, and checks that the target holds exactly the source's committed
records at the offsets the syncs give."""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from engine.mirror.reading import Cluster
from engine.mirror.sync_log import load_syncs, translation_of
from engine.types import TopicPartition as Tp
from tests.mirror.conftest import facts, producer, read_topic


def create(bootstrap: str, name: str, partitions: int, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1, config=config)]).values():
        future.result(30)


def produce_with_transactions(
    bootstrap: str, topic: str, partitions: int, rounds: int, txn_id: str, start: int = 0
) -> None:
    """Rounds of one record per partition (key, value, headers, a tombstone
    now and then), every third round aborted after its records were
    written, the others committed: markers and aborted records take source
    offsets the target never sees."""
    client = producer(bootstrap, **{"transactional.id": txn_id})
    client.init_transactions(30)
    for n in range(start, start + rounds):
        client.begin_transaction()
        for partition in range(partitions):
            client.produce(
                topic,
                None if n % 7 == 3 else f"value-{n}-{partition}".encode() * (1 + n % 3),
                None if n % 5 == 4 else f"key-{n % 11}".encode(),
                partition=partition,
                headers=[("trace", f"{n}".encode()), ("empty", None)] if n % 2 else None,
                timestamp=1_700_000_000_000 + n,
            )
        client.flush(30)
        if n % 3 == 2:
            client.abort_transaction(30)
        else:
            client.commit_transaction(30)


def produce_plain(bootstrap: str, topic: str, partitions: int, count: int, start: int = 0) -> None:
    client = producer(bootstrap, acks="all")
    for n in range(start, start + count):
        client.produce(
            topic,
            f"plain-{n}".encode(),
            f"k{n}".encode(),
            partition=n % partitions,
            headers=[("n", str(n).encode())],
        )
        if n % 1000 == 999:
            client.flush(30)
    assert client.flush(30) == 0


class Writer(threading.Thread):
    """Produces plain records in flushed batches until stopped, so a test
    can kill something while records are still being written."""

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, batch: int = 200, pause_s: float = 0.0
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.partitions, self.batch = (
            bootstrap,
            topic,
            partitions,
            batch,
        )
        self.pause_s = pause_s
        """Between batches: a long run writes only as much as a test reads back."""
        self.written = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            produce_plain(self.bootstrap, self.topic, self.partitions, self.batch, self.written)
            self.written += self.batch
            self.halt.wait(self.pause_s)

    def stop(self) -> int:
        """Stops after the batch under way; how many records were written."""
        self.halt.set()
        self.join(120)
        assert not self.is_alive()
        return self.written


def assert_mirrored_exactly(
    source: str, target: str, topic: str, partitions: int
) -> dict[str, int]:
    """The target holds the source's committed records, in order, and every
    record's target offset is its source offset translated through the
    syncs. Returns how many records there are and how many offsets shifted."""
    syncs = load_syncs(Cluster(target))
    records = shifted = 0
    sources, targets = read_topic(source, topic, partitions), read_topic(target, topic, partitions)
    for partition in range(partitions):
        original, mirrored = sources[partition], targets[partition]
        assert [facts(r) for r in mirrored] == [facts(r) for r in original], (topic, partition)
        translation = translation_of(syncs.get(Tp(topic, partition), []))
        for a, b in zip(original, mirrored, strict=True):
            assert translation.translate(a.offset()) == b.offset(), (partition, a.offset())
            shifted += a.offset() != b.offset()
        records += len(original)
    return {"records": records, "shifted": shifted}


def low_watermark(bootstrap: str, topic: str, partition: int) -> int:
    from tests.mirror.conftest import Consumer  # the conftest's client, quiet

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests.mirror.low"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        return int(low)
    finally:
        consumer.close()


def delete_records(bootstrap: str, topic: str, partition: int, before: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures: dict[Any, Any] = admin.delete_records([TopicPartition(topic, partition, before)])
    for future in futures.values():
        future.result(30)
