"""DescribeTopicPartitions (key 75, KIP-966) over a real socket, answered
as Kafka 4.0's DescribeTopicPartitionsRequestHandler answers: named topics
or every topic in name order, a page at a time with a cursor, bounded by
max.request.partition.size.limit whatever limit the request claims, errors
as Metadata's; with the ACL authorizer, a principal sees nothing it may
not DESCRIBE; kafka-python's describe_topic_partitions negotiates v0."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AclOperation, ResourceType
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaAdminClient
from kio.index import load_request_schema

from engine.internal_topics import INTERNAL_TOPICS
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server.authorizer import AUTHORIZED_OPERATIONS_OMITTED
from engine.server.handlers.topic_partitions import Cursor, TopicShape, plan_page
from tests.server.conftest import ServerProcess, free_port, killed_if_setup_fails
from tests.server.request_versions import versions_answered
from tests.server.test_acls import TIMEOUT, Cluster, _allow, cluster_of_topics
from tests.server.wire import Wire, build

KEY = ApiKey.DESCRIBE_TOPIC_PARTITIONS
SHAPES = {"dtp-a": 3, "dtp-b": 1, "dtp-c": 5, "dtp-d": 2}
CEILING = 4
"""The server's max.request.partition.size.limit in these tests."""


class Served(ServerProcess):
    http: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dtp")
    config = root / "tidelog.toml"
    config.write_text(f'[server]\n"max.request.partition.size.limit" = {CEILING}\n')
    http_port = free_port()
    running = Served(
        root / "data", args=["--config", str(config), "--http", f"127.0.0.1:{http_port}"]
    ).start()
    running.http = f"http://127.0.0.1:{http_port}"
    with killed_if_setup_fails(running), Wire(running.bootstrap) as wire:
        for name, count in SHAPES.items():
            created = wire.request(
                build(
                    load_request_schema(ApiKey.CREATE_TOPICS, 7),
                    topics=[{"name": name, "num_partitions": count, "replication_factor": 1}],
                    timeout=datetime.timedelta(seconds=30),
                )
            )
            assert created.topics[0].error_code == KafkaCode.NONE
    yield running
    running.end_at_teardown(graceful=True)


def describe(bootstrap: str, topics: list[str], limit: int = 2000, cursor: Any = None) -> Any:
    with Wire(bootstrap) as wire:
        return wire.request(
            build(
                load_request_schema(KEY, 0),
                topics=[{"name": name} for name in topics],
                response_partition_limit=limit,
                cursor=cursor,
            )
        )


def partitions(answer: Any) -> list[tuple[str, int]]:
    return [(t.name, p.partition_index) for t in answer.topics for p in t.partitions]


def test_named_topics_are_described_in_name_order_as_metadata_describes_them(
    server: ServerProcess,
) -> None:
    answer = describe(server.bootstrap, ["dtp-b", "dtp-a", "dtp-b"])
    assert [t.name for t in answer.topics] == ["dtp-a", "dtp-b"]
    assert answer.next_cursor is None
    first = answer.topics[0]
    assert first.error_code == KafkaCode.NONE
    assert first.topic_id is not None
    assert first.is_internal is False
    assert [p.partition_index for p in first.partitions] == [0, 1, 2]
    with Wire(server.bootstrap) as wire:
        metadata = wire.request(
            build(load_request_schema(ApiKey.METADATA, 12), topics=[{"name": "dtp-a"}])
        )
    (described,) = metadata.topics
    assert first.topic_id == described.topic_id
    for ours, theirs in zip(first.partitions, described.partitions, strict=True):
        assert ours.leader_id == theirs.leader_id == metadata.brokers[0].node_id
        assert ours.leader_epoch == theirs.leader_epoch
        assert ours.replica_nodes == theirs.replica_nodes == ours.isr_nodes
        # One replica: none other is eligible (empty, not null, as Kafka's
        # Replicas.toList of an empty ELR).
        assert ours.eligible_leader_replicas == ()
        assert ours.last_known_elr == ()
        assert ours.offline_replicas == ()
    # No request flag: Kafka's handler always fills the authorized operations.
    assert first.topic_authorized_operations != AUTHORIZED_OPERATIONS_OMITTED


def walk(bootstrap: str, topics: list[str], limit: int) -> list[tuple[str, int]]:
    """Every partition the pages from the first to the last describe."""
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(1000):
        answer = describe(bootstrap, topics, limit=limit, cursor=cursor)
        page = partitions(answer)
        assert 1 <= len(page) <= limit
        seen += page
        if answer.next_cursor is None:
            return seen
        cursor = {
            "topic_name": answer.next_cursor.topic_name,
            "partition_index": answer.next_cursor.partition_index,
        }
    raise AssertionError("no last page")


def test_every_topic_when_none_is_named_internal_ones_included(server: ServerProcess) -> None:
    seen = walk(server.bootstrap, [], CEILING)
    names = list(dict.fromkeys(name for name, _ in seen))
    assert names == sorted(set(SHAPES) | set(INTERNAL_TOPICS))
    first = describe(server.bootstrap, [])
    internal = [t.name in INTERNAL_TOPICS for t in first.topics]
    assert [t.is_internal for t in first.topics] == internal
    assert first.topics[0].is_internal  # "__consumer_offsets" sorts first


