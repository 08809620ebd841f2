"""Consumer groups with aiokafka against ``tidelog serve``.

A consumer subscribes, reads every record once and commits, and the group's
next consumer resumes from the committed offsets; three consumers join and
leave one after another while a producer writes, committing each record
after processing it and what they processed when partitions are revoked,
and nothing is lost or delivered again after its commit; a consumer killed
with SIGKILL (no LeaveGroup) loses its partitions to the survivor when its
session ends; a restarted server keeps the committed offsets and the group
carries on; and AIOKafkaAdminClient lists and describes groups and their
offsets, and deletes them.

Each test is a plain function that runs its coroutine with asyncio.run,
under an overall timeout, and every client call has its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import ConsumerRecord

from tests.server.confluent_helpers import assert_nothing_again_after_its_commit
from tests.server.conftest import ServerProcess

T = TypeVar("T")

TIMEOUT_MS = 15_000
TIMEOUT_S = TIMEOUT_MS / 1000
"""Seconds any one client call, or any awaited group change, may take."""
TEST_TIMEOUT_S = 120.0
SESSION_MS = 6000
"""Members leave with LeaveGroup; only the crash test waits for a session
to end, and it uses a shorter one."""
CRASH_SESSION_MS = 1500
NONE_ERROR = 0


def run(coroutine: Coroutine[Any, Any, T], timeout: float = TEST_TIMEOUT_S) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


def consumer_config(bootstrap: str, group: str, **config: Any) -> dict[str, Any]:
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": SESSION_MS,
        "heartbeat_interval_ms": 200,
        "max_poll_interval_ms": 10_000,
        "rebalance_timeout_ms": 10_000,
        "request_timeout_ms": TIMEOUT_MS,
        "retry_backoff_ms": 100,
        "metadata_max_age_ms": 1000,
        "partition_assignment_strategy": (RangePartitionAssignor,),
        **config,
    }


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await asyncio.wait_for(admin.start(), TIMEOUT_S)
    try:
        await asyncio.wait_for(admin.create_topics([NewTopic(topic, partitions, 1)]), TIMEOUT_S)
    finally:
        await asyncio.wait_for(admin.close(), TIMEOUT_S)


async def produce(
    bootstrap: str, topic: str, partitions: int, per_partition: int, first: int = 0
) -> None:
    """``per_partition`` records to each partition, valued "partition:i"."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await asyncio.wait_for(producer.start(), TIMEOUT_S)
    try:
        sent = [
            await producer.send(topic, f"{partition}:{i}".encode(), partition=partition)
            for i in range(first, first + per_partition)
            for partition in range(partitions)
        ]
        await asyncio.wait_for(asyncio.gather(*sent), TIMEOUT_S)
    finally:
        await asyncio.wait_for(producer.stop(), TIMEOUT_S)


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offsets by partition, as its admin client reads them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await asyncio.wait_for(admin.start(), TIMEOUT_S)
    try:
        offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), TIMEOUT_S)
    finally:
        await asyncio.wait_for(admin.close(), TIMEOUT_S)
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """The group's state and number of members, as DescribeGroups answers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await asyncio.wait_for(admin.start(), TIMEOUT_S)
    try:
        [response] = await asyncio.wait_for(admin.describe_consumer_groups([group]), TIMEOUT_S)
    finally:
        await asyncio.wait_for(admin.close(), TIMEOUT_S)
    [described] = response.groups
    return described[2], len(described[5])


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not condition():
        assert loop.time() < deadline, f"{what}: not in {TIMEOUT_S} s"
        await asyncio.sleep(0.05)


@dataclass
class Deliveries:
    """What the members of one group did, in the order they did it: each
    record delivered, each offset committed ("deliver" | "commit",
    partition, offset)."""

    events: list[tuple[str, int, int]] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)

    def deliver(self, record: ConsumerRecord[Any, Any]) -> None:
        self.events.append(("deliver", record.partition, record.offset))
        self.values.append(record.value)

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.events += [("commit", tp.partition, offset) for tp, offset in offsets.items()]

    def assert_nothing_again_after_its_commit(self) -> None:
        assert_nothing_again_after_its_commit(self.events)


class Member(ConsumerRebalanceListener):  # type: ignore[misc]
    """A subscribed consumer that processes records in a task: it notes each
    one and commits it synchronously before the next; when partitions are
    revoked it commits what it processed of them and has not committed.

    aiokafka runs the rebalance listener in its coordinator task, beside
    the task that processes records, so the two take turns under a lock: a
    rebalance waits for the record in hand to be committed (in the
    generation it was fetched in), and a batch fetched before a rebalance
    is dropped, since its partitions may have moved meanwhile."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        deliveries: Deliveries | None = None,
        **config: Any,
    ) -> None:
        self.consumer = AIOKafkaConsumer(**consumer_config(bootstrap, group, **config))
        self.consumer.subscribe([topic], listener=self)
        self.deliveries = deliveries if deliveries is not None else Deliveries()
        self.records: list[ConsumerRecord[Any, Any]] = []
        self.processed: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.revoked: list[set[int]] = []
        self._turn = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Member:
        await asyncio.wait_for(self.consumer.start(), TIMEOUT_S)
        self._task = asyncio.create_task(self._consume())
        return self

    @property
    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    async def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), TIMEOUT_S)
        except KafkaError:
            return False  # the group moved on: not committed, may come again
        self.committed.update(offsets)
        self.deliveries.commit(offsets)
        return True

    async def _consume(self) -> None:
        while not self._stopping:
            batches = await self.consumer.getmany(timeout_ms=100)
            # A batch belongs to the assignment it was returned under; a new
            # assignment starts again from the committed offsets.
            rebalances = len(self.revoked)
            for tp, records in batches.items():
                for record in records:
                    async with self._turn:
                        if self._stopping or len(self.revoked) != rebalances:
                            break
                        self.deliveries.deliver(record)
                        self.records.append(record)
                        self.processed[tp] = record.offset + 1
                        if not await self._commit({tp: record.offset + 1}):
                            break

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._turn:
            self.revoked.append({tp.partition for tp in revoked})
            pending = {
                tp: offset
                for tp, offset in self.processed.items()
                if tp in revoked and self.committed.get(tp) != offset
            }
            if pending:
                await self._commit(pending)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        pass

    async def stop(self) -> None:
        """Stops consuming and leaves the group; again does nothing."""
        if self._stopping:
            return
        self._stopping = True
        try:
            if self._task is not None:
                await asyncio.wait_for(self._task, TIMEOUT_S)
        finally:
            await asyncio.wait_for(self.consumer.stop(), TIMEOUT_S)


