"""Transactions with confluent-kafka (librdkafka) against ``tidelog serve``.

A consume-transform-produce loop commits its output and its consumer
group's offsets in one transaction, aborting half of them at random: a
read_committed consumer sees each input transformed exactly once, in
order; a read_uncommitted one sees the aborted attempts too (and never a
control record); the group's committed offsets end at the input's end. A
zombie producer (same transactional.id, older epoch) is fenced. A server
killed with SIGKILL in the middle of a transaction ends it atomically
once its timeout passes. kafka-python's admin client describes and lists
transactions and a partition's producers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import random
import time
from collections.abc import Iterable
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition as KafkaPythonTopicPartition
from kafka.admin import KafkaAdminClient

import native
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from native import RecordSpec
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.wire import Wire, build, standalone_commit

TIMEOUT = 30.0
"""Seconds any one client call may take before the test fails."""


# -- clients ---------------------------------------------------------------------------------


def create_topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(TIMEOUT)


def transactional_producer(bootstrap: str, transactional_id: str, **conf: Any) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            **quiet_librdkafka(),
        }
        | conf
    )
    producer.init_transactions(TIMEOUT)
    return producer


def plain_produce(bootstrap: str, topic: str, values: Iterable[bytes], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    for value in values:
        producer.produce(topic, value, partition=partition)
    assert producer.flush(TIMEOUT) == 0


def read_values(
    bootstrap: str, topic: str, isolation_level: str, partitions: int = 1
) -> dict[int, list[bytes]]:
    """Every value of every partition, read from the beginning to the end
    the consumer can see (the last stable offset when read_committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "readers",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation_level,
            **quiet_librdkafka(),
        }
    )
    out: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    at_end: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + TIMEOUT
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"{topic}: no end of partitions in {TIMEOUT} s"
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                at_end.add(message.partition())
                continue
            at_end.discard(message.partition())
            value = message.value()
            assert value is not None
            out[message.partition()].append(value)
    finally:
        consumer.close()
    return out


# -- consume, transform, produce ---------------------------------------------------------------


def test_consume_transform_produce_is_exactly_once(transaction_server: ServerProcess) -> None:
    bootstrap = transaction_server.bootstrap
    suffix = f"{time.monotonic_ns()}"
    source, sink, group = f"in-{suffix}", f"out-{suffix}", f"eos-{suffix}"
    create_topics(bootstrap, source, sink, partitions=2)
    inputs = {p: [b"%d-%d" % (p, i) for i in range(30)] for p in range(2)}
    for partition, values in inputs.items():
        plain_produce(bootstrap, source, values, partition)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 6000,
            **quiet_librdkafka(),
        }
    )
    producer = transactional_producer(bootstrap, f"eos-{suffix}")
    rng = random.Random(20240611)
    attempts: dict[int, list[bytes]] = {0: [], 1: []}
    aborted = 0
    try:
        consumer.subscribe([source])
        deadline = time.monotonic() + 4 * TIMEOUT
        while True:
            assert time.monotonic() < deadline, "the loop did not finish"
            assignment = consumer.assignment()
            if len(assignment) == 2:
                committed = consumer.committed(assignment, TIMEOUT)
                if all(tp.offset == len(inputs[tp.partition]) for tp in committed):
                    break
            messages = [m for m in consumer.consume(10, 0.5) if m.error() is None]
            if not messages:
                continue
            producer.begin_transaction()
            for message in messages:
                value, partition = b"T:" + (message.value() or b""), message.partition()
                assert partition is not None
                producer.produce(sink, value, partition=partition)
                attempts[partition].append(value)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                TIMEOUT,
            )
            if rng.random() < 0.5:
                assert producer.flush(TIMEOUT) == 0  # in the log, then aborted
                producer.abort_transaction(TIMEOUT)
                aborted += 1
                rewind(consumer)
            else:
                producer.commit_transaction(TIMEOUT)
    finally:
        consumer.close()
    assert aborted > 0
    committed_output = read_values(bootstrap, sink, "read_committed", 2)
    assert committed_output == {p: [b"T:" + v for v in values] for p, values in inputs.items()}
    everything = read_values(bootstrap, sink, "read_uncommitted", 2)
    assert everything == attempts  # aborted attempts included, no control record
    assert sum(map(len, everything.values())) > sum(map(len, committed_output.values()))


