"""Consumer groups with confluent-kafka (librdkafka) against ``tidelog serve``.

Members subscribe, split the partitions and commit; they come and go with
the eager ("range") and the incremental ("cooperative-sticky") protocol;
three members join and leave while a producer writes and nothing is lost
or delivered again after its commit; a member killed with SIGKILL loses
its partitions to the survivor when its session ends; a restarted server
keeps the committed offsets and the group carries on; a static member
(group.instance.id) restarts without moving anyone's partitions; and the
AdminClient lists, describes, alters and deletes groups and offsets. A few
requests no client here sends (batched FindCoordinator and OffsetFetch,
JoinGroup v0, a batched LeaveGroup) are sent over a bare connection.

The server runs with no initial rebalance delay and a small minimum
session timeout, so the clients can use sessions of a second or two.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition as KafkaPythonTopicPartition
from kafka.admin import KafkaAdminClient

from engine.protocol.apis import ApiKey, request_schema, response_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.confluent_helpers import (
    assert_nothing_again_after_its_commit,
    committed,
    create_topic,
    poll_until,
    produce,
    start_member_child,
    wait_until,
)
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.wire import ConnectionClosed, Wire, build, standalone_commit

TIMEOUT = 30.0
"""Seconds any one client call, or any awaited group change, may take."""
SESSION_MS = 1500

# -- clients ---------------------------------------------------------------------------------


def consumer_conf(
    bootstrap: str, group: str, strategy: str = "range", **conf: Any
) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 200,
        "max.poll.interval.ms": 10_000,
        "partition.assignment.strategy": strategy,
        "topic.metadata.refresh.interval.ms": 1000,
        **quiet_librdkafka(),
    } | conf


class Member:
    """A subscribed consumer and what its rebalance callbacks saw."""

    def __init__(self, bootstrap: str, group: str, topic: str, **conf: Any) -> None:
        self.consumer = Consumer(consumer_conf(bootstrap, group, **conf))
        self.revoked: list[set[int]] = []
        self.records: list[Message] = []
        self.consumer.subscribe([topic], on_revoke=self._on_revoke)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.revoked.append({tp.partition for tp in partitions})

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


# -- membership ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_members_split_the_partitions_and_commit(
    group_server: ServerProcess, topic: str, strategy: str
) -> None:
    bootstrap = group_server.bootstrap
    group = f"split-{strategy}-{topic}"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 4, 5)
    first = Member(bootstrap, group, topic, strategy=strategy)
    second: Member | None = None
    try:
        poll_until([first], lambda: len(first.records) == 20, "the first member reads all")
        assert first.assignment == {0, 1, 2, 3}
        assert committed(bootstrap, group, topic, 4) == {0: 5, 1: 5, 2: 5, 3: 5}

        first.revoked.clear()
        second = Member(bootstrap, group, topic, strategy=strategy)
        members = [first, second]
        poll_until(
            members,
            lambda: len(first.assignment) == 2 and len(second.assignment) == 2,
            "the partitions split",
        )
        assert first.assignment | second.assignment == {0, 1, 2, 3}
        if strategy == "cooperative-sticky":
            # Incremental: only what moves is revoked, the rest stays put.
            assert set().union(*first.revoked) == second.assignment
        else:
            assert first.revoked[0] == {0, 1, 2, 3}  # eager: everything, then reassigned

        produce(bootstrap, topic, 4, 2, first=5)
        poll_until(members, lambda: len(first.records) + len(second.records) == 28, "new records")
        assert len(second.records) == 4  # its partitions' new records, nothing committed again
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


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_members_come_and_go_under_load_without_loss_or_repeats(
    group_server: ServerProcess, topic: str, strategy: str
) -> None:
    """Members commit each record synchronously after processing it, and on
    revocation: every record is delivered, and none again once committed."""
    bootstrap = group_server.bootstrap
    group = f"load-{strategy}-{topic}"
    partitions = 6
    create_topic(bootstrap, topic, partitions)
    lock = threading.Lock()
    events: list[tuple[str, int, int]] = []  # ("deliver" | "commit", partition, offset)
    values: set[bytes] = set()
    delivered = [0, 0, 0]
    errors: list[BaseException] = []

    def member(index: int, stop: threading.Event) -> None:
        def commit_on_revoke(consumer: Consumer, revoked: list[TopicPartition]) -> None:
            try:
                for tp in consumer.commit(asynchronous=False) or []:
                    with lock:
                        events.append(("commit", tp.partition, tp.offset))
            except KafkaException:
                pass  # nothing new to commit, or the group moved on

        consumer = Consumer(consumer_conf(bootstrap, group, strategy))
        try:
            consumer.subscribe([topic], on_revoke=commit_on_revoke)
            while not stop.is_set():
                message = consumer.poll(0.05)
                if message is None or message.error() is not None:
                    continue
                with lock:
                    events.append(("deliver", message.partition(), message.offset()))
                    values.add(message.value())
                    delivered[index] += 1
                try:
                    consumer.commit(message=message, asynchronous=False)
                except KafkaException:
                    continue  # not committed: it may be delivered again
                with lock:
                    events.append(("commit", message.partition(), message.offset() + 1))
        except BaseException as error:
            errors.append(error)
        finally:
            consumer.close()

    def producer() -> None:
        """Writes through every change of the members, and a while after."""
        client = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **quiet_librdkafka()})
        bursts_after = 5
        while bursts_after > 0:
            if done_changing.is_set():
                bursts_after -= 1
            for _ in range(100):
                client.produce(topic, str(written[0]).encode(), partition=written[0] % partitions)
                written[0] += 1
            client.flush(TIMEOUT)
            time.sleep(0.1)
        assert client.flush(TIMEOUT) == 0

    def reading(index: int) -> Callable[[], bool]:
        seen = delivered[index]
        return lambda: delivered[index] > seen

    # Each change waits for the members to have read since the last one
    # (not for a fixed time): a rebalance, cooperative-sticky's two rounds
    # most of all, takes longer on a loaded machine, and a member that
    # leaves before it was assigned anything would have nothing to show.
    done_changing = threading.Event()
    written = [0]
    stops = [threading.Event() for _ in range(3)]
    threads = [threading.Thread(target=member, args=(i, stop)) for i, stop in enumerate(stops)]
    writer = threading.Thread(target=producer)
    writer.start()
    try:
        try:
            for index, thread in enumerate(threads):
                thread.start()
                wait_until(reading(index), f"member {index} reads after joining")
            for index in (0, 1):
                stops[index].set()  # leaves
                threads[index].join(TIMEOUT)
                wait_until(reading(2), f"the last member reads after member {index} left")
        finally:
            done_changing.set()
            writer.join(TIMEOUT)
        assert not writer.is_alive(), "the writer did not finish"
        total = written[0]
        wait_until(lambda: len(values) == total, "every record")
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(TIMEOUT)
    assert not errors, errors
    assert values == {str(i).encode() for i in range(total)}  # nothing lost
    assert all(delivered), delivered
    assert_nothing_again_after_its_commit(events)


CRASHING_MEMBER = """
import sys
from confluent_kafka import Consumer
conf = dict(arg.split("=", 1) for arg in sys.argv[2:])
conf["session.timeout.ms"] = int(conf["session.timeout.ms"])
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
    group_server: ServerProcess, topic: str
) -> None:
    bootstrap = group_server.bootstrap
    group = f"crash-{topic}"
    create_topic(bootstrap, topic, 4)
    survivor = Member(bootstrap, group, topic)
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
        child.send_signal(signal.SIGKILL)
        child.wait(TIMEOUT)
        poll_until([survivor], lambda: len(survivor.assignment) == 4, "the session expires")
    finally:
        if child is not None:
            child.kill()
            child.wait(TIMEOUT)
        survivor.close()


