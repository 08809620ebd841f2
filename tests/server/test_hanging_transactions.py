"""How an operator finds a hanging transaction, and what Kafka answers.

A transactional producer (confluent-kafka) begins, writes and never
commits. kafka-python's admin client then shows what kafka-transactions.sh
shows: DescribeProducers gives the open transaction's first offset (which
holds back the last stable offset), ListTransactions and
DescribeTransactions give it Ongoing since its start, and ListTransactions'
duration filter (v1) finds it once it is older than asked. When its
transaction.timeout.ms passes, the coordinator aborts it, fencing the
producer, and every listing says so. The engine runs in this process on a
ManualClock, so the timeout passes without waiting, and each start time is
the coordinator's clock, exactly.

Raw requests check the answers Kafka gives to what a client library
filters out: unknown and empty transactional ids, unknown state filters,
producer id filters, and partitions that do not exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

import engine
import native
from engine.clock import ManualClock
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from s3stream import StreamStoreConfig
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0
TXN_TIMEOUT_MS = 60_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def served(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    """An engine on a ManualClock, served on loopback."""
    config = engine.EngineConfig(
        store=StreamStoreConfig(upload_interval_s=0.05, compaction_interval_s=3600),
        cleaner_interval_s=3600.0,
    )
    opened = engine.open(tmp_path / "node", None, config, clock=clock)
    server = InProcessServer(opened)
    try:
        yield opened, server
    finally:
        server.stop()
        opened.close()


@pytest.fixture
def admin(served: tuple[engine.Engine, InProcessServer]) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(
        bootstrap_servers=served[1].bootstrap, request_timeout_ms=int(TIMEOUT * 1000)
    )
    try:
        yield client
    finally:
        client.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def listed(admin: KafkaAdminClient, **filters: object) -> dict[str, str]:
    """transactional id -> state, from ListTransactions (one broker)."""
    (listing,) = admin.list_transactions(**filters).values()
    return {t.transactional_id: t.state for t in listing}


def test_a_hanging_transaction_is_found_then_aborted_at_its_timeout(
    served: tuple[engine.Engine, InProcessServer], admin: KafkaAdminClient, clock: ManualClock
) -> None:
    opened, server = served
    opened.create_topic("orders", 1)
    for value in (b"plain-1", b"plain-2"):
        opened.produce("orders", 0, native.encode_batch([RecordSpec(0, None, value, ())]))
    producer = Producer(
        {
            "bootstrap.servers": server.bootstrap,
            "transactional.id": "stuck",
            "transaction.timeout.ms": TXN_TIMEOUT_MS,
            **quiet_librdkafka(),
        }
    )
    producer.init_transactions(TIMEOUT)
    began_ms = clock.time_ms()
    producer.begin_transaction()
    # Dated by the engine's clock, not librdkafka's: the topic refuses a
    # record more than an hour past the clock it reads.
    producer.produce("orders", b"never committed", partition=0, timestamp=began_ms)
    assert producer.flush(TIMEOUT) == 0
    tp = TopicPartition("orders", 0)
    partition = opened.partition("orders", 0)

    # What the operator sees: an open transaction from offset 2 holds back
    # the last stable offset, and its coordinator says Ongoing since began_ms.
    assert (partition.last_stable_offset, partition.high_watermark) == (2, 3)
    (state,) = admin.describe_producers([tp])[tp].active_producers
    assert state.current_transaction_start_offset == 2
    assert state.last_sequence == 0
    described = admin.describe_transactions(["stuck"])["stuck"]
    assert described.state == "Ongoing"
    assert (described.producer_id, described.producer_epoch) == (state.producer_id, 0)
    assert described.transaction_timeout_ms == TXN_TIMEOUT_MS
    assert described.transaction_start_time_ms == began_ms
    assert described.topic_partitions == {tp}
    assert listed(admin, state_filters=["Ongoing"]) == {"stuck": "Ongoing"}
    assert listed(admin, producer_id_filters=[state.producer_id]) == {"stuck": "Ongoing"}

    # Running longer than asked, by the coordinator's clock (KIP-994).
    assert listed(admin, duration_filter_ms=30_000) == {}
    clock.advance(31)
    assert listed(admin, duration_filter_ms=30_000) == {"stuck": "Ongoing"}

    # Past transaction.timeout.ms: aborted, the producer fenced, the LSO free.
    clock.advance(30)
    wait_for(
        lambda: admin.describe_transactions(["stuck"])["stuck"].state == "CompleteAbort",
        "the timed-out transaction to be aborted",
    )
    aborted = admin.describe_transactions(["stuck"])["stuck"]
    assert aborted.producer_epoch == 1  # bumped: the producer is fenced
    assert aborted.topic_partitions == set()
    assert listed(admin, state_filters=["Ongoing"]) == {}
    assert listed(admin, state_filters=["CompleteAbort"]) == {"stuck": "CompleteAbort"}
    (state,) = admin.describe_producers([tp])[tp].active_producers
    assert state.current_transaction_start_offset == -1
    assert state.coordinator_epoch == opened.leader_epoch
    # The marker's newer epoch replaces the old one's sequences, as in Kafka.
    assert (state.producer_epoch, state.last_sequence) == (1, -1)
    assert partition.last_stable_offset == partition.high_watermark == 4  # the abort marker
    del producer  # fenced: librdkafka gives up on its transaction


def test_admin_requests_get_kafkas_answers_for_what_is_unknown(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = served
    opened.create_topic("orders", 1)
    producer_id, _ = opened.transactions.init_producer_id("known", 60_000).result(TIMEOUT)
    # (DescribeTransactions of "known" is kafka-python's to read: kio cannot
    # decode the start time of -1 that Kafka sends for an Empty one.)
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        described = wire.request(
            build(
                request_schema(ApiKey.DESCRIBE_TRANSACTIONS, 0),
                transactional_ids=["unknown", ""],
            )
        )
        unknown, empty = described.transaction_states
        # Kafka's TransactionCoordinator leaves the schema's defaults beside an error.
        for state, code in (
            (unknown, KafkaCode.TRANSACTIONAL_ID_NOT_FOUND),
            (empty, KafkaCode.INVALID_REQUEST),
        ):
            assert state.error_code == code, state
            assert (state.transaction_state, state.producer_id, state.producer_epoch) == ("", 0, 0)
            assert state.topics == ()

        for version in (0, 1):
            listing = wire.request(
                build(
                    request_schema(ApiKey.LIST_TRANSACTIONS, version),
                    state_filters=["Stable"],
                    duration_filter=-1,
                )
            )
            # A filter naming only unknown states matches nothing.
            assert listing.unknown_state_filters == ("Stable",)
            assert listing.transaction_states == ()
            listing = wire.request(
                build(
                    request_schema(ApiKey.LIST_TRANSACTIONS, version),
                    producer_id_filters=[producer_id + 1],
                    duration_filter=-1,
                )
            )
            assert listing.transaction_states == ()

        producers = wire.request(
            build(
                request_schema(ApiKey.DESCRIBE_PRODUCERS, 0),
                topics=[
                    {"name": "orders", "partition_indexes": [0, 3]},
                    {"name": "missing", "partition_indexes": [0]},
                ],
            )
        )
        answers = {
            (topic.name, p.partition_index): (p.error_code, p.error_message, p.active_producers)
            for topic in producers.topics
            for p in topic.partitions
        }
        unknown_partition = (KafkaCode.UNKNOWN_TOPIC_OR_PARTITION, None, ())
        assert answers == {
            ("orders", 0): (0, None, ()),
            ("orders", 3): unknown_partition,
            ("missing", 0): unknown_partition,
        }