def rewind(consumer: Consumer) -> None:
    """After an abort: back to the group's committed offsets."""
    for tp in consumer.committed(consumer.assignment(), TIMEOUT):
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


# -- fencing -----------------------------------------------------------------------------------


def test_a_zombie_producer_is_fenced(transaction_server: ServerProcess, topic: str) -> None:
    bootstrap = transaction_server.bootstrap
    create_topics(bootstrap, topic)
    zombie = transactional_producer(bootstrap, f"zombie-{topic}")
    zombie.begin_transaction()
    zombie.produce(topic, b"zombie", partition=0)
    assert zombie.flush(TIMEOUT) == 0
    # The new instance aborts the zombie's open transaction and bumps the epoch.
    fresh = transactional_producer(bootstrap, f"zombie-{topic}")
    fresh.begin_transaction()
    fresh.produce(topic, b"fresh", partition=0)
    fresh.commit_transaction(TIMEOUT)
    zombie.produce(topic, b"zombie again", partition=0)
    with pytest.raises(KafkaException) as caught:
        zombie.commit_transaction(TIMEOUT)
    assert caught.value.args[0].fatal()
    assert read_values(bootstrap, topic, "read_committed") == {0: [b"fresh"]}
    assert b"zombie again" not in read_values(bootstrap, topic, "read_uncommitted")[0]


# -- SIGKILL -----------------------------------------------------------------------------------


def test_a_transaction_open_when_the_server_is_killed_ends_atomically(
    own_transaction_server: ServerProcess, topic: str
) -> None:
    server = own_transaction_server
    bootstrap = server.bootstrap
    create_topics(bootstrap, topic)
    plain_produce(bootstrap, topic, [b"before"])
    doomed = transactional_producer(
        bootstrap,
        f"killed-{topic}",
        # librdkafka wants no socket timeout above the transaction's; and
        # quiet: it keeps reconnecting to the killed server.
        **{"transaction.timeout.ms": 5000, "socket.timeout.ms": 5000, "log_level": 0},
    )
    doomed.begin_transaction()
    for i in range(5):
        doomed.produce(topic, b"doomed-%d" % i, partition=0)
    assert doomed.flush(TIMEOUT) == 0  # durable in the WAL, not committed
    server.kill()
    server.start()
    plain_produce(bootstrap, topic, [b"after"])
    # While it is still open after the restart, a read_committed reader
    # stops before it; once its timeout passes the coordinator aborts it.
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert time.monotonic() < deadline, "the killed transaction was never aborted"
        seen = read_values(bootstrap, topic, "read_committed")
        state = transaction_state(bootstrap, f"killed-{topic}")
        if state == "Ongoing":  # it was open when read, too
            assert seen == {0: [b"before"]}
        elif state == "CompleteAbort" and seen == {0: [b"before", b"after"]}:
            break
        time.sleep(0.2)
    doomed_values = [b"doomed-%d" % i for i in range(5)]
    assert read_values(bootstrap, topic, "read_uncommitted") == {
        0: [b"before", *doomed_values, b"after"]
    }
    # The transactional id carries on under a new producer.
    successor = transactional_producer(bootstrap, f"killed-{topic}")
    successor.begin_transaction()
    successor.produce(topic, b"successor", partition=0)
    successor.commit_transaction(TIMEOUT)
    assert read_values(bootstrap, topic, "read_committed")[0][-1] == b"successor"


