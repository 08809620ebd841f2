"""Consumer groups with kafkajs against ``tidelog serve``, through the node
driver's group_consume (one child process per member, its events read as
they happen).

A member subscribes, reads every record once and commits, and the group's
next member resumes from the committed offsets; three members join and
leave one after another while a producer writes, each committing a record
after processing it (kafkajs' eachBatch with resolveOffset and
commitOffsetsIfNecessary) and its resolved offsets when a rebalance starts,
and nothing is lost or delivered again after its commit; a restarted
server keeps the committed offsets and the group carries on; and a kafkajs
member with the driver's "range" assignor leads a group with a
confluent-kafka (librdkafka) consumer, assigns both as Kafka's range
assignor does, and the two read every record once.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from tests.server.confluent_helpers import create_topic, produce, wait_until
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.test_kafkajs import DRIVER, kafkajs, unb64

TIMEOUT = 30.0
"""Seconds any one client call, or any awaited group change, may take."""
SESSION_MS = 6000
"""Members leave with LeaveGroup, so no test waits for a session to end."""


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets, as kafkajs' admin client fetches them
    (partitions without one are left out)."""
    [fetched] = kafkajs("fetch_offsets", bootstrap, groupId=group, topics=[topic])
    assert fetched["topic"] == topic
    return {p["partition"]: int(p["offset"]) for p in fetched["partitions"] if p["offset"] != "-1"}