def test_a_restarted_server_keeps_offsets_and_the_group_carries_on(
    own_group_server: ServerProcess, topic: str
) -> None:
    server = own_group_server
    bootstrap = server.bootstrap
    group = f"restart-{topic}"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 5)
    member = Member(bootstrap, group, topic)
    try:
        poll_until([member], lambda: len(member.records) == 10, "the member reads")
        before = committed(bootstrap, group, topic, 2)
        assert before == {0: 5, 1: 5}

        server.restart()
        assert committed(bootstrap, group, topic, 2) == before
        produce(bootstrap, topic, 2, 3, first=5)
        poll_until([member], lambda: len(member.records) == 16, "the member reads on")
        read = [(m.partition(), m.offset()) for m in member.records]
        assert len(set(read)) == 16  # nothing again after its commit
        assert committed(bootstrap, group, topic, 2) == {0: 8, 1: 8}
        admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
        described = admin.describe_consumer_groups([group])[group].result(TIMEOUT)
        assert described.state == ConsumerGroupState.STABLE
        assert len(described.members) == 1
    finally:
        member.close()


def test_a_static_member_restarts_without_moving_the_others(
    group_server: ServerProcess, topic: str
) -> None:
    bootstrap = group_server.bootstrap
    group = f"static-{topic}"
    create_topic(bootstrap, topic, 4)
    static = Member(bootstrap, group, topic, **{"group.instance.id": "static-1"})
    other = Member(bootstrap, group, topic)
    try:
        poll_until(
            [static, other],
            lambda: len(static.assignment) == 2 and len(other.assignment) == 2,
            "the partitions split",
        )
        kept = static.assignment
        other.revoked.clear()
        static.close()  # a static member does not leave the group when it closes
        static = Member(bootstrap, group, topic, **{"group.instance.id": "static-1"})
        poll_until([static, other], lambda: static.assignment == kept, "the same partitions back")
        for _ in range(20):  # a while longer: still nobody rebalanced
            for member in (static, other):
                member.poll()
        assert other.revoked == []
        assert len(other.assignment) == 2
    finally:
        static.close()
        other.close()