def test_a_second_consumer_resumes_from_the_committed_offsets(
    group_server: ServerProcess, topic: str
) -> None:
    async def scenario() -> None:
        bootstrap = group_server.bootstrap
        group = f"resume-{topic}"
        await create_topic(bootstrap, topic, 3)
        await produce(bootstrap, topic, 3, 5)

        first = await Member(bootstrap, group, topic).start()
        try:
            await wait_until(lambda: len(first.records) == 15, "the first consumer reads all")
        finally:
            await first.stop()
        assert sorted(r.value for r in first.records) == sorted(
            f"{p}:{i}".encode() for p in range(3) for i in range(5)
        )
        assert await committed(bootstrap, group) == {0: 5, 1: 5, 2: 5}

        await produce(bootstrap, topic, 3, 2, first=5)
        second = await Member(bootstrap, group, topic).start()
        try:
            await wait_until(lambda: len(second.records) == 6, "the second consumer reads on")
            await asyncio.sleep(0.3)  # anything delivered again would come first
        finally:
            await second.stop()
        assert sorted((r.partition, r.offset) for r in second.records) == [
            (p, o) for p in range(3) for o in (5, 6)
        ]
        assert await committed(bootstrap, group) == {0: 7, 1: 7, 2: 7}

    run(scenario())


