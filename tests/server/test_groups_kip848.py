"""Consumer groups of the KIP-848 protocol with confluent-kafka (librdkafka,
``group.protocol=consumer``) against ``tidelog serve``.

Members subscribe, consume and commit with the server's "uniform" and
"range" assignors; a second member joins and only the partitions that move
are revoked, with nothing read again after its commit; a member
subscribes by regex and gets topics created later; a member killed with
SIGKILL loses its partitions when its session ends on the server; a static
member comes back to its partitions; a restarted server keeps the group and
its committed offsets; and the AdminClient describes and lists
the group as a "consumer" group, which DescribeGroups, a classic group's
API, does not describe.

The server runs with a short heartbeat interval and session timeout, so
each of these takes a few seconds.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupType,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions
from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.configured_servers import server_fixtures
from tests.server.confluent_helpers import (
    committed,
    create_topic,
    poll_until,
    produce,
    start_member_child,
)
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.wire import Wire, build

TIMEOUT = 30.0
"""Seconds any one client call, or any awaited group change, may take."""
SESSION_MS = 1500

SERVER_CONFIG = f"""
[engine]
group_consumer_heartbeat_interval_ms = 250
group_consumer_min_heartbeat_interval_ms = 250
group_consumer_session_timeout_ms = {SESSION_MS}
group_consumer_min_session_timeout_ms = {SESSION_MS}
group_consumer_regex_batch_refresh_interval_ms = 500
"""


server, own_server = server_fixtures(SERVER_CONFIG, "kip848")


def consumer_conf(bootstrap: str, group: str, **conf: Any) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 10_000,
        "topic.metadata.refresh.interval.ms": 1000,
        **quiet_librdkafka(),
    } | conf


class Member:
    """A subscribed consumer, what it read, and what it was asked to revoke."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], **conf: Any) -> None:
        self.consumer = Consumer(consumer_conf(bootstrap, group, **conf))
        self.revoked: list[set[tuple[str, int]]] = []
        self.records: list[Message] = []
        self.consumer.subscribe(topics, on_revoke=self._on_revoke)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.revoked.append({(tp.topic, tp.partition) for tp in partitions})

    @property
    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def poll(self, timeout: float = 0.05) -> None:
        message = self.consumer.poll(timeout)
        if message is not None and message.error() is None:
            self.records.append(message)
            self.consumer.commit(message=message, asynchronous=False)

    def close(self) -> None:
        self.consumer.close()


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})


def describe(bootstrap: str, group: str) -> Any:
    client = admin(bootstrap)
    return client.describe_consumer_groups([group])[group].result(TIMEOUT)


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_members_split_the_partitions_and_commit(
    server: ServerProcess, topic: str, assignor: str
) -> None:
    bootstrap = server.bootstrap
    group = f"split-{assignor}-{topic}"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 4, 5)
    first = Member(bootstrap, group, [topic], **{"group.remote.assignor": assignor})
    second: Member | None = None
    try:
        poll_until([first], lambda: len(first.records) == 20, "the first member reads all")
        assert first.assignment == {0, 1, 2, 3}
        assert committed(bootstrap, group, topic, 4) == {0: 5, 1: 5, 2: 5, 3: 5}

        second = Member(bootstrap, group, [topic], **{"group.remote.assignor": assignor})
        members = [first, second]
        poll_until(
            members,
            lambda: len(first.assignment) == 2 and len(second.assignment) == 2,
            "the partitions split",
        )
        assert first.assignment | second.assignment == {0, 1, 2, 3}
        # Only what moves is revoked; the rest stays with its member.
        assert set().union(*first.revoked) == {(topic, p) for p in second.assignment}
        if assignor == "range":
            assert sorted(first.assignment | second.assignment) == [0, 1, 2, 3]
            assert {frozenset(first.assignment), frozenset(second.assignment)} == {
                frozenset({0, 1}),
                frozenset({2, 3}),
            }

        described = describe(bootstrap, group)
        assert described.type == ConsumerGroupType.CONSUMER
        assert str(described.state.name) == "STABLE"
        assert described.partition_assignor == assignor
        assert len(described.members) == 2

        produce(bootstrap, topic, 4, 2, first=5)
        poll_until(members, lambda: len(first.records) + len(second.records) == 28, "new records")
        assert len(second.records) == 4  # its partitions' new records, nothing read again
        for member in members:
            got = {(m.partition(), m.offset()) for m in member.records[-4:]}
            assert {p for p, _ in got} == member.assignment
            assert {o for _, o in got} == {5, 6}

        second.close()
        second = None
        poll_until([first], lambda: len(first.assignment) == 4, "the partitions return")
    finally:
        first.close()
        if second is not None:
            second.close()
    assert committed(bootstrap, group, topic, 4) == {0: 7, 1: 7, 2: 7, 3: 7}
    client = admin(bootstrap)
    listed = client.list_consumer_groups().result(TIMEOUT)
    mine = [g for g in listed.valid if g.group_id == group]
    assert [(g.type, g.state.name) for g in mine] == [(ConsumerGroupType.CONSUMER, "EMPTY")]


