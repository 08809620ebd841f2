"""The versions raised to Kafka 4.0's, over a real socket, each answered as
Kafka 4.0 answers it: Metadata v13 (a top-level error code), DescribeCluster
v2 (fenced brokers: this one never is), FindCoordinator v5 and v6 (share
keys: CLUSTER_ACTION, then INVALID_REQUEST), and a transaction at
InitProducerId v5, AddOffsetsToTxn v4, TxnOffsetCommit v4 and EndTxn v4
(a commit outside the transaction: TRANSACTION_ABORTABLE from v4), and
Produce v11's transactional batch outside its transaction
(TRANSACTION_ABORTABLE, INVALID_TXN_STATE at v10)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.config import ServerConfig
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

TIMEOUT = 30.0
SHARE_KEY = 2


@pytest.fixture
def node(tmp_path: Path) -> Iterator[InProcessServer]:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topic("in", 1)
        server = InProcessServer(opened)
        try:
            yield server
        finally:
            server.stop()


def ask(server: InProcessServer, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        return wire.request(build(request_schema(key, version), **values))


def test_metadata_v13_answers_a_top_level_error_code_of_none(node: InProcessServer) -> None:
    answer = ask(node, ApiKey.METADATA, 13, topics=[{"name": "in"}])
    assert answer.error_code == KafkaCode.NONE
    assert [(t.name, t.error_code) for t in answer.topics] == [("in", KafkaCode.NONE)]


def test_describe_cluster_v2_lists_this_broker_unfenced_either_way(node: InProcessServer) -> None:
    for include in (True, False):
        answer = ask(node, ApiKey.DESCRIBE_CLUSTER, 2, include_fenced_brokers=include)
        assert answer.error_code == KafkaCode.NONE
        (broker,) = answer.brokers
        assert broker.port == node.server.port
        assert broker.is_fenced is False


def test_find_coordinator_v5_and_v6_find_this_broker_for_groups(node: InProcessServer) -> None:
    for version in (5, 6):
        answer = ask(node, ApiKey.FIND_COORDINATOR, version, key_type=0, coordinator_keys=["g"])
        (found,) = answer.coordinators
        assert (found.key, found.error_code, found.port) == ("g", 0, node.server.port)


def test_a_share_key_is_an_invalid_request_at_every_version(node: InProcessServer) -> None:
    """No share coordinator: INVALID_REQUEST, as from a Kafka 4.0 broker
    without one (v6); before v6 key type 2 is no key type at all."""
    for version in (4, 6):
        answer = ask(
            node, ApiKey.FIND_COORDINATOR, version, key_type=SHARE_KEY, coordinator_keys=["s:t:0"]
        )
        (found,) = answer.coordinators
        assert found.error_code == KafkaCode.INVALID_REQUEST
        assert found.node_id == -1


def test_a_share_key_needs_cluster_action_first(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node") as opened:
        server = InProcessServer(
            opened, config=ServerConfig(authorizer="acl"), principal="User:nobody"
        )
        try:
            share = ask(
                server, ApiKey.FIND_COORDINATOR, 6, key_type=SHARE_KEY, coordinator_keys=["s:t:0"]
            )
        finally:
            server.stop()
    assert [c.error_code for c in share.coordinators] == [KafkaCode.CLUSTER_AUTHORIZATION_FAILED]


def _txn_offset_commit(producer_id: int, epoch: int) -> dict[str, Any]:
    return {
        "transactional_id": "pipeline",
        "group_id": "readers",
        "producer_id": producer_id,
        "producer_epoch": epoch,
        "generation_id": -1,
        "member_id": "",
        "topics": [
            {
                "name": "in",
                "partitions": [
                    {"partition_index": 0, "committed_offset": 3, "committed_leader_epoch": -1}
                ],
            }
        ],
    }


def _init_producer_id(node: InProcessServer) -> tuple[int, int]:
    """The transactional id "pipeline"'s producer id and epoch, at v5."""
    started = ask(
        node,
        ApiKey.INIT_PRODUCER_ID,
        5,
        transactional_id="pipeline",
        transaction_timeout=datetime.timedelta(seconds=60),
        producer_id=-1,
        producer_epoch=-1,
    )
    assert started.error_code == KafkaCode.NONE
    return started.producer_id, started.producer_epoch


def test_a_transaction_at_kafka_40s_versions(node: InProcessServer) -> None:
    producer_id, epoch = _init_producer_id(node)
    added = ask(
        node,
        ApiKey.ADD_OFFSETS_TO_TXN,
        4,
        transactional_id="pipeline",
        producer_id=producer_id,
        producer_epoch=epoch,
        group_id="readers",
    )
    assert added.error_code == KafkaCode.NONE
    committed = ask(node, ApiKey.TXN_OFFSET_COMMIT, 4, **_txn_offset_commit(producer_id, epoch))
    assert committed.topics[0].partitions[0].error_code == KafkaCode.NONE
    ended = ask(
        node,
        ApiKey.END_TXN,
        4,
        transactional_id="pipeline",
        producer_id=producer_id,
        producer_epoch=epoch,
        committed=True,
    )
    assert ended.error_code == KafkaCode.NONE


def test_a_txn_offset_commit_outside_its_transaction_is_abortable_from_v4(
    node: InProcessServer,
) -> None:
    """No AddOffsetsToTxn came first: Kafka's verification refuses the
    commit, TRANSACTION_ABORTABLE for a v4 client, INVALID_TXN_STATE before."""
    producer_id, epoch = _init_producer_id(node)
    codes = {
        version: ask(
            node, ApiKey.TXN_OFFSET_COMMIT, version, **_txn_offset_commit(producer_id, epoch)
        )
        .topics[0]
        .partitions[0]
        .error_code
        for version in (3, 4)
    }
    assert codes == {3: KafkaCode.INVALID_TXN_STATE, 4: KafkaCode.TRANSACTION_ABORTABLE}


def test_a_transactional_batch_outside_its_transaction_is_abortable_from_produce_v11(
    node: InProcessServer,
) -> None:
    """No AddPartitionsToTxn came first: Kafka's verification refuses the
    batch, TRANSACTION_ABORTABLE for a Produce v11 client (which aborts and
    goes on), INVALID_TXN_STATE before; nothing is appended either way."""
    producer_id, epoch = _init_producer_id(node)
    batch = native.encode_batch(
        [native.RecordSpec(0, None, b"outside", ())],
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=0,
        is_transactional=True,
    )
    codes = {
        version: ask(
            node,
            ApiKey.PRODUCE,
            version,
            transactional_id="pipeline",
            acks=-1,
            timeout_ms=int(TIMEOUT * 1000),
            topic_data=[{"name": "in", "partition_data": [{"index": 0, "records": batch}]}],
        )
        .responses[0]
        .partition_responses[0]
        .error_code
        for version in (10, 11)
    }
    assert codes == {10: KafkaCode.INVALID_TXN_STATE, 11: KafkaCode.TRANSACTION_ABORTABLE}
    assert ask(node, ApiKey.LIST_OFFSETS, 1, **_latest("in")).topics[0].partitions[0].offset == 0


def _latest(topic: str) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
    }