# -- administration --------------------------------------------------------------------------


def test_the_admin_client_lists_describes_alters_and_deletes(
    group_server: ServerProcess, topic: str
) -> None:
    bootstrap = group_server.bootstrap
    group = f"admin-{topic}"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 3)
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    legacy = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    member = Member(bootstrap, group, topic, **{"client.id": "admin-test"})
    try:
        poll_until([member], lambda: len(member.records) == 6, "the member reads")
        listed = admin.list_consumer_groups().result(TIMEOUT)
        mine = [g for g in listed.valid if g.group_id == group]
        assert [(g.state, g.is_simple_consumer_group) for g in mine] == [
            (ConsumerGroupState.STABLE, False)
        ]
        stable = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(TIMEOUT)
        assert group in {g.group_id for g in stable.valid}
        described = admin.describe_consumer_groups([group])[group].result(TIMEOUT)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "range"
        [described_member] = described.members
        assert described_member.client_id == "admin-test"
        assert described_member.host == "/127.0.0.1"  # as Kafka: the peer's address
        assigned = {tp.partition for tp in described_member.assignment.topic_partitions}
        assert assigned == {0, 1}
        assert committed(bootstrap, group, topic, 2) == {0: 3, 1: 3}

        with pytest.raises(KafkaException) as refused:
            admin.delete_consumer_groups([group])[group].result(TIMEOUT)
        assert refused.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
        deleted = legacy.delete_group_offsets(group, [KafkaPythonTopicPartition(topic, 0)])
        assert [e.__name__ for e in deleted.values()] == ["GroupSubscribedToTopicError"]
    finally:
        member.close()

    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])
    altered = admin.alter_consumer_group_offsets([request])[group].result(TIMEOUT)
    assert [(tp.partition, tp.offset, tp.error) for tp in altered.topic_partitions] == [
        (0, 1, None)
    ]
    assert committed(bootstrap, group, topic, 2) == {0: 1, 1: 3}
    deleted = legacy.delete_group_offsets(group, [KafkaPythonTopicPartition(topic, 1)])
    assert [e.__name__ for e in deleted.values()] == ["NoError"]
    assert committed(bootstrap, group, topic, 2) == {0: 1, 1: -1001}  # OFFSET_INVALID: none

    admin.delete_consumer_groups([group])[group].result(TIMEOUT)
    listed = admin.list_consumer_groups().result(TIMEOUT)
    assert group not in {g.group_id for g in listed.valid}
    with pytest.raises(KafkaException) as missing:
        admin.delete_consumer_groups([group])[group].result(TIMEOUT)
    assert missing.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    legacy.close()


# -- the wire, where the clients here do not go -----------------------------------------------


def test_find_coordinator_answers_for_groups_and_transactions(
    group_server: ServerProcess,
) -> None:
    server = group_server
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        batch = wire.request(
            build(
                request_schema(ApiKey.FIND_COORDINATOR, 4), key_type=0, coordinator_keys=["a", "b"]
            )
        )
        assert [(c.key, c.error_code, c.port) for c in batch.coordinators] == [
            ("a", 0, server.port),
            ("b", 0, server.port),
        ]
        single = wire.request(
            build(request_schema(ApiKey.FIND_COORDINATOR, 3), key="t", key_type=1)
        )
        assert (single.error_code, single.host, single.port) == (0, "127.0.0.1", server.port)
        refused = wire.request(
            build(request_schema(ApiKey.FIND_COORDINATOR, 2), key="x", key_type=2)
        )
        assert refused.error_code == KafkaCode.INVALID_REQUEST


