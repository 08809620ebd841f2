"""Regular expressions from clients (a KIP-848 member's SubscribedTopicRegex,
ListTransactions v2's transactional id pattern) are matched in time linear
in the text, as Kafka's RE2/J matches them: a pattern that makes a
backtracking matcher take exponential time (``(a+)+b`` against a name of
64 ``a``) is answered like any other, and the server keeps serving.

A backtracking match holds the interpreter's lock for its whole run, so
it would stop every connection, not only the one that sent it: the server
runs in its own process here, so that the test can still tell."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import ServerProcess
from tests.server.wire import Wire, build

BOMB = "(a+)+b"
"""Exponential for a backtracking matcher on a string of ``a`` alone."""
VICTIM = "a" * 64


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    started = ServerProcess(tmp_path / "data").start()
    try:
        yield started
    finally:
        started.kill()  # a server stuck in a match takes no SIGTERM


def _create_topics(server: ServerProcess, *names: str) -> None:
    request = build(
        request_schema(ApiKey.CREATE_TOPICS, 5),
        topics=[{"name": name, "num_partitions": 1, "replication_factor": 1} for name in names],
        timeout=datetime.timedelta(seconds=10),
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        created = wire.request(request).topics
    assert {t.error_code for t in created} == {KafkaCode.NONE}


def _assert_serves(server: ServerProcess) -> None:
    request = build(
        request_schema(ApiKey.METADATA, 12),
        topics=[{"name": VICTIM}],
        allow_auto_topic_creation=False,
    )
    with Wire(server.bootstrap, timeout=10) as wire:
        assert wire.request(request).topics[0].error_code == KafkaCode.NONE


def _heartbeat(wire: Wire, member_id: str, epoch: int, regex: str, owned: list[Any]) -> Any:
    return wire.request(
        build(
            request_schema(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1),
            group_id="regex-bomb",
            member_id=member_id,
            member_epoch=epoch,
            rebalance_timeout=datetime.timedelta(seconds=30),
            subscribed_topic_names=None,
            subscribed_topic_regex=regex,
            server_assignor=None,
            topic_partitions=owned,
        )
    )


def _list_transactions(wire: Wire, pattern: str) -> Any:
    return wire.request(
        build(
            request_schema(ApiKey.LIST_TRANSACTIONS, 2),
            state_filters=[],
            producer_id_filters=[],
            duration_filter=-1,
            transactional_id_pattern=pattern,
        )
    )


def test_a_subscription_regex_is_resolved_in_linear_time(server: ServerProcess) -> None:
    """A member subscribing to ``(a+)+b|<its topic>`` while a topic of 64
    ``a`` exists: the group resolves the regex against every topic, and the
    member is assigned its topic's partition."""
    wanted = f"ok-{uuid.uuid4().hex[:8]}"
    _create_topics(server, VICTIM, wanted)
    member_id = uuid.uuid4().hex
    with Wire(server.bootstrap, timeout=10) as wire:
        answer = _heartbeat(wire, member_id, 0, f"{BOMB}|{wanted}", [])
        assert answer.error_code == KafkaCode.NONE
        for _ in range(100):
            if answer.assignment is not None and answer.assignment.topic_partitions:
                break
            time.sleep(0.1)  # the resolution runs on the coordinator's timer
            answer = _heartbeat(wire, member_id, int(answer.member_epoch), f"{BOMB}|{wanted}", [])
            assert answer.error_code == KafkaCode.NONE
        assigned = answer.assignment.topic_partitions if answer.assignment else ()
        assert [tuple(t.partitions) for t in assigned] == [(0,)]
    _assert_serves(server)


def test_a_transactional_id_pattern_is_matched_in_linear_time(server: ServerProcess) -> None:
    with Wire(server.bootstrap, timeout=10) as wire:
        initiated = wire.request(
            build(
                request_schema(ApiKey.INIT_PRODUCER_ID, 4),
                transactional_id=VICTIM,
                transaction_timeout=datetime.timedelta(seconds=60),
                producer_id=-1,
                producer_epoch=-1,
            )
        )
        assert initiated.error_code == KafkaCode.NONE
        listed = _list_transactions(wire, BOMB)
    assert listed.error_code == KafkaCode.NONE
    assert listed.transaction_states == ()
    _create_topics(server, VICTIM)
    _assert_serves(server)


@pytest.mark.parametrize("pattern", ["(?=a)a", r"(a)\1", "a{100000}"])
def test_a_pattern_linear_matching_cannot_take_is_refused(
    server: ServerProcess, pattern: str
) -> None:
    """Lookarounds, backreferences and repetitions past RE2's bound do not
    compile in RE2/J either: INVALID_REGULAR_EXPRESSION, as Kafka answers,
    for the pattern and the subscription alike."""
    with Wire(server.bootstrap, timeout=10) as wire:
        listed = _list_transactions(wire, pattern)
        assert listed.error_code == KafkaCode.INVALID_REGULAR_EXPRESSION
        answer = _heartbeat(wire, uuid.uuid4().hex, 0, pattern, [])
        assert answer.error_code == KafkaCode.INVALID_REGULAR_EXPRESSION
    _create_topics(server, VICTIM)
    _assert_serves(server)
