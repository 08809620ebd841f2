"""Transactions against a principal with few rights, over the wire.

A Produce carrying transactional batches, by a principal with WRITE on
the topic but not on the transaction: as Kafka's
KafkaApis.handleProduceRequest, transactional records need WRITE on the
request's transactional id (a request naming none is refused
TRANSACTIONAL_ID_AUTHORIZATION_FAILED), and as Kafka's transaction
verification, the batch's producer id must be that transactional id's
(INVALID_PRODUCER_ID_MAPPING otherwise). Else anyone who may write the
topic could slip records into another producer's open transaction, to be
committed with it as if its owner had written them.

DescribeTransactions lists, of a transaction the principal may DESCRIBE,
only the partitions of topics it may DESCRIBE (Kafka's
handleDescribeTransactionsRequest): the transactional id is no way to
learn the names of topics kept from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AclOperation, ResourceType
from kio.index import load_request_schema as request_schema

import native
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition
from tests.server.conftest import quiet_librdkafka
from tests.server.test_acls import (
    ADMIN,
    TIMEOUT,
    Cluster,
    _allow,
    _create,
    _create_topic,
    open_cluster,
)
from tests.server.wire import Wire, build

TOPIC, PUBLIC = "ledger", "public"
VICTIM, ATTACKER, OBSERVER = "User:alice", "User:mallory", "User:eve"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with open_cluster(tmp_path / "node") as running:
        yield running


@pytest.fixture
def open_transaction(cluster: Cluster) -> Iterator[Producer]:
    """alice's transaction, open on the topic with one record in it;
    mallory may write the topic and her own transactional id only."""
    _create_topic(cluster, TOPIC)
    _create_topic(cluster, PUBLIC)
    _create(
        cluster.admin(),
        _allow(ResourceType.TOPIC, TOPIC, VICTIM, AclOperation.WRITE),
        _allow(ResourceType.TOPIC, PUBLIC, VICTIM, AclOperation.WRITE),
        _allow(ResourceType.TRANSACTIONAL_ID, "alice-txn", VICTIM, AclOperation.WRITE),
        _allow(ResourceType.TOPIC, TOPIC, ATTACKER, AclOperation.WRITE),
        _allow(ResourceType.TRANSACTIONAL_ID, "mallory-txn", ATTACKER, AclOperation.WRITE),
    )
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap(VICTIM),
            "transactional.id": "alice-txn",
            **quiet_librdkafka(),
        }
    )
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    producer.produce(TOPIC, b"alice's own")
    producer.produce(PUBLIC, b"alice's, public")
    assert producer.flush(TIMEOUT) == 0
    yield producer


def _forged(
    cluster: Cluster,
    transactional_id: str | None,
    transactional: bool = True,
    partition: int = 0,
    batches: int = 1,
) -> Any:
    """A Produce of one record as the victim's producer, whose transaction
    is open: its producer id, epoch and next sequence, as DescribeProducers
    shows them to anyone who may read the topic (``batches`` times over, to
    ``partition``)."""
    (victim,) = cluster.engine.partition(TOPIC, 0).describe_producers()
    assert victim.current_txn_start_offset == 0
    records = native.encode_batch(
        [native.RecordSpec(0, None, b"mallory's, in alice's name", ())],
        producer_id=victim.producer_id,
        producer_epoch=victim.producer_epoch,
        base_sequence=victim.last_sequence + 1,
        is_transactional=transactional,
    )
    return _produce(transactional_id, {(TOPIC, partition): records * batches})


def _produce(transactional_id: str | None, records: dict[tuple[str, int], bytes]) -> Any:
    """A Produce v9 (acks=-1) of ``records`` by topic and partition."""
    return build(
        request_schema(ApiKey.PRODUCE, 9),
        transactional_id=transactional_id,
        acks=-1,
        timeout_ms=TIMEOUT * 1000,
        topic_data=[
            {"name": topic, "partition_data": [{"index": partition, "records": batch}]}
            for (topic, partition), batch in records.items()
        ],
    )


def _code(cluster: Cluster, request: Any) -> int:
    with Wire(cluster.bootstrap(ATTACKER), timeout=TIMEOUT) as wire:
        answer = wire.request(request)
    (topic,) = answer.responses
    (partition,) = topic.partition_responses
    return int(partition.error_code)


@pytest.mark.parametrize(
    ("transactional_id", "transactional", "refused"),
    [
        # Kafka's handleProduceRequest: transactional records need an id.
        (None, True, KafkaCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        # Its transaction verification: the id's producer, no other.
        ("mallory-txn", True, KafkaCode.INVALID_PRODUCER_ID_MAPPING),
        # Its ProducerAppendInfo ("Expected transactional write from
        # producer"): taken, the record was the victim's producer's outside
        # its transaction (its abort could not take it back), and the
        # victim's next batch was out of sequence.
        (None, False, KafkaCode.INVALID_TXN_STATE),
    ],
    ids=["no-transactional-id", "another-transactional-id", "outside-the-transaction"],
)
def test_a_batch_as_another_producer_in_its_transaction_is_refused(
    cluster: Cluster,
    open_transaction: Producer,
    transactional_id: str | None,
    transactional: bool,
    refused: KafkaCode,
) -> None:
    code = _code(cluster, _forged(cluster, transactional_id, transactional))
    assert code == refused
    assert cluster.engine.offsets(TOPIC, 0) == (0, 1)
    open_transaction.commit_transaction(TIMEOUT)


@pytest.mark.parametrize(
    ("partition", "batches", "refused"),
    [
        # Kafka's KafkaApis answers these before ReplicaManager verifies the
        # transaction: a partition its metadata does not have, then records
        # ProduceRequest.validateRecords refuses (one batch per partition).
        (7, 1, KafkaCode.UNKNOWN_TOPIC_OR_PARTITION),
        (0, 2, KafkaCode.INVALID_RECORD),
    ],
    ids=["unknown-partition", "two-batches"],
)
def test_what_kafka_answers_before_verifying_a_transaction_comes_first(
    cluster: Cluster, open_transaction: Producer, partition: int, batches: int, refused: KafkaCode
) -> None:
    forged = _forged(cluster, "mallory-txn", partition=partition, batches=batches)
    assert _code(cluster, forged) == refused
    assert cluster.engine.offsets(TOPIC, 0) == (0, 1)
    open_transaction.commit_transaction(TIMEOUT)


def test_a_request_speaking_for_two_producers_is_refused_whole(
    cluster: Cluster, open_transaction: Producer
) -> None:
    # Kafka's ReplicaManager.handleProduceAppend: the transactional batches
    # of one request are one producer's (InvalidPidMappingException, every
    # partition alike); here the second is the victim's.
    coordinator = cluster.engine.transactions
    own, epoch = coordinator.init_producer_id("mallory-txn", 60_000).result(TIMEOUT)
    coordinator.add_partitions("mallory-txn", own, epoch, [TopicPartition(PUBLIC, 0)]).result(
        TIMEOUT
    )
    mine = native.encode_batch(
        [native.RecordSpec(0, None, b"mallory's own", ())],
        producer_id=own,
        producer_epoch=epoch,
        base_sequence=0,
        is_transactional=True,
    )
    victims = _forged(cluster, "mallory-txn").topic_data[0].partition_data[0].records
    request = _produce("mallory-txn", {(PUBLIC, 0): mine, (TOPIC, 0): victims})
    with Wire(cluster.bootstrap(ADMIN), timeout=TIMEOUT) as wire:
        answer = wire.request(request)
    codes = [p.error_code for t in answer.responses for p in t.partition_responses]
    assert codes == [KafkaCode.INVALID_PRODUCER_ID_MAPPING] * 2
    assert cluster.engine.offsets(PUBLIC, 0) == (0, 1)  # alice's record only
    assert cluster.engine.offsets(TOPIC, 0) == (0, 1)
    open_transaction.commit_transaction(TIMEOUT)


def test_describe_transactions_lists_only_the_topics_the_principal_may_describe(
    cluster: Cluster, open_transaction: Producer
) -> None:
    _create(
        cluster.admin(),
        _allow(ResourceType.TRANSACTIONAL_ID, "alice-txn", OBSERVER, AclOperation.DESCRIBE),
        _allow(ResourceType.TOPIC, PUBLIC, OBSERVER, AclOperation.DESCRIBE),
    )
    request = build(
        request_schema(ApiKey.DESCRIBE_TRANSACTIONS, 0), transactional_ids=["alice-txn"]
    )
    with Wire(cluster.bootstrap(OBSERVER), timeout=TIMEOUT) as wire:
        (state,) = wire.request(request).transaction_states
    assert state.error_code == KafkaCode.NONE
    assert [(t.topic, list(t.partitions)) for t in state.topics] == [(PUBLIC, [0])]
    with Wire(cluster.bootstrap(ADMIN), timeout=TIMEOUT) as wire:
        (state,) = wire.request(request).transaction_states
    assert sorted(t.topic for t in state.topics) == [TOPIC, PUBLIC]
    open_transaction.commit_transaction(TIMEOUT)


def test_add_partitions_answers_each_partition_as_kafka_does(cluster: Cluster) -> None:
    """Kafka's handleAddPartitionsToTxnRequest judges each partition: no
    WRITE on its topic (and an internal topic, whatever the ACLs)
    TOPIC_AUTHORIZATION_FAILED, a writable topic that does not exist
    UNKNOWN_TOPIC_OR_PARTITION, the rest OPERATION_NOT_ATTEMPTED."""
    _create_topic(cluster, TOPIC)
    _create(
        cluster.admin(),
        _allow(ResourceType.TOPIC, TOPIC, ATTACKER, AclOperation.WRITE),
        _allow(ResourceType.TOPIC, "ghost", ATTACKER, AclOperation.WRITE),
        _allow(ResourceType.TOPIC, "__consumer_offsets", ATTACKER, AclOperation.WRITE),
        _allow(ResourceType.TRANSACTIONAL_ID, "mallory-txn", ATTACKER, AclOperation.WRITE),
    )
    producer_id, epoch = cluster.engine.transactions.init_producer_id("mallory-txn", 60_000).result(
        TIMEOUT
    )
    wanted = [(TOPIC, 0), (PUBLIC, 0), ("ghost", 0), ("__consumer_offsets", 0)]
    request = build(
        request_schema(ApiKey.ADD_PARTITIONS_TO_TXN, 3),
        v3_and_below_transactional_id="mallory-txn",
        v3_and_below_producer_id=producer_id,
        v3_and_below_producer_epoch=epoch,
        v3_and_below_topics=[{"name": name, "partitions": [p]} for name, p in wanted],
    )
    with Wire(cluster.bootstrap(ATTACKER), timeout=TIMEOUT) as wire:
        answer = wire.request(request)
    codes = {
        (t.name, r.partition_index): r.partition_error_code
        for t in answer.results_by_topic_v3_and_below
        for r in t.results_by_partition
    }
    assert codes == {
        (TOPIC, 0): KafkaCode.OPERATION_NOT_ATTEMPTED,
        (PUBLIC, 0): KafkaCode.TOPIC_AUTHORIZATION_FAILED,
        ("ghost", 0): KafkaCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("__consumer_offsets", 0): KafkaCode.TOPIC_AUTHORIZATION_FAILED,
    }
    assert cluster.engine.transactions.describe("mallory-txn").partitions == frozenset()
