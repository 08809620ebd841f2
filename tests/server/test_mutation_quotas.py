"""The controller mutation quota (KIP-599, engine/server/mutation_quotas.py):
its token bucket on a manual clock, and over the wire as Kafka answers it:
CreateTopics v6+, CreatePartitions v3+ and DeleteTopics v5+ refuse a topic
met while the bucket is spent with THROTTLING_QUOTA_EXCEEDED and the
throttle time; older versions do every topic and answer the throttle time."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema

import engine
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.quota_entities import ClientQuotas, Entity
from engine.server.mutation_quotas import MutationQuotas
from engine.server.quotas import MAX_THROTTLE_MS, WINDOW_SAMPLES
from tests.server.in_process import InProcessServer
from tests.server.wire import CLIENT_ID, Wire, build

RATE = 2.0
"""Partitions a second: a burst of RATE * WINDOW_SAMPLES = 22."""
THROTTLED = KafkaCode.THROTTLING_QUOTA_EXCEEDED


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_holds_a_burst_refills_at_the_quota_and_throttles_what_is_owed() -> None:
    quotas: dict[Entity, dict[str, float]] = {
        (("client-id", "app"),): {"controller_mutation_rate": RATE}
    }
    clock = _Clock()
    buckets = MutationQuotas(ClientQuotas(lambda: quotas, lambda alterations: None), clock)
    strict = buckets.for_request("User:alice", "app", strict=True)
    assert not strict.refused()
    strict.record(int(RATE * WINDOW_SAMPLES) + 8)  # the burst, and 8 partitions owed
    assert strict.refused()
    assert strict.throttle_ms() == 4000  # 8 partitions at 2 a second
    clock.now += 4
    assert not strict.refused() and strict.throttle_ms() == 0
    # permissive: never refused, the throttle is answered all the same
    permissive = buckets.for_request("User:alice", "app", strict=False)
    permissive.record(16)
    assert not permissive.refused() and permissive.throttle_ms() == 8000
    permissive.record(100)  # owed for 58 s: answered whole, as Kafka answers it
    assert permissive.throttle_ms() == 58_000
    # another client id has no quota
    unlimited = buckets.for_request("User:alice", "other", strict=True)
    unlimited.record(10**6)
    assert not unlimited.refused() and unlimited.throttle_ms() == 0


def test_a_quota_too_small_for_its_throttle_time_throttles_the_longest_time() -> None:
    """Kafka takes any positive double as a rate; 5e-324 makes the time
    owed infinite, answered as the longest throttle rather than raised."""
    quotas: dict[Entity, dict[str, float]] = {
        (("user", None),): {"controller_mutation_rate": 5e-324}
    }
    buckets = MutationQuotas(ClientQuotas(lambda: quotas, lambda alterations: None), _Clock())
    mutations = buckets.for_request("User:alice", "app", strict=True)
    mutations.record(1)
    assert mutations.refused() and mutations.throttle_ms() == MAX_THROTTLE_MS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    with engine.open(tmp_path / "node") as opened:
        opened.client_quotas.alter((("client-id", CLIENT_ID),), {"controller_mutation_rate": RATE})
        running = InProcessServer(opened)
        # The buckets' clock stands still: the throttle answered is what is
        # owed, however long creating the partitions takes, never less by
        # what refilled meanwhile (on a loaded machine, seconds: a throttle
        # of nothing would pass a bound that allowed for it).
        running.server.state.mutations = MutationQuotas(opened.client_quotas, _Clock())
        try:
            yield running
        finally:
            running.stop()


def _create(wire: Wire, version: int, *topics: tuple[str, int]) -> Any:
    return wire.request(
        build(
            load_request_schema(ApiKey.CREATE_TOPICS, version),
            topics=[
                {"name": name, "num_partitions": count, "replication_factor": 1}
                for name, count in topics
            ],
            timeout=datetime.timedelta(seconds=30),
        )
    )


def test_create_topics_past_the_quota_is_refused_from_v6_and_throttled_before(
    server: InProcessServer,
) -> None:
    with Wire(server.bootstrap) as wire:
        # the burst is 22: the first topic is done whole, the second finds
        # the bucket spent
        answer = _create(wire, 7, ("big", 30), ("next", 1))
        assert {t.name: t.error_code for t in answer.topics} == {
            "big": KafkaCode.NONE,
            "next": THROTTLED,
        }
        # 8 partitions owed at 2 a second
        assert answer.throttle_time == datetime.timedelta(seconds=4)
        assert not server.server.engine.has_topic("next")
        # v5 knows no THROTTLING_QUOTA_EXCEEDED: created, and the throttle answered
        older = _create(wire, 5, ("old", 2))
        assert [t.error_code for t in older.topics] == [KafkaCode.NONE]
        assert older.throttle_time == datetime.timedelta(seconds=5)  # 10 owed
        assert server.server.engine.has_topic("old")


def test_create_partitions_and_delete_topics_count_their_partitions(
    server: InProcessServer,
) -> None:
    engine_ = server.server.engine
    for name in ("a", "b"):
        engine_.create_topic(name, 1)
    with Wire(server.bootstrap) as wire:
        grown = wire.request(
            build(
                load_request_schema(ApiKey.CREATE_PARTITIONS, 3),
                topics=[{"name": "a", "count": 30}, {"name": "b", "count": 2}],
                timeout=datetime.timedelta(seconds=30),
            )
        )
        assert {r.name: r.error_code for r in grown.results} == {
            "a": KafkaCode.NONE,
            "b": THROTTLED,
        }
        assert grown.throttle_time == datetime.timedelta(seconds=3.5)  # 29 added, 7 owed
        assert engine_.topic_shape("a")[1] == 30 and engine_.topic_shape("b")[1] == 1
        deleted = wire.request(
            build(
                load_request_schema(ApiKey.DELETE_TOPICS, 5),
                topic_names=["b"],
                timeout=datetime.timedelta(seconds=30),
            )
        )
        assert [r.error_code for r in deleted.responses] == [THROTTLED]
        assert engine_.has_topic("b")