def test_members_come_and_go_under_load_without_loss_or_repeats(
    group_server: ServerProcess, topic: str
) -> None:
    """Three members join one after another and leave one after another
    while a producer writes: every record is delivered, and none again once
    committed."""

    async def scenario() -> None:
        bootstrap = group_server.bootstrap
        group = f"load-{topic}"
        partitions = 6
        await create_topic(bootstrap, topic, partitions)
        deliveries = Deliveries()
        changed = asyncio.Event()

        async def write() -> int:
            """Writes through every change of the members, and a while after."""
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
            await asyncio.wait_for(producer.start(), TIMEOUT_S)
            written = 0

            async def burst() -> None:
                nonlocal written
                for _ in range(20):
                    await producer.send(
                        topic, str(written).encode(), partition=written % partitions
                    )
                    written += 1
                await asyncio.wait_for(producer.flush(), TIMEOUT_S)
                await asyncio.sleep(0.05)

            try:
                while not changed.is_set():
                    await burst()
                for _ in range(5):
                    await burst()
            finally:
                await asyncio.wait_for(producer.stop(), TIMEOUT_S)
            return written

        def reads_more(member: Member) -> Callable[[], bool]:
            seen = len(member.records)
            return lambda: len(member.records) > seen

        writer = asyncio.create_task(write())
        members: list[Member] = []
        try:
            # Each change waits for the members to have read since the last
            # one, not for a fixed time: a rebalance takes longer on a loaded
            # machine, and a member that leaves before it was assigned
            # anything would have nothing to show.
            for index in range(3):
                members.append(await Member(bootstrap, group, topic, deliveries).start())
                await wait_until(reads_more(members[index]), f"member {index} reads")
            for index, member in enumerate(members[:2]):
                await member.stop()  # leaves
                reading = reads_more(members[2])
                await wait_until(reading, f"the last member reads after member {index} left")
            changed.set()
            total = await asyncio.wait_for(writer, TIMEOUT_S)
            await wait_until(lambda: len(set(deliveries.values)) == total, "every record")
        finally:
            writer.cancel()
            for member in members:
                await member.stop()

        assert set(deliveries.values) == {str(i).encode() for i in range(total)}
        assert all(member.records for member in members)
        assert all(any(member.revoked) for member in members)  # each saw a rebalance
        deliveries.assert_nothing_again_after_its_commit()

    run(scenario())


CRASHING_MEMBER = """
import asyncio, json, sys
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

async def main():
    config = json.loads(sys.argv[1])
    config["partition_assignment_strategy"] = (RangePartitionAssignor,)
    consumer = AIOKafkaConsumer(sys.argv[2], **config)
    await consumer.start()
    reported = None
    while True:
        batches = await consumer.getmany(timeout_ms=100)
        for tp, records in batches.items():
            await consumer.commit({tp: records[-1].offset + 1})
        positions = {tp.partition: await consumer.position(tp) for tp in consumer.assignment()}
        if positions and positions != reported:
            print(json.dumps(positions), flush=True)
            reported = positions

asyncio.run(main())
"""
"""A member that reads and commits its partitions, and writes a line with
its positions ({partition: offset}) each time they change."""


def test_a_killed_member_loses_its_partitions_when_its_session_ends(
    group_server: ServerProcess, topic: str
) -> None:
    """A member that dies without LeaveGroup keeps its partitions until its
    session ends; then the survivor takes them over from the offsets the
    dead member committed."""

    async def scenario() -> None:
        bootstrap = group_server.bootstrap
        group = f"crash-{topic}"
        await create_topic(bootstrap, topic, 4)
        await produce(bootstrap, topic, 4, 3)
        session = CRASH_SESSION_MS
        survivor = await Member(bootstrap, group, topic, session_timeout_ms=session).start()
        config = consumer_config(bootstrap, group, session_timeout_ms=session)
        del config["partition_assignment_strategy"]  # not JSON; the child sets it
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CRASHING_MEMBER,
            json.dumps(config),
            topic,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert child.stdout is not None
            reader = child.stdout

            async def child_positions() -> dict[int, int]:
                line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
                assert line, "the child member exited"
                return {int(p): o for p, o in json.loads(line).items()}

            await wait_until(lambda: len(survivor.records) == 12, "the survivor reads all")
            positions = await child_positions()
            theirs = set(positions)
            assert len(theirs) == 2
            assert positions == dict.fromkeys(theirs, 3)  # from the survivor's commits
            await wait_until(lambda: survivor.assignment == {0, 1, 2, 3} - theirs, "the split")

            await produce(bootstrap, topic, 4, 2, first=3)
            while positions != dict.fromkeys(theirs, 5):
                positions = await child_positions()
            await wait_until(lambda: len(survivor.records) == 16, "the survivor reads its own")

            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), TIMEOUT_S)
            await produce(bootstrap, topic, 4, 2, first=5)
            await wait_until(lambda: len(survivor.assignment) == 4, "the session ends")
            await wait_until(lambda: len(survivor.records) == 24, "the dead member's records")
            await asyncio.sleep(0.3)  # anything delivered again would come by now
        finally:
            if child.returncode is None:
                child.kill()
                await asyncio.wait_for(child.wait(), TIMEOUT_S)
            await survivor.stop()
        later = survivor.records[16:]
        taken_over = [(r.partition, r.offset) for r in later if r.partition in theirs]
        # From the killed member's last commit: none of what it read again.
        assert sorted(taken_over) == [(p, o) for p in sorted(theirs) for o in (5, 6)]
        assert len(survivor.records) == 24
        assert await committed(bootstrap, group) == dict.fromkeys(range(4), 7)

    run(scenario())