def test_a_regex_subscription_gets_topics_created_later(server: ServerProcess, topic: str) -> None:
    bootstrap = server.bootstrap
    group = f"regex-{topic}"
    create_topic(bootstrap, f"{topic}-a", 2)
    member = Member(bootstrap, group, [f"^{topic}-.*"])
    try:
        poll_until([member], lambda: len(member.consumer.assignment()) == 2, "the first topic")
        create_topic(bootstrap, f"{topic}-b", 1)
        client = admin(bootstrap)
        client.create_partitions([NewPartitions(f"{topic}-a", 3)])[f"{topic}-a"].result(TIMEOUT)
        poll_until(
            [member], lambda: len(member.consumer.assignment()) == 4, "the new topic and partition"
        )
        assert {(tp.topic, tp.partition) for tp in member.consumer.assignment()} == {
            (f"{topic}-a", 0),
            (f"{topic}-a", 1),
            (f"{topic}-a", 2),
            (f"{topic}-b", 0),
        }
    finally:
        member.close()


CRASHING_MEMBER = """
import sys
from confluent_kafka import Consumer
conf = dict(arg.split("=", 1) for arg in sys.argv[2:])
consumer = Consumer(conf)
consumer.subscribe([sys.argv[1]])
announced = False
while True:
    consumer.poll(0.1)
    if consumer.assignment() and not announced:
        print("assigned", sorted(tp.partition for tp in consumer.assignment()), flush=True)
        announced = True
"""


def test_a_killed_member_loses_its_partitions_when_its_session_ends(
    server: ServerProcess, topic: str
) -> None:
    bootstrap = server.bootstrap
    group = f"crash-{topic}"
    create_topic(bootstrap, topic, 4)
    survivor = Member(bootstrap, group, [topic])
    conf = consumer_conf(bootstrap, group)
    arguments = [f"{key}={value}" for key, value in conf.items() if key != "log_level"]
    child: subprocess.Popen[str] | None = None
    try:
        # The survivor holds every partition before the child exists: a child
        # joining in the survivor's first generation would leave it 2 of 4 from
        # the start, and "the survivor joins" would wait for 4 in vain.
        poll_until([survivor], lambda: len(survivor.assignment) == 4, "the survivor joins")
        child, assigned = start_member_child(CRASHING_MEMBER, topic, arguments)
        poll_until([survivor], lambda: not assigned.is_alive(), "the child is assigned partitions")
        poll_until([survivor], lambda: len(survivor.assignment) == 2, "the partitions split")
        killed = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(TIMEOUT)
        poll_until([survivor], lambda: len(survivor.assignment) == 4, "the session expires")
        # Not before the server's session timeout (less a heartbeat's slack).
        assert time.monotonic() - killed >= (SESSION_MS - 300) / 1000
    finally:
        if child is not None:
            child.kill()
            child.wait(TIMEOUT)
        survivor.close()