@pytest.mark.slow
@pytest.mark.parametrize("killed_when", ["offsets sent", "committing", "committed"])
def test_a_transactions_offsets_follow_it_across_a_sigkill(
    own_transaction_server: ServerProcess, topic: str, killed_when: str
) -> None:
    """send_offsets_to_transaction, then SIGKILL: after the offsets were
    sent (the transaction open: aborted once its producer is fenced), while
    the commit is in flight (the client retries it once the server is back;
    either outcome, but the offsets and the records together), or once it
    was answered (kept). The producer's successor, with the same
    transactional id and producer id, commits its own offsets only."""
    server = own_transaction_server
    bootstrap = server.bootstrap
    source, group = f"in-{topic}", f"g-{topic}"
    create_topics(bootstrap, source, topic, partitions=2)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **quiet_librdkafka()})
    doomed = transactional_producer(
        bootstrap,
        f"killed-{topic}",
        **{"transaction.timeout.ms": 5000, "socket.timeout.ms": 5000, "log_level": 0},
    )
    doomed.begin_transaction()
    doomed.produce(topic, b"doomed", partition=0)
    doomed.send_offsets_to_transaction(
        [TopicPartition(source, 0, 7)], consumer.consumer_group_metadata(), TIMEOUT
    )
    committing = None
    if killed_when == "committing":
        committing = concurrent.futures.ThreadPoolExecutor(1).submit(
            doomed.commit_transaction, TIMEOUT
        )
        time.sleep(random.uniform(0, 0.05))  # anywhere in the commit
    elif killed_when == "committed":
        doomed.commit_transaction(TIMEOUT)
    server.kill()
    server.start()
    if committing is not None:
        with contextlib.suppress(KafkaException):  # fenced if its timeout passed first
            committing.result(2 * TIMEOUT)
    successor = transactional_producer(bootstrap, f"killed-{topic}")
    successor.begin_transaction()
    successor.produce(topic, b"successor", partition=1)
    successor.send_offsets_to_transaction(
        [TopicPartition(source, 1, 3)], consumer.consumer_group_metadata(), TIMEOUT
    )
    successor.commit_transaction(TIMEOUT)
    try:
        wanted = [TopicPartition(source, 0), TopicPartition(source, 1)]
        offsets = [tp.offset for tp in consumer.committed(wanted, TIMEOUT)]
    finally:
        consumer.close()
    output = read_values(bootstrap, topic, "read_committed", 2)
    assert output[1] == [b"successor"]
    if killed_when == "offsets sent":
        assert output[0] == []
    elif killed_when == "committed":
        assert output[0] == [b"doomed"]
    assert offsets == [7 if output[0] == [b"doomed"] else OFFSET_INVALID, 3]