def test_a_restarted_server_keeps_offsets_and_the_group_carries_on(
    own_group_server: ServerProcess, topic: str
) -> None:
    server = own_group_server

    async def scenario() -> None:
        bootstrap = server.bootstrap
        group = f"restart-{topic}"
        await create_topic(bootstrap, topic, 2)
        await produce(bootstrap, topic, 2, 5)
        member = await Member(bootstrap, group, topic).start()
        try:
            await wait_until(lambda: len(member.records) == 10, "the member reads")
            before = await committed(bootstrap, group)
            assert before == {0: 5, 1: 5}

            await asyncio.to_thread(server.restart)
            assert await committed(bootstrap, group) == before
            await produce(bootstrap, topic, 2, 3, first=5)
            await wait_until(lambda: len(member.records) == 16, "the member reads on")
            await asyncio.sleep(0.3)  # anything delivered again would come by now
            assert await group_state(bootstrap, group) == ("Stable", 1)
        finally:
            await member.stop()
        read = [(r.partition, r.offset) for r in member.records]
        assert sorted(read) == [(p, o) for p in range(2) for o in range(8)]
        assert await committed(bootstrap, group) == {0: 8, 1: 8}

    run(scenario())


def test_the_admin_client_lists_describes_and_deletes_groups(
    group_server: ServerProcess, topic: str
) -> None:
    """AIOKafkaAdminClient's group calls; it has no call to delete a group,
    so DeleteGroups goes through aiokafka's own client and request class."""

    async def scenario() -> None:
        bootstrap = group_server.bootstrap
        group = f"admin-{topic}"
        await create_topic(bootstrap, topic, 2)
        await produce(bootstrap, topic, 2, 3)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
        await asyncio.wait_for(admin.start(), TIMEOUT_S)
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
        await asyncio.wait_for(client.bootstrap(), TIMEOUT_S)

        async def delete_group() -> int:
            coordinator = await asyncio.wait_for(admin.find_coordinator(group), TIMEOUT_S)
            response = await asyncio.wait_for(
                client.send(coordinator, DeleteGroupsRequest([group])), TIMEOUT_S
            )
            [(deleted, code)] = response.results
            assert deleted == group
            return int(code)

        member = await Member(bootstrap, group, topic, client_id="admin-test").start()
        try:
            await wait_until(lambda: len(member.records) == 6, "the member reads")
            listed = await asyncio.wait_for(admin.list_consumer_groups(), TIMEOUT_S)
            assert (group, "consumer") in {(g[0], g[1]) for g in listed}
            [response] = await asyncio.wait_for(admin.describe_consumer_groups([group]), TIMEOUT_S)
            [described] = response.groups
            error_code, group_id, state, protocol_type, protocol, members = described[:6]
            assert (error_code, group_id, state, protocol_type, protocol) == (
                NONE_ERROR,
                group,
                "Stable",
                "consumer",
                "range",
            )
            [(member_id, client_id, _host, _metadata, assignment)] = members
            assert client_id == "admin-test"
            assert member_id.startswith("admin-test-")
            assigned = ConsumerProtocolMemberAssignment.decode(assignment)
            assert [tuple(a) for a in assigned.assignment] == [(topic, [0, 1])]
            offsets = await asyncio.wait_for(admin.list_consumer_group_offsets(group), TIMEOUT_S)
            assert {tp: meta.offset for tp, meta in offsets.items()} == {
                TopicPartition(topic, 0): 3,
                TopicPartition(topic, 1): 3,
            }
            assert await delete_group() == 68  # NON_EMPTY_GROUP: it has a member
        finally:
            await member.stop()

        try:
            [response] = await asyncio.wait_for(admin.describe_consumer_groups([group]), TIMEOUT_S)
            assert response.groups[0][2] == "Empty"
            assert await delete_group() == NONE_ERROR
            listed = await asyncio.wait_for(admin.list_consumer_groups(), TIMEOUT_S)
            assert group not in {g[0] for g in listed}
            assert await committed(bootstrap, group) == {}
            assert await delete_group() == 69  # GROUP_ID_NOT_FOUND
        finally:
            await asyncio.wait_for(client.close(), TIMEOUT_S)
            await asyncio.wait_for(admin.close(), TIMEOUT_S)

    run(scenario())