def test_a_static_member_comes_back_to_its_partitions(server: ServerProcess, topic: str) -> None:
    bootstrap = server.bootstrap
    group = f"static-{topic}"
    create_topic(bootstrap, topic, 4)
    first = Member(bootstrap, group, [topic], **{"group.instance.id": "first"})
    other = Member(bootstrap, group, [topic])
    try:
        poll_until(
            [first, other],
            lambda: len(first.assignment) == 2 and len(other.assignment) == 2,
            "the partitions split",
        )
        mine = first.assignment
        first.close()  # a static member leaves for now: nothing moves
        other.revoked.clear()
        first = Member(bootstrap, group, [topic], **{"group.instance.id": "first"})
        poll_until([first, other], lambda: first.assignment == mine, "it comes back")
        assert other.revoked == []
        assert len(other.assignment) == 2
    finally:
        first.close()
        other.close()


def test_a_restarted_server_keeps_the_group_and_its_offsets(
    own_server: ServerProcess, topic: str
) -> None:
    bootstrap = own_server.bootstrap
    group = f"restart-{topic}"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 5)
    # librdkafka's reconnect backoff grows to 10 s while the server is down;
    # capped, the member is back well within its 1.5 s session after the restart.
    member = Member(bootstrap, group, [topic], **{"reconnect.backoff.max.ms": 200})
    try:
        poll_until([member], lambda: len(member.records) == 10, "the records before")
        own_server.restart()
        assert committed(bootstrap, group, topic, 2) == {0: 5, 1: 5}
        produce(bootstrap, topic, 2, 3, first=5)
        poll_until([member], lambda: len(member.records) == 16, "the records after")
        assert sorted(m.offset() for m in member.records[10:]) == [5, 5, 6, 6, 7, 7]
        (described,) = describe(bootstrap, group).members
        assert {tp.partition for tp in described.assignment.topic_partitions} == {0, 1}
    finally:
        member.close()
    assert committed(bootstrap, group, topic, 2) == {0: 8, 1: 8}


def _ask(bootstrap: str, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(bootstrap) as wire:
        return wire.request(build(load_request_schema(key, version), **values))


def test_a_consumer_group_is_described_by_consumer_group_describe_not_describe_groups(
    server: ServerProcess, topic: str
) -> None:
    """As Kafka 4.0: DescribeGroups describes classic groups only (v6: a
    consumer group is GROUP_ID_NOT_FOUND, "not a classic group"; before:
    Dead, no error), ConsumerGroupDescribe answers the group whole."""
    bootstrap = server.bootstrap
    group = f"described-{topic}"
    create_topic(bootstrap, topic, 2)
    member = Member(bootstrap, group, [topic])
    try:
        poll_until([member], lambda: len(member.assignment) == 2, "the assignment")
        (v6,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 6, groups=[group]).groups
        assert (v6.error_code, v6.group_state, v6.protocol_type, v6.members) == (
            KafkaCode.GROUP_ID_NOT_FOUND,
            "Dead",
            "",
            (),
        )
        assert v6.error_message == f"Group {group} is not a classic group."
        (v5,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 5, groups=[group]).groups
        assert (v5.error_code, v5.group_state, v5.members) == (KafkaCode.NONE, "Dead", ())

        (whole,) = _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups
        assert (whole.error_code, whole.group_state) == (KafkaCode.NONE, "Stable")
        assert whole.group_epoch == whole.assignment_epoch >= 1
        (described,) = whole.members
        assert described.member_id == member.consumer.memberid()
        assert described.client_host == "/127.0.0.1"  # as Kafka: the peer's address
        assert described.member_epoch == whole.group_epoch
        assert described.subscribed_topic_names == (topic,)
        assert described.subscribed_topic_regex is None
        for assignment in (described.assignment, described.target_assignment):
            (partitions,) = assignment.topic_partitions
            assert (partitions.topic_name, sorted(partitions.partitions)) == (topic, [0, 1])

        by_client = describe(bootstrap, group)
        assert by_client.type == ConsumerGroupType.CONSUMER
        (client_member,) = by_client.members
        assert client_member.member_id == member.consumer.memberid()
        assert {tp.partition for tp in client_member.target_assignment.topic_partitions} == {0, 1}
        client = admin(bootstrap)  # kept: a client collected meanwhile fails its futures
        listed = client.list_consumer_groups().result(TIMEOUT).valid
        assert [(g.type, g.state.name) for g in listed if g.group_id == group] == [
            (ConsumerGroupType.CONSUMER, "STABLE")
        ]
    finally:
        member.close()
