"""Manual replica assignments in CreateTopics and CreatePartitions, and a
topic named twice in CreatePartitions, answered as Kafka's controller
answers them on a cluster of one broker (node 1): raw requests for the
shapes Kafka's admin clients never send, confluent-kafka's AdminClient for
those they do."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import NewPartitions, NewTopic

from engine.protocol.apis import request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import ServerProcess
from tests.server.test_confluent import TIMEOUT, kafka_error, make_admin, topic_partitions
from tests.server.wire import Wire, build

NODE = 1
INVALID_REPLICA_ASSIGNMENT = KafkaCode.INVALID_REPLICA_ASSIGNMENT


def _create(
    wire: Wire, name: str, partitions: int, replication: int, assignments: list[Any]
) -> tuple[int, str | None]:
    topic = {
        "name": name,
        "num_partitions": partitions,
        "replication_factor": replication,
        "assignments": [
            {"partition_index": index, "broker_ids": brokers} for index, brokers in assignments
        ],
    }
    [answer] = _topics_request(wire, 19, 7, [topic]).topics
    return answer.error_code, answer.error_message


def _topics_request(wire: Wire, api_key: int, version: int, topics: list[Any]) -> Any:
    """A CreateTopics or CreatePartitions of ``topics``, not validate_only."""
    request = build(
        request_schema(api_key, version),
        topics=topics,
        timeout=datetime.timedelta(seconds=TIMEOUT),
        validate_only=False,
    )
    return wire.request(request)


@pytest.mark.parametrize(
    ("partitions", "replication", "assignments", "code"),
    [
        (3, -1, [(0, [NODE])], KafkaCode.INVALID_REQUEST),  # a count and an assignment
        (-1, 1, [(0, [NODE])], KafkaCode.INVALID_REQUEST),  # a factor and an assignment
        (-1, -1, [(0, [NODE, NODE])], INVALID_REPLICA_ASSIGNMENT),  # a broker twice
        (-1, -1, [(0, [NODE]), (0, [NODE])], INVALID_REPLICA_ASSIGNMENT),  # a partition twice
        (-1, -1, [(0, [NODE]), (2, [NODE])], INVALID_REPLICA_ASSIGNMENT),  # a gap
        (-1, -1, [(0, [])], INVALID_REPLICA_ASSIGNMENT),  # no replica
        (-1, -1, [(0, [7])], INVALID_REPLICA_ASSIGNMENT),  # no such broker
    ],
)
def test_create_topics_refuses_assignments_kafka_refuses(
    kafka_server: ServerProcess,
    topic: str,
    partitions: int,
    replication: int,
    assignments: list[Any],
    code: int,
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        refused, message = _create(wire, topic, partitions, replication, assignments)
        assert (refused, bool(message)) == (code, True)
        assert _create(wire, topic, -1, -1, [(0, [NODE]), (1, [NODE])]) == (KafkaCode.NONE, None)
    assert topic_partitions(kafka_server.bootstrap, topic) == 2


def _grow(wire: Wire, name: str, count: int, assignments: list[list[int]]) -> int:
    entry = {
        "name": name,
        "count": count,
        "assignments": [{"broker_ids": brokers} for brokers in assignments],
    }
    [answer] = _topics_request(wire, 37, 3, [entry]).results
    return answer.error_code


def test_create_partitions_needs_one_valid_assignment_per_partition_added(
    kafka_server: ServerProcess, topic: str
) -> None:
    admin = make_admin(kafka_server.bootstrap)
    admin.create_topics([NewTopic(topic, 2)])[topic].result(TIMEOUT)
    # librdkafka checks the count before it sends, not the brokers
    futures = admin.create_partitions(
        [NewPartitions(topic, 4, replica_assignment=[[NODE], [7]])], request_timeout=TIMEOUT
    )
    assert kafka_error(futures[topic]).code() == KafkaError.INVALID_REPLICA_ASSIGNMENT
    with Wire(kafka_server.bootstrap) as wire:
        for assignment in ([[NODE]], [[NODE], [NODE, NODE]], [[NODE], []], [[NODE]] * 3):
            assert _grow(wire, topic, 4, assignment) == INVALID_REPLICA_ASSIGNMENT, assignment
    assert topic_partitions(kafka_server.bootstrap, topic) == 2
    futures = admin.create_partitions(
        [NewPartitions(topic, 4, replica_assignment=[[NODE], [NODE]])], request_timeout=TIMEOUT
    )
    futures[topic].result(TIMEOUT)
    assert topic_partitions(kafka_server.bootstrap, topic) == 4


def test_a_topic_named_twice_in_create_partitions_is_refused_once_and_not_grown(
    kafka_server: ServerProcess, topic: str
) -> None:
    """As Kafka's ControllerApis.createPartitions: INVALID_REQUEST, once."""
    admin = make_admin(kafka_server.bootstrap)
    admin.create_topics([NewTopic(topic, 1)])[topic].result(TIMEOUT)
    entry = {"name": topic, "count": 3, "assignments": None}
    with Wire(kafka_server.bootstrap) as wire:
        answer = _topics_request(wire, 37, 3, [entry, {**entry, "count": 4}])
    assert [(r.name, r.error_code) for r in answer.results] == [(topic, KafkaCode.INVALID_REQUEST)]
    assert topic_partitions(kafka_server.bootstrap, topic) == 1