class KafkajsMember:
    """One kafkajs group member: the driver's group_consume in a child
    process, which runs until a line arrives on its stdin. Its events
    (join, record, commit, crash, end) are collected as they arrive, in the
    order the member had them."""

    def __init__(self, bootstrap: str, group: str, topic: str, **args: Any) -> None:
        self.topic = topic
        arguments = {
            "brokers": bootstrap,
            "topic": topic,
            "groupId": group,
            "assigners": ["range"],
            "untilStdin": True,
            "sessionTimeout": SESSION_MS,
            "heartbeatInterval": 200,
            # kafkajs heartbeats between fetches: a short fetch wait lets it
            # notice a rebalance quickly.
            "maxWaitTimeInMs": 100,
            "timeoutMs": 300_000,
            **args,
        }
        self.process = subprocess.Popen(
            ["node", str(DRIVER), "group_consume", json.dumps(arguments)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            with self._lock:
                self._events.append(event)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self._stderr.append(line)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    @property
    def records(self) -> list[tuple[int, int, bytes]]:
        """(partition, offset, value) of each record delivered."""
        return [
            (e["partition"], int(e["offset"]), unb64(e["value"]) or b"")
            for e in self.of_kind("record")
        ]

    @property
    def assignment(self) -> set[int]:
        """The partitions of its last join."""
        joins = self.of_kind("join")
        return set(joins[-1]["assignment"].get(self.topic, [])) if joins else set()

    def stop(self) -> dict[str, Any]:
        """Asks it to stop (it leaves the group); returns its last event."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it may be exiting already
                self.process.stdin.write("stop\n")
                self.process.stdin.close()
        try:
            status = self.process.wait(TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(TIMEOUT)
        for reader in self._readers:
            reader.join(TIMEOUT)
        stderr = "".join(self._stderr)
        assert status == 0, f"the kafkajs member exited with {status}:\n{stderr[-4000:]}"
        # A crash kafkajs recovers from (restart true) is part of the story;
        # one it gives up on fails the member.
        assert all(e["restart"] for e in self.of_kind("crash")), self.of_kind("crash")
        end = self.events[-1]
        assert end["event"] == "end", end
        return end


def assert_nothing_again_after_its_commit(members: list[KafkajsMember]) -> None:
    """No record is delivered after an offset past it was committed, and a
    member delivers only partitions assigned to it.

    The members are separate processes, so their events have no common
    order; generations give one. A commit accepted in generation g happened
    before any member synced a later generation (the group refuses
    generation g's commits once the next exists), so a record delivered in
    a later generation comes after it; within one member, its own events
    are in order."""
    by_generation: dict[int, dict[int, int]] = {}
    for member in members:
        for event in member.of_kind("commit"):
            [topic] = event["topics"]
            for p in topic["partitions"]:
                partition, offset = int(p["partition"]), int(p["offset"])
                positions = by_generation.setdefault(event["generation"], {})
                positions[partition] = max(positions.get(partition, 0), offset)

    for member in members:
        own: dict[int, int] = {}
        assigned: set[int] = set()
        for event in member.events:
            if event["event"] == "join":
                assigned = set(event["assignment"].get(member.topic, []))
            elif event["event"] == "commit":
                for p in event["topics"][0]["partitions"]:
                    partition = int(p["partition"])
                    own[partition] = max(own.get(partition, 0), int(p["offset"]))
            elif event["event"] == "record":
                partition, offset = event["partition"], int(event["offset"])
                assert partition in assigned, (
                    f"partition {partition} delivered in generation {event['generation']} "
                    f"by a member assigned {sorted(assigned)}"
                )
                earlier = [
                    positions.get(partition, 0)
                    for generation, positions in by_generation.items()
                    if generation < event["generation"]
                ]
                position = max([own.get(partition, 0), *earlier])
                assert offset >= position, (
                    f"partition {partition}: offset {offset} delivered again in generation "
                    f"{event['generation']} after {position} was committed"
                )


def test_a_second_member_resumes_from_the_committed_offsets(
    group_server: ServerProcess, topic: str
) -> None:
    bootstrap = group_server.bootstrap
    group = f"resume-{topic}"
    create_topic(bootstrap, topic, 3)
    produce(bootstrap, topic, 3, 5)

    first = KafkajsMember(bootstrap, group, topic)
    try:
        wait_until(lambda: len(first.records) == 15, "the first member reads all")
    finally:
        first.stop()
    assert sorted(value for _, _, value in first.records) == sorted(
        f"{p}:{i}".encode() for p in range(3) for i in range(5)
    )
    assert committed(bootstrap, group, topic) == {0: 5, 1: 5, 2: 5}

    produce(bootstrap, topic, 3, 2, first=5)
    second = KafkajsMember(bootstrap, group, topic)
    try:
        wait_until(lambda: len(second.records) == 6, "the second member reads on")
        time.sleep(0.3)  # anything delivered again would come first
    finally:
        end = second.stop()
    assert end["records"] == 6
    assert sorted((p, o) for p, o, _ in second.records) == [
        (p, o) for p in range(3) for o in (5, 6)
    ]
    assert committed(bootstrap, group, topic) == {0: 7, 1: 7, 2: 7}


def test_members_come_and_go_under_load_without_loss_or_repeats(
    group_server: ServerProcess, topic: str
) -> None:
    """Three members join one after another and leave one after another
    while a producer writes: every record is delivered, and none again once
    committed."""
    bootstrap = group_server.bootstrap
    group = f"load-{topic}"
    partitions = 6
    create_topic(bootstrap, topic, partitions)
    changed = threading.Event()
    written: list[int] = []

    def write() -> None:
        """Writes through every change of the members, and a while after."""
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **quiet_librdkafka()})
        count, after = 0, 0
        while after < 5:
            for _ in range(20):
                producer.produce(topic, str(count).encode(), partition=count % partitions)
                count += 1
            assert producer.flush(TIMEOUT) == 0
            time.sleep(0.05)
            after += changed.is_set()
        written.append(count)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    members: list[KafkajsMember] = []
    try:
        for _ in range(3):
            members.append(KafkajsMember(bootstrap, group, topic))
            wait_until(lambda: bool(members[-1].of_kind("join")), "the member joins")
            time.sleep(0.5)
        for member in members[:2]:
            member.stop()  # leaves
            time.sleep(0.5)
        changed.set()
        writer.join(TIMEOUT)
        [total] = written

        def delivered() -> set[bytes]:
            return {value for member in members for _, _, value in member.records}

        wait_until(lambda: len(delivered()) == total, "every record")
    finally:
        changed.set()
        for member in members:
            member.stop()

    assert delivered() == {str(i).encode() for i in range(total)}  # nothing lost
    assert all(member.records for member in members)
    assert all(len(member.of_kind("join")) > 1 for member in members)  # each saw a rebalance
    assert_nothing_again_after_its_commit(members)


def test_a_restarted_server_keeps_offsets_and_the_group_carries_on(
    own_group_server: ServerProcess, topic: str
) -> None:
    server = own_group_server
    bootstrap = server.bootstrap
    group = f"restart-{topic}"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 5)
    # kafkajs restarts its consumer when its connection fails, and joins
    # again as a new member: the group waits for the old one's session.
    member = KafkajsMember(bootstrap, group, topic, sessionTimeout=2000)
    try:
        wait_until(lambda: len(member.records) == 10, "the member reads")
        wait_until(lambda: committed(bootstrap, group, topic) == {0: 5, 1: 5}, "the commits")

        server.restart()
        assert committed(bootstrap, group, topic) == {0: 5, 1: 5}
        produce(bootstrap, topic, 2, 3, first=5)
        wait_until(lambda: len(member.records) == 16, "the member reads on")
        time.sleep(0.3)  # anything delivered again would come by now
        [described] = kafkajs("describe_groups", bootstrap, groupIds=[group])["groups"]
        assert (described["state"], len(described["members"])) == ("Stable", 1)
    finally:
        member.stop()
    assert sorted((p, o) for p, o, _ in member.records) == [
        (p, o) for p in range(2) for o in range(8)
    ]
    assert committed(bootstrap, group, topic) == {0: 8, 1: 8}


def range_assignment(
    members: list[tuple[str, str | None]], partitions: int
) -> dict[str, list[int]]:
    """Kafka's range assignment of one topic to (member id, group instance
    id) pairs: static members first by instance id, then the others by
    member id; each takes a contiguous range, the first ``partitions %
    members`` one partition more."""
    ordered = sorted(members, key=lambda m: (0, m[1]) if m[1] is not None else (1, m[0]))
    per_member, extra = divmod(partitions, len(ordered))
    out: dict[str, list[int]] = {}
    start = 0
    for i, (member_id, _) in enumerate(ordered):
        length = per_member + (i < extra)
        out[member_id] = list(range(start, start + length))
        start += length
    return out


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_a_kafkajs_range_member_and_a_librdkafka_member_share_a_group(
    group_server: ServerProcess, topic: str, static: bool
) -> None:
    """The kafkajs member joins first and so leads: it computes the range
    assignment for itself and the librdkafka member, which reads its
    ConsumerProtocol assignment; together they read every record once.
    kafkajs' member id sorts first, so a static librdkafka member (with
    group.instance.id) takes the first range only as a static member."""
    bootstrap = group_server.bootstrap
    group = f"mixed-{topic}"
    partitions, per_partition = 5, 10
    create_topic(bootstrap, topic, partitions)
    js = KafkajsMember(bootstrap, group, topic, clientId="a-kafkajs")
    instance = f"static-{topic}" if static else None
    confluent = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 200,
            "max.poll.interval.ms": 10_000,
            "partition.assignment.strategy": "range",
            **({"group.instance.id": instance} if static else {}),
            **quiet_librdkafka(),
        }
    )
    confluent_records: list[tuple[int, int, bytes]] = []

    def poll_confluent() -> None:
        message = confluent.poll(0.05)
        if message is not None and message.error() is None:
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            confluent_records.append((partition, offset, message.value() or b""))
            confluent.commit(message=message, asynchronous=False)

    def confluent_assignment() -> set[int]:
        return {tp.partition for tp in confluent.assignment()}

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert time.monotonic() < deadline, f"{what}: not in {TIMEOUT} s"
            poll_confluent()

    try:
        wait_until(lambda: js.assignment == set(range(partitions)), "kafkajs joins alone")
        confluent.subscribe([topic])
        until(
            lambda: len(js.of_kind("join")) >= 2 and bool(confluent_assignment()),
            "the partitions split",
        )
        join = js.of_kind("join")[-1]
        assert (join["groupProtocol"], join["isLeader"]) == ("range", True)
        members = [(join["memberId"], None), (confluent.memberid(), instance)]
        expected = range_assignment(members, partitions)
        assert len(expected[join["memberId"]]) == (2 if static else 3)
        assert js.assignment == set(expected[join["memberId"]])
        assert confluent_assignment() == set(expected[confluent.memberid()])

        produce(bootstrap, topic, partitions, per_partition)
        total = partitions * per_partition
        until(lambda: len(js.records) + len(confluent_records) >= total, "every record")
        for _ in range(6):  # anything delivered again would come by now
            poll_confluent()
    finally:
        js.stop()
        confluent.close()
    assert {p for p, _, _ in js.records} == set(expected[join["memberId"]])
    values = [value for _, _, value in js.records + confluent_records]
    assert sorted(values) == sorted(
        f"{p}:{i}".encode() for p in range(partitions) for i in range(per_partition)
    )
    assert committed(bootstrap, group, topic) == dict.fromkeys(range(partitions), per_partition)