def test_unknown_and_illegal_topics_are_answered_with_metadatas_errors(
    server: ServerProcess,
) -> None:
    answer = describe(server.bootstrap, ["dtp-missing", "bad/name", "dtp-b"])
    codes = {t.name: t.error_code for t in answer.topics}
    assert codes == {
        "bad/name": KafkaCode.INVALID_TOPIC_EXCEPTION,
        "dtp-b": KafkaCode.NONE,
        "dtp-missing": KafkaCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    missing = next(t for t in answer.topics if t.name == "dtp-missing")
    assert missing.topic_id is None  # kio reads the zero UUID as None
    assert missing.partitions == ()


def test_the_cursor_walks_every_partition_of_several_topics_exactly_once(
    server: ServerProcess,
) -> None:
    every = [(name, p) for name in sorted(SHAPES) for p in range(SHAPES[name])]
    for limit in (1, 2, 3):
        assert walk(server.bootstrap, list(SHAPES), limit) == every


def test_a_claimed_limit_is_bounded_by_the_servers_limit(server: ServerProcess) -> None:
    answer = describe(server.bootstrap, ["dtp-c"], limit=2**31 - 1)
    assert partitions(answer) == [("dtp-c", p) for p in range(CEILING)]
    assert (answer.next_cursor.topic_name, answer.next_cursor.partition_index) == (
        "dtp-c",
        CEILING,
    )
    # A limit of 0 or less is one partition, as Kafka's max(..., 1).
    assert partitions(describe(server.bootstrap, ["dtp-c"], limit=0)) == [("dtp-c", 0)]


def test_a_page_full_on_a_topic_boundary_points_at_the_next_topic(
    server: ServerProcess,
) -> None:
    answer = describe(server.bootstrap, ["dtp-a", "dtp-b"], limit=3)
    assert partitions(answer) == [("dtp-a", 0), ("dtp-a", 1), ("dtp-a", 2)]
    assert (answer.next_cursor.topic_name, answer.next_cursor.partition_index) == ("dtp-b", 0)


def test_a_cursor_outside_the_named_topics_or_below_zero_is_an_invalid_request(
    server: ServerProcess,
) -> None:
    outside = describe(
        server.bootstrap, ["dtp-a"], cursor={"topic_name": "dtp-b", "partition_index": 0}
    )
    assert [(t.name, t.error_code) for t in outside.topics] == [
        ("dtp-a", KafkaCode.INVALID_REQUEST)
    ]
    below = describe(
        server.bootstrap, ["dtp-a"], cursor={"topic_name": "dtp-a", "partition_index": -1}
    )
    assert [(t.name, t.error_code) for t in below.topics] == [("dtp-a", KafkaCode.INVALID_REQUEST)]


def test_kafka_python_pages_through_a_topic_at_v0(server: Served) -> None:
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap, request_timeout_ms=30_000)
    try:
        first = admin.describe_topic_partitions(["dtp-c"], response_partition_limit=3)
        assert [p["partition_index"] for p in first["topics"][0]["partitions"]] == [0, 1, 2]
        rest = admin.describe_topic_partitions(
            ["dtp-c"], response_partition_limit=3, cursor=first["next_cursor"]
        )
        assert [p["partition_index"] for p in rest["topics"][0]["partitions"]] == [3, 4]
        assert rest["next_cursor"] is None
    finally:
        admin.close()
    assert versions_answered(server.http, "DescribeTopicPartitions") == {0}


# -- the page's plan, as a property --------------------------------------------------------


@given(
    counts=st.lists(st.integers(1, 7), min_size=1, max_size=6),
    limit=st.integers(1, 9),
)
def test_pages_from_their_cursors_cover_every_partition_once_in_order(
    counts: list[int], limit: int
) -> None:
    shapes = {f"t{i}": TopicShape(bytes(16), n) for i, n in enumerate(counts)}
    every = [(name, p) for name in sorted(shapes) for p in range(shapes[name].partitions)]
    seen: list[tuple[str, int]] = []
    cursor: Cursor | None = None
    for _ in range(len(every) + 1):
        after = cursor.topic_name if cursor is not None else ""
        start = {cursor.topic_name: cursor.partition_index} if cursor is not None else {}
        shown = [(n, shapes[n]) for n in sorted(shapes) if n >= after]
        page, cursor = plan_page(shown, start, limit, every=True)
        described = [(t.name, p) for t in page for p in range(t.first, t.end)]
        assert 1 <= len(described) <= limit
        seen += described
        if cursor is None:
            break
    assert seen == every


# -- authorization --------------------------------------------------------------------------


USER = "User:dtp"


@pytest.fixture
def acl_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Topics ``seen`` and ``hidden``; USER may describe ``seen`` only."""
    describe_seen = _allow(ResourceType.TOPIC, "seen", USER, AclOperation.DESCRIBE)
    with cluster_of_topics(tmp_path / "node", {"seen": 2, "hidden": 2}, describe_seen) as running:
        yield running


def test_a_principal_without_describe_sees_nothing_of_a_topic(acl_cluster: Cluster) -> None:
    def ask(topics: list[str]) -> Any:
        with Wire(acl_cluster.bootstrap(USER), timeout=TIMEOUT) as wire:
            return wire.request(
                build(load_request_schema(KEY, 0), topics=[{"name": n} for n in topics])
            )

    every = ask([])
    assert [t.name for t in every.topics] == ["seen"]
    named = ask(["hidden", "seen", "nowhere"])
    by_name = {t.name: t for t in named.topics}
    assert [t.name for t in named.topics][-2:] == ["hidden", "nowhere"]  # refused ones last
    assert by_name["seen"].error_code == KafkaCode.NONE
    for refused in ("hidden", "nowhere"):  # existing or not, the same answer
        assert by_name[refused].error_code == KafkaCode.TOPIC_AUTHORIZATION_FAILED
        assert by_name[refused].topic_id is None  # kio reads the zero UUID as None
        assert by_name[refused].partitions == ()
        assert by_name[refused].topic_authorized_operations == AUTHORIZED_OPERATIONS_OMITTED