def test_offset_fetch_answers_a_batch_of_groups(group_server: ServerProcess, topic: str) -> None:
    server = group_server
    create_topic(server.bootstrap, topic, 2)
    partition = {"partition_index": 1, "committed_offset": 7, "committed_metadata": "m"}
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        commit = build(
            request_schema(ApiKey.OFFSET_COMMIT, 8),
            group_id=f"batch-{topic}",
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=[{"name": topic, "partitions": [partition]}],
        )
        [[answer]] = [t.partitions for t in wire.request(commit).topics]
        assert answer.error_code == 0
        wanted = [{"name": topic, "partition_indexes": [0, 1]}]
        fetch = build(
            request_schema(ApiKey.OFFSET_FETCH, 8),
            groups=[
                {"group_id": f"batch-{topic}", "topics": wanted},
                {"group_id": f"none-{topic}", "topics": None},
            ],
            require_stable=True,
        )
        first, second = wire.request(fetch).groups
    assert (first.error_code, second.error_code, second.topics) == (0, 0, ())
    [fetched] = first.topics
    assert [(p.partition_index, p.committed_offset, p.metadata) for p in fetched.partitions] == [
        (0, -1, ""),
        (1, 7, "m"),
    ]


def test_join_group_v0_and_a_batch_leave(group_server: ServerProcess, topic: str) -> None:
    server = group_server
    group = f"v0-{topic}"
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        join = build(
            request_schema(ApiKey.JOIN_GROUP, 0),
            group_id=group,
            session_timeout=timedelta(seconds=10),
            member_id="",
            protocol_type="consumer",
            protocols=[{"name": "range", "metadata": b"meta"}],
        )
        joined = wire.request(join)  # v0: no MEMBER_ID_REQUIRED round, no rebalance timeout
        assert (joined.error_code, joined.generation_id, joined.leader) == (
            0,
            1,
            joined.member_id,
        )
        assert [(m.member_id, m.metadata) for m in joined.members] == [(joined.member_id, b"meta")]
        leave = build(
            request_schema(ApiKey.LEAVE_GROUP, 5),
            group_id=group,
            members=[{"member_id": joined.member_id}, {"member_id": "stranger", "reason": "r"}],
        )
        left = wire.request(leave)
        assert left.error_code == 0
        assert [(m.member_id, m.error_code) for m in left.members] == [
            (joined.member_id, 0),
            ("stranger", KafkaCode.UNKNOWN_MEMBER_ID),
        ]
        described = wire.request(build(request_schema(ApiKey.DESCRIBE_GROUPS, 5), groups=[group]))
        assert [(g.group_state, g.members) for g in described.groups] == [("Empty", ())]


def test_a_join_waiting_for_a_rebalance_does_not_hold_the_shutdown(
    own_group_server: ServerProcess, topic: str
) -> None:
    """SIGTERM while a JoinGroup waits (up to its 5-minute rebalance timeout)
    for a member that never rejoins: the waiting request is dropped with its
    connection, as when a broker goes away, and nothing is left unanswered
    past the shutdown's drain."""
    server = own_group_server
    group = f"shutdown-{topic}"

    def join(wire: Wire, member_id: str = "") -> Any:
        request = build(
            request_schema(ApiKey.JOIN_GROUP, 3),
            group_id=group,
            session_timeout=timedelta(seconds=30),
            rebalance_timeout=timedelta(minutes=5),
            member_id=member_id,
            protocol_type="consumer",
            protocols=[{"name": "range", "metadata": b"meta"}],
        )
        return wire.send(request)

    with Wire(server.bootstrap, timeout=TIMEOUT) as first, Wire(server.bootstrap) as second:
        join(first)
        _, joined = first.receive(response_schema(ApiKey.JOIN_GROUP, 3))
        assert joined.error_code == 0
        join(second)  # waits for the first member, which never rejoins
        time.sleep(0.5)  # the join is in the coordinator's hands
        assert server.stop() == 0
        with pytest.raises(ConnectionClosed):
            second.receive(response_schema(ApiKey.JOIN_GROUP, 3))
    assert "unwritten at shutdown" not in server.log()


# -- durability ------------------------------------------------------------------------------


def test_every_acknowledged_commit_survives_a_kill(
    own_group_server: ServerProcess, topic: str
) -> None:
    """OffsetCommits acknowledged one after another while the server is
    killed with SIGKILL: after the restart the committed offset is the last
    one acknowledged, or the one in flight at the kill, never older."""
    server = own_group_server
    bootstrap = server.bootstrap
    group = f"kill-{topic}"
    create_topic(bootstrap, topic, 1)
    acknowledged = attempted = -1
    with Wire(bootstrap, timeout=TIMEOUT) as wire:
        for offset in range(1, 10_000):
            attempted = offset
            wire.send(standalone_commit(group, {(topic, 0): offset}))
            if offset == 200:
                server.kill()  # while this one is in flight
            try:
                _, answer = wire.receive(response_schema(ApiKey.OFFSET_COMMIT, 8))
            except (ConnectionClosed, OSError):
                break
            assert answer.topics[0].partitions[0].error_code == KafkaCode.NONE
            acknowledged = offset
    assert acknowledged >= 199
    server.start()
    assert committed(bootstrap, group, topic, 1)[0] in (acknowledged, attempted)