def transaction_state(bootstrap: str, transactional_id: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        state: str = admin.describe_transactions([transactional_id])[transactional_id].state
        return state
    finally:
        admin.close()


# -- admin ---------------------------------------------------------------------------------------


def test_admin_describes_transactions_and_producers(
    transaction_server: ServerProcess, topic: str
) -> None:
    bootstrap = transaction_server.bootstrap
    create_topics(bootstrap, topic)
    transactional_id = f"admin-{topic}"
    producer = transactional_producer(bootstrap, transactional_id)
    producer.begin_transaction()
    producer.produce(topic, b"open", partition=0)
    assert producer.flush(TIMEOUT) == 0
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        described = admin.describe_transactions([transactional_id])[transactional_id]
        assert described.state == "Ongoing"
        assert [(tp.topic, tp.partition) for tp in described.topic_partitions] == [(topic, 0)]
        (listed,) = admin.list_transactions(state_filters=["Ongoing"]).values()  # one broker
        mine = [t for t in listed if t.transactional_id == transactional_id]
        assert [(t.producer_id, t.state) for t in mine] == [(described.producer_id, "Ongoing")]
        tp = KafkaPythonTopicPartition(topic, 0)
        (state,) = admin.describe_producers([tp])[tp].active_producers
        assert state.producer_id == described.producer_id
        assert state.current_transaction_start_offset == 0
        producer.commit_transaction(TIMEOUT)
        described = admin.describe_transactions([transactional_id])[transactional_id]
        assert described.state == "CompleteCommit"
        (state,) = admin.describe_producers([tp])[tp].active_producers
        assert state.current_transaction_start_offset == -1
    finally:
        admin.close()


# -- the wire, version by version ----------------------------------------------------------------


def test_requests_answer_kafkas_errors_for_each_version(
    transaction_server: ServerProcess, topic: str
) -> None:
    """Raw requests: a fenced epoch is PRODUCER_FENCED from the versions
    that know it (KIP-588) and INVALID_PRODUCER_EPOCH before; a missing
    partition fails the whole AddPartitionsToTxn; ListOffsets and Fetch
    read_committed stop at the last stable offset."""
    bootstrap = transaction_server.bootstrap
    create_topics(bootstrap, topic)
    transactional_id = f"wire-{topic}"
    key = ApiKey.INIT_PRODUCER_ID
    with Wire(bootstrap, timeout=TIMEOUT) as wire:

        def init(version: int) -> Any:
            return wire.request(
                build(
                    request_schema(key, version),
                    transactional_id=transactional_id,
                    transaction_timeout=datetime.timedelta(seconds=60),
                    producer_id=-1,
                    producer_epoch=-1,
                )
            )

        first = init(4)
        assert (first.error_code, first.producer_epoch) == (0, 0)
        second = init(4)
        assert (second.producer_id, second.producer_epoch) == (first.producer_id, 1)
        fenced = {"transactional_id": transactional_id, "producer_id": first.producer_id}
        for version, expected in ((1, "INVALID_PRODUCER_EPOCH"), (2, "PRODUCER_FENCED")):
            end = wire.request(
                build(
                    request_schema(ApiKey.END_TXN, version),
                    **fenced,
                    producer_epoch=0,
                    committed=True,
                )
            )
            assert end.error_code == KafkaCode[expected]
        for version in (0, 3):
            stale = wire.request(
                build(
                    request_schema(ApiKey.INIT_PRODUCER_ID, version),
                    transactional_id=transactional_id,
                    transaction_timeout=datetime.timedelta(seconds=60),
                    producer_id=first.producer_id + 1000,
                    producer_epoch=0,
                )
            )
            # v0-2 carry no producer id: a plain bump; v3 names another producer
            expected = "NONE" if version == 0 else "INVALID_PRODUCER_EPOCH"
            assert stale.error_code == KafkaCode[expected], version
        current = init(4)
        assert current.producer_epoch == 3
        too_long = wire.request(
            build(
                request_schema(key, 4),
                transactional_id=transactional_id,
                transaction_timeout=datetime.timedelta(minutes=16),
            )
        )
        assert too_long.error_code == KafkaCode["INVALID_TRANSACTION_TIMEOUT"]

        def add(*partitions: tuple[str, int]) -> dict[tuple[str, int], int]:
            response = wire.request(
                build(
                    request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, 3),
                    v3_and_below_transactional_id=transactional_id,
                    v3_and_below_producer_id=current.producer_id,
                    v3_and_below_producer_epoch=current.producer_epoch,
                    v3_and_below_topics=[{"name": n, "partitions": [p]} for n, p in partitions],
                )
            )
            return {
                (t.name, r.partition_index): r.partition_error_code
                for t in response.results_by_topic_v3_and_below
                for r in t.results_by_partition
            }

        assert add((topic, 0), (topic, 5)) == {
            (topic, 0): KafkaCode["OPERATION_NOT_ATTEMPTED"],
            (topic, 5): KafkaCode["UNKNOWN_TOPIC_OR_PARTITION"],
        }
        # An internal topic takes no transactional records: refused as
        # Kafka refuses it, without an authorizer too.
        assert add((topic, 0), ("__transaction_state", 0)) == {
            (topic, 0): KafkaCode["OPERATION_NOT_ATTEMPTED"],
            ("__transaction_state", 0): KafkaCode["TOPIC_AUTHORIZATION_FAILED"],
        }
        assert add((topic, 0)) == {(topic, 0): 0}
        records = native.encode_batch(
            [RecordSpec(1_700_000_000_000, None, b"open", ())],
            producer_id=current.producer_id,
            producer_epoch=current.producer_epoch,
            base_sequence=0,
            is_transactional=True,
        )
        produced = wire.request(
            build(
                request_schema(ApiKey.PRODUCE, 9),
                transactional_id=transactional_id,
                acks=-1,
                timeout=datetime.timedelta(seconds=10),
                topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
            )
        )
        assert produced.responses[0].partition_responses[0].error_code == 0
        plain_produce(bootstrap, topic, [b"after"])

        def latest(isolation_level: int) -> int:
            response = wire.request(
                build(
                    request_schema(ApiKey.LIST_OFFSETS, 6),
                    replica_id=-1,
                    isolation_level=isolation_level,
                    topics=[
                        {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}
                    ],
                )
            )
            offset: int = response.topics[0].partitions[0].offset
            return offset

        assert (latest(0), latest(1)) == (2, 0)
        fetched = wire.request(
            build(
                request_schema(ApiKey.FETCH, 11),
                replica_id=-1,
                max_wait=datetime.timedelta(0),
                min_bytes=0,
                max_bytes=1 << 20,
                isolation_level=1,
                session_epoch=-1,
                topics=[
                    {
                        "topic": topic,
                        "partitions": [
                            {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
                        ],
                    }
                ],
            )
        )
        partition = fetched.responses[0].partitions[0]
        assert (partition.high_watermark, partition.last_stable_offset) == (2, 0)
        assert partition.records in (None, b"")
        ended = wire.request(
            build(request_schema(ApiKey.END_TXN, 3), **fenced, producer_epoch=3, committed=False)
        )
        assert ended.error_code == 0
        assert (latest(0), latest(1)) == (3, 3)
        listed = wire.request(
            build(
                request_schema(ApiKey.LIST_TRANSACTIONS, 1),
                state_filters=["CompleteAbort", "Bogus"],
                producer_id_filters=[current.producer_id],
                duration_filter=-1,
            )
        )
        assert list(listed.unknown_state_filters) == ["Bogus"]
        assert [(s.transactional_id, s.transaction_state) for s in listed.transaction_states] == [
            (transactional_id, "CompleteAbort")
        ]


def test_a_producers_last_timestamp_is_its_markers_once_the_transaction_ends(
    own_transaction_server: ServerProcess, topic: str
) -> None:
    """Kafka's ProducerStateManager takes a transaction marker's timestamp as
    the producer's last one: DescribeProducers lists the marker's stamp
    (the coordinator's clock), not the last batch's, and so after a restart."""
    bootstrap = own_transaction_server.bootstrap
    create_topics(bootstrap, topic)
    old = 1_600_000_000_000  # a record timestamp long before the marker's
    producer = transactional_producer(bootstrap, f"last-ts-{topic}")
    producer.begin_transaction()
    producer.produce(topic, b"v", partition=0, timestamp=old)
    assert producer.flush(TIMEOUT) == 0
    tp = KafkaPythonTopicPartition(topic, 0)

    def last_timestamp(server: ServerProcess) -> int:
        admin = KafkaAdminClient(
            bootstrap_servers=server.bootstrap, request_timeout_ms=int(TIMEOUT * 1000)
        )
        try:
            (state,) = admin.describe_producers([tp])[tp].active_producers
            return int(state.last_timestamp)
        finally:
            admin.close()

    assert last_timestamp(own_transaction_server) == old
    before_commit = int(time.time() * 1000)
    producer.commit_transaction(TIMEOUT)
    stamped = last_timestamp(own_transaction_server)
    assert stamped >= before_commit
    own_transaction_server.restart()
    assert last_timestamp(own_transaction_server) == stamped


def test_offsets_of_an_internal_topic_are_committed_as_kafka_commits_them(
    transaction_server: ServerProcess,
) -> None:
    """A consumer that reads the internal topics too (exclude.internal.topics
    off) commits its positions in them: Kafka's metadata has their
    partitions, so OffsetCommit and TxnOffsetCommit take them; a partition
    past theirs is UNKNOWN_TOPIC_OR_PARTITION."""
    bootstrap = transaction_server.bootstrap
    group = f"internal-{random.getrandbits(32):08x}"
    with Wire(bootstrap, timeout=TIMEOUT) as wire:
        answer = wire.request(
            standalone_commit(group, {("__consumer_offsets", 0): 0, ("__consumer_offsets", 1): 0})
        )
    codes = {p.partition_index: p.error_code for t in answer.topics for p in t.partitions}
    assert codes == {0: KafkaCode.NONE, 1: KafkaCode.UNKNOWN_TOPIC_OR_PARTITION}

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **quiet_librdkafka()})
    producer = transactional_producer(bootstrap, group)
    try:
        producer.begin_transaction()
        producer.send_offsets_to_transaction(
            [TopicPartition("__transaction_state", 0, 0)],
            consumer.consumer_group_metadata(),
            TIMEOUT,
        )
        producer.commit_transaction(TIMEOUT)
        wanted = [TopicPartition(name, 0) for name in ("__consumer_offsets", "__transaction_state")]
        assert [tp.offset for tp in consumer.committed(wanted, TIMEOUT)] == [0, 0]
    finally:
        consumer.close()
