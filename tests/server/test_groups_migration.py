"""Online migration of a classic group to a KIP-848 consumer group, as
Kafka 4.0 does it (group.consumer.migration.policy): a consumer-protocol
member joining a classic group with members takes it over; the classic
members stay, and their JoinGroup, SyncGroup and Heartbeat are served
through the consumer group's reconciliation.

Raw requests over the wire check the classic member's answers step by
step, and that a restart serves what was served before it; confluent-kafka
consumers check a rolling upgrade of a consuming application.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException
from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from engine.protocol.kafka_code import KafkaCode
from engine.protocol.topic_partition import TopicPartition
from tests.server.configured_servers import server_fixtures, start_configured_server
from tests.server.confluent_helpers import committed, create_topic, poll_until, produce
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.wire import Wire, build

SERVER_CONFIG = """
[engine]
group_initial_rebalance_delay_ms = 0
group_consumer_heartbeat_interval_ms = 250
group_consumer_min_heartbeat_interval_ms = 250
"""

DISABLED_CONFIG = """
[engine]
group_initial_rebalance_delay_ms = 0
group_consumer_migration_policy = "downgrade"
"""

server, own_server = server_fixtures(SERVER_CONFIG, "migration")


@pytest.fixture(name="disabled_server")
def _disabled_server(tmp_path: Path) -> Iterator[ServerProcess]:
    started = start_configured_server(tmp_path, DISABLED_CONFIG)
    yield started
    started.end_at_teardown(graceful=False)


TIMEOUT = timedelta(seconds=30)
"""The classic members' session and rebalance timeouts, and the consumer member's."""


def _ask(bootstrap: str, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(bootstrap) as wire:
        return wire.request(build(load_request_schema(key, version), **values))


def _metadata(topic: str, owned: Collection[int] = ()) -> bytes:
    owned_partitions = [TopicPartition(topic, p) for p in sorted(owned)]
    return encode_subscription(Subscription([topic], None, owned_partitions), 1)


def _join(bootstrap: str, group: str, member_id: str, metadata: bytes) -> Any:
    return _ask(
        bootstrap,
        ApiKey.JOIN_GROUP,
        5,
        group_id=group,
        session_timeout=TIMEOUT,
        rebalance_timeout=TIMEOUT,
        member_id=member_id,
        protocol_type="consumer",
        protocols=[{"name": "cooperative-sticky", "metadata": metadata}],
    )


def _sync(
    bootstrap: str, group: str, member_id: str, generation: int, assignments: Any = ()
) -> Any:
    return _ask(
        bootstrap,
        ApiKey.SYNC_GROUP,
        5,
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        protocol_type="consumer",
        protocol_name="cooperative-sticky",
        assignments=list(assignments),
    )


def _heartbeat(bootstrap: str, group: str, member_id: str, generation: int) -> KafkaCode:
    answer = _ask(
        bootstrap,
        ApiKey.HEARTBEAT,
        4,
        group_id=group,
        generation_id=generation,
        member_id=member_id,
    )
    return KafkaCode(answer.error_code)


def _consumer_heartbeat(bootstrap: str, group: str, member_id: str, epoch: int, **more: Any) -> Any:
    return _ask(
        bootstrap,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        1,
        group_id=group,
        member_id=member_id,
        member_epoch=epoch,
        rebalance_timeout=TIMEOUT,
        **more,
    )


def _partitions(assignment: bytes) -> set[int]:
    return {tp.partition for tp in decode_assignment(assignment).partitions}


def _classic_group_of_one(bootstrap: str, group: str, topic: str) -> tuple[str, int]:
    """A classic group whose one member holds all 4 partitions: its id and generation."""
    required = _join(bootstrap, group, "", _metadata(topic))
    assert required.error_code == KafkaCode.MEMBER_ID_REQUIRED
    joined = _join(bootstrap, group, required.member_id, _metadata(topic))
    assert joined.error_code == KafkaCode.NONE
    assert joined.leader == joined.member_id
    everything = encode_assignment(Assignment([TopicPartition(topic, p) for p in range(4)]))
    synced = _sync(
        bootstrap,
        group,
        joined.member_id,
        joined.generation_id,
        [{"member_id": joined.member_id, "assignment": everything}],
    )
    assert synced.error_code == KafkaCode.NONE
    assert _partitions(synced.assignment) == {0, 1, 2, 3}
    return joined.member_id, joined.generation_id


def test_a_classic_member_rejoins_revokes_and_syncs_inside_the_consumer_group(
    own_server: ServerProcess, topic: str
) -> None:
    bootstrap = own_server.bootstrap
    group = f"upgrade-{topic}"
    create_topic(bootstrap, topic, 4)
    classic, generation = _classic_group_of_one(bootstrap, group, topic)

    # A consumer-protocol member joins: the group becomes a consumer group
    # whose epoch moves past the classic generation.
    joined = _consumer_heartbeat(
        bootstrap, group, "new-member", 0, subscribed_topic_names=[topic], topic_partitions=[]
    )
    assert joined.error_code == KafkaCode.NONE, joined.error_message
    assert joined.member_epoch == generation + 1
    assert joined.assignment is not None
    assert joined.assignment.topic_partitions == ()  # its partitions are still the classic member's

    (described,) = _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups
    assert described.error_code == KafkaCode.NONE
    assert described.group_epoch == generation + 1
    types = {m.member_id: m.member_type for m in described.members}
    assert types == {classic: 0, "new-member": 1}  # classic, consumer
    (v6,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 6, groups=[group]).groups
    assert v6.error_code == KafkaCode.GROUP_ID_NOT_FOUND  # no longer a classic group

    # The classic member is sent to join again.
    assert _heartbeat(bootstrap, group, classic, generation) == KafkaCode.REBALANCE_IN_PROGRESS
    # It joins owning everything: it must give up what moves, in its generation.
    rejoined = _join(bootstrap, group, classic, _metadata(topic, {0, 1, 2, 3}))
    assert rejoined.error_code == KafkaCode.NONE
    assert (rejoined.generation_id, rejoined.leader, rejoined.members) == (generation, "", ())
    assert rejoined.protocol_name == "cooperative-sticky"
    kept = _sync(bootstrap, group, classic, generation)
    assert kept.error_code == KafkaCode.NONE
    kept_partitions = _partitions(kept.assignment)
    assert len(kept_partitions) == 2
    assert _heartbeat(bootstrap, group, classic, generation) == KafkaCode.REBALANCE_IN_PROGRESS
    assert _heartbeat(bootstrap, group, classic, generation + 1) == KafkaCode.ILLEGAL_GENERATION

    # Having let the others go, it joins again and reaches the group epoch.
    again = _join(bootstrap, group, classic, _metadata(topic, kept_partitions))
    assert again.error_code == KafkaCode.NONE
    assert again.generation_id == generation + 1
    stable = _sync(bootstrap, group, classic, generation + 1)
    assert _partitions(stable.assignment) == kept_partitions
    assert _heartbeat(bootstrap, group, classic, generation + 1) == KafkaCode.NONE

    # The freed partitions go to the consumer-protocol member.
    freed = _consumer_heartbeat(bootstrap, group, "new-member", generation + 1)
    assert freed.error_code == KafkaCode.NONE
    (partitions,) = freed.assignment.topic_partitions
    assert set(partitions.partitions) == {0, 1, 2, 3} - kept_partitions

    # A restart serves the same group: the classic member heartbeats in its
    # generation and syncs the same partitions.
    own_server.restart()
    assert _heartbeat(bootstrap, group, classic, generation + 1) == KafkaCode.NONE
    after = _sync(bootstrap, group, classic, generation + 1)
    assert _partitions(after.assignment) == kept_partitions
    (described,) = _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups
    assert described.group_epoch == generation + 1
    assert sorted(m.member_id for m in described.members) == sorted([classic, "new-member"])

    # It leaves: the consumer-protocol member gets everything.
    left = _ask(
        bootstrap,
        ApiKey.LEAVE_GROUP,
        3,
        group_id=group,
        members=[{"member_id": classic}],
    )
    assert left.error_code == KafkaCode.NONE
    assert left.members[0].error_code == KafkaCode.NONE
    alone = _consumer_heartbeat(bootstrap, group, "new-member", generation + 1)
    assert alone.member_epoch == generation + 2
    (partitions,) = alone.assignment.topic_partitions
    assert set(partitions.partitions) == {0, 1, 2, 3}


def _catch_up(bootstrap: str, group: str, topic: str, classic: str, generation: int) -> set[int]:
    """The classic member of a group just taken over joins, gives up what
    moves and joins again to the group epoch; the partitions it keeps."""
    assert _heartbeat(bootstrap, group, classic, generation) == KafkaCode.REBALANCE_IN_PROGRESS
    assert _join(bootstrap, group, classic, _metadata(topic, {0, 1, 2, 3})).error_code == 0
    kept = _partitions(_sync(bootstrap, group, classic, generation).assignment)
    assert _join(bootstrap, group, classic, _metadata(topic, kept)).generation_id == generation + 1
    assert _partitions(_sync(bootstrap, group, classic, generation + 1).assignment) == kept
    return kept


def test_the_last_consumer_member_leaving_hands_the_group_back_to_a_classic_group(
    own_server: ServerProcess, topic: str
) -> None:
    bootstrap = own_server.bootstrap
    group = f"downgrade-{topic}"
    create_topic(bootstrap, topic, 4)
    classic, generation = _classic_group_of_one(bootstrap, group, topic)
    joined = _consumer_heartbeat(
        bootstrap, group, "new-member", 0, subscribed_topic_names=[topic], topic_partitions=[]
    )
    assert joined.error_code == KafkaCode.NONE
    kept = _catch_up(bootstrap, group, topic, classic, generation)
    freed = _consumer_heartbeat(bootstrap, group, "new-member", generation + 1)
    assert freed.assignment.topic_partitions

    # The consumer-protocol member leaves: a classic group of the classic
    # member takes the group's place, in a generation of the group epoch,
    # and rebalances.
    left = _consumer_heartbeat(bootstrap, group, "new-member", -1)
    assert left.error_code == KafkaCode.NONE
    (v6,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 6, groups=[group]).groups
    assert (v6.error_code, v6.group_state, v6.protocol_type) == (
        KafkaCode.NONE,
        "PreparingRebalance",
        "consumer",
    )
    assert [m.member_id for m in v6.members] == [classic]
    (gone,) = _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups
    assert gone.error_code == KafkaCode.GROUP_ID_NOT_FOUND
    assert _heartbeat(bootstrap, group, classic, generation + 1) == KafkaCode.REBALANCE_IN_PROGRESS

    # What was stored is the classic group, Stable in that generation with
    # the member's target assignment (a restart does not replay the
    # rebalance, which is not stored, as in Kafka).
    own_server.restart()
    (v6,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 6, groups=[group]).groups
    assert (v6.group_state, [m.member_id for m in v6.members]) == ("Stable", [classic])
    assert _partitions(v6.members[0].member_assignment) == kept
    assert _heartbeat(bootstrap, group, classic, generation + 1) == KafkaCode.NONE

    # The classic protocol from here: the member is the leader and assigns.
    rejoined = _join(bootstrap, group, classic, _metadata(topic, kept))
    assert rejoined.error_code == KafkaCode.NONE
    assert (rejoined.leader, rejoined.generation_id) == (classic, generation + 2)
    everything = encode_assignment(Assignment([TopicPartition(topic, p) for p in range(4)]))
    synced = _sync(
        bootstrap,
        group,
        classic,
        rejoined.generation_id,
        [{"member_id": classic, "assignment": everything}],
    )
    assert _partitions(synced.assignment) == {0, 1, 2, 3}


def test_a_new_classic_member_joins_a_consumer_group(server: ServerProcess, topic: str) -> None:
    bootstrap = server.bootstrap
    group = f"classic-joins-{topic}"
    create_topic(bootstrap, topic, 2)
    first = _consumer_heartbeat(
        bootstrap, group, "first", 0, subscribed_topic_names=[topic], topic_partitions=[]
    )
    assert first.member_epoch == 1
    required = _join(bootstrap, group, "", _metadata(topic))
    assert required.error_code == KafkaCode.MEMBER_ID_REQUIRED
    assert required.member_id
    joined = _join(bootstrap, group, required.member_id, _metadata(topic))
    assert joined.error_code == KafkaCode.NONE
    assert joined.generation_id == 2
    synced = _sync(bootstrap, group, joined.member_id, 2)
    assert synced.error_code == KafkaCode.NONE
    # Its target is held by the first member until that one lets it go.
    assert _partitions(synced.assignment) == set()
    assert _heartbeat(bootstrap, group, joined.member_id, 2) == KafkaCode.NONE
    beat = _consumer_heartbeat(
        bootstrap,
        group,
        "first",
        1,
        topic_partitions=[
            {
                "topic_id": first.assignment.topic_partitions[0].topic_id,
                "partitions": list(first.assignment.topic_partitions[0].partitions),
            }
        ],
    )
    assert beat.error_code == KafkaCode.NONE
    (kept,) = beat.assignment.topic_partitions
    moved = _consumer_heartbeat(
        bootstrap,
        group,
        "first",
        1,
        topic_partitions=[{"topic_id": kept.topic_id, "partitions": list(kept.partitions)}],
    )
    assert moved.member_epoch == 2
    # Its partition is free now: the classic member joins again to get it.
    assert _heartbeat(bootstrap, group, joined.member_id, 2) == KafkaCode.REBALANCE_IN_PROGRESS
    again = _join(bootstrap, group, joined.member_id, _metadata(topic))
    assert again.generation_id == 2
    got = _sync(bootstrap, group, joined.member_id, 2)
    assert _partitions(got.assignment) == {0, 1} - set(kept.partitions)
    assert _heartbeat(bootstrap, group, joined.member_id, 2) == KafkaCode.NONE

    # Protocols the classic members do not all support are refused.
    other = _ask(
        bootstrap,
        ApiKey.JOIN_GROUP,
        5,
        group_id=group,
        session_timeout=TIMEOUT,
        rebalance_timeout=TIMEOUT,
        member_id="",
        protocol_type="consumer",
        protocols=[{"name": "range", "metadata": _metadata(topic)}],
    )
    assert other.error_code == KafkaCode.INCONSISTENT_GROUP_PROTOCOL


def test_a_policy_without_upgrade_refuses_to_take_a_classic_group_over(
    disabled_server: ServerProcess, topic: str
) -> None:
    bootstrap = disabled_server.bootstrap
    group = f"refused-{topic}"
    create_topic(bootstrap, topic, 4)
    classic, generation = _classic_group_of_one(bootstrap, group, topic)
    refused = _consumer_heartbeat(
        bootstrap, group, "new-member", 0, subscribed_topic_names=[topic], topic_partitions=[]
    )
    assert refused.error_code == KafkaCode.GROUP_ID_NOT_FOUND
    assert "online upgrade is disabled" in refused.error_message
    assert _heartbeat(bootstrap, group, classic, generation) == KafkaCode.NONE
    (v6,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 6, groups=[group]).groups
    assert (v6.error_code, v6.group_state) == (KafkaCode.NONE, "Stable")


# -- a rolling upgrade of a consuming application ------------------------------------------


class Consumed:
    """A confluent-kafka consumer that commits each record it reads, and
    what it read, what it could not commit, and the offsets it did."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        protocol: str,
        more: dict[str, Any] | None = None,
    ) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": protocol,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 1000,
            **quiet_librdkafka(),
        }
        if protocol == "classic":
            conf |= {"session.timeout.ms": 6000, "heartbeat.interval.ms": 250}
        self.consumer = Consumer(conf | (more or {}))
        self.read: list[tuple[int, int]] = []
        self.uncommitted: set[tuple[int, int]] = set()
        self.commits: dict[int, int] = {}
        """The highest offset each partition's commits were answered NONE for."""
        self.consumer.subscribe([topic])

    def poll(self) -> None:
        message = self.consumer.poll(0.05)
        if message is None or message.error() is not None:
            return
        partition, offset = record = (message.partition(), message.offset())
        self.read.append(record)
        try:
            answer = self.consumer.commit(message=message, asynchronous=False)
        except KafkaException:
            self.uncommitted.add(record)  # a rebalance may hand it out again
            return
        if any(tp.error is not None for tp in answer or ()):
            self.uncommitted.add(record)  # refused for its partition alone
            return
        self.commits[partition] = max(self.commits.get(partition, 0), offset + 1)

    @property
    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def close(self) -> None:
        self.consumer.close()


def _all_read(members: list[Consumed], done: list[Consumed], expected: int) -> bool:
    return len({r for m in members + done for r in m.read}) == expected


def _roll(
    bootstrap: str,
    group: str,
    topic: str,
    running: list[Consumed],
    done: list[Consumed],
    protocol: str,
    produced: int,
) -> int:
    """Restarts each running member, one at a time, with ``protocol``,
    producing 5 records a partition before each step and reading them all;
    returns how many records a partition has."""
    for _ in range(len(running)):
        leaving = running.pop(0)
        leaving.close()
        done.append(leaving)
        running.append(Consumed(bootstrap, group, topic, protocol))
        produce(bootstrap, topic, 4, 5, first=produced)
        produced += 5
        poll_until(
            running,
            lambda produced=produced: (  # type: ignore[misc]
                _all_read(running, done, 4 * produced)
                and all(len(m.assignment) == 2 for m in running)
            ),
            f"{protocol}: everything read, the partitions split",
        )
    return produced


def _check_reads(bootstrap: str, group: str, topic: str, everyone: list[Consumed], n: int) -> None:
    """Every record read; twice only where its commit was refused; every
    commit answered NONE kept through every conversion. (A member whose
    last commit is refused in a rebalance, a stale epoch, keeps reading on
    from its position: the group's offset stays below its last record
    until one commits past it, which the protocol allows.)"""
    reads = [r for m in everyone for r in m.read]
    assert set(reads) == {(p, o) for p in range(4) for o in range(n)}
    twice = {r for r in reads if reads.count(r) > 1}
    assert twice <= set().union(*(m.uncommitted for m in everyone))
    answered = {p: max(m.commits.get(p, 0) for m in everyone) for p in range(4)}
    assert committed(bootstrap, group, topic, 4) == answered
    # Nearly every run commits each record; a refusal is the exception.
    refused_last = {p for p in range(4) if answered[p] < n}
    assert refused_last <= {p for p, o in set().union(*(m.uncommitted for m in everyone))}


def test_a_rolling_upgrade_and_downgrade_lose_nothing(server: ServerProcess, topic: str) -> None:
    bootstrap = server.bootstrap
    group = f"rolling-{topic}"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 4, 5)
    running = [Consumed(bootstrap, group, topic, "classic") for _ in range(2)]
    done: list[Consumed] = []

    def describe() -> Any:
        return _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups[0]

    def describe_classic() -> Any:
        return _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 6, groups=[group]).groups[0]

    try:
        poll_until(
            running,
            lambda: _all_read(running, done, 20) and all(m.assignment for m in running),
            "the classic group consumes",
        )
        produced = _roll(bootstrap, group, topic, running, done, "consumer", 5)
        poll_until(running, lambda: describe().group_state == "Stable", "a stable consumer group")
        described = describe()
        assert sorted(m.member_type for m in described.members) == [1, 1]
        assert {m.member_epoch for m in described.members} == {described.group_epoch}
        _check_reads(bootstrap, group, topic, running + done, produced)

        produced = _roll(bootstrap, group, topic, running, done, "classic", produced)
        poll_until(
            running, lambda: describe_classic().group_state == "Stable", "a stable classic group"
        )
        classic = describe_classic()
        assert (classic.error_code, classic.protocol_type) == (KafkaCode.NONE, "consumer")
        assert sorted(m.member_id for m in classic.members) == sorted(
            m.consumer.memberid() for m in running
        )
        assert describe().error_code == KafkaCode.GROUP_ID_NOT_FOUND
    finally:
        for member in running:
            member.close()
    _check_reads(bootstrap, group, topic, running + done, produced)


def _consumer_members(bootstrap: str, group: str) -> dict[str, int]:
    """The consumer group's members by id: their ConsumerGroupDescribe type."""
    (described,) = _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups
    if described.error_code != KafkaCode.NONE:
        return {}
    return {m.member_id: m.member_type for m in described.members}


def test_a_static_member_restarted_with_the_consumer_protocol_takes_its_own_place(
    server: ServerProcess, topic: str
) -> None:
    """A librdkafka static member (group.instance.id) restarted with
    group.protocol=consumer replaces its classic self at once, as Kafka
    does, though the classic process sent no LeaveGroup and its session
    has long to run: it reads on from the committed offsets."""
    bootstrap = server.bootstrap
    group = f"static-{topic}"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 4, 5)
    static = {"group.instance.id": "host-x"}
    classic = Consumed(bootstrap, group, topic, "classic", static | {"session.timeout.ms": 60000})
    poll_until([classic], lambda: len(set(classic.read)) == 20, "the classic member read all")
    classic.close()
    produce(bootstrap, topic, 4, 5, first=5)
    modern = Consumed(bootstrap, group, topic, "consumer", static)
    try:
        poll_until(
            [modern],
            lambda: (
                {r for r in classic.read + modern.read}
                == {(p, o) for p in range(4) for o in range(10)}
            ),
            "the consumer-protocol process read on",
        )
        assert modern.assignment == {0, 1, 2, 3}
        # Its one member, of the consumer protocol (member type 1).
        assert list(_consumer_members(bootstrap, group).values()) == [1]
    finally:
        modern.close()


# -- a consumer-protocol member while a classic group forms ---------------------------------

HELD_CONFIG = """
[engine]
group_initial_rebalance_delay_ms = 8000
group_min_session_timeout_ms = 500
group_consumer_heartbeat_interval_ms = 250
group_consumer_min_heartbeat_interval_ms = 250
"""
"""The classic group's first rebalance waits 8 s for more members: held open
long enough for a loaded machine to send the requests the test makes in it
(a few round trips and librdkafka's first heartbeat, under a second at a
load average of 15), and waited out once the test has made them."""


@pytest.fixture(name="held_server")
def _held_server(tmp_path: Path) -> Iterator[ServerProcess]:
    started = start_configured_server(tmp_path, HELD_CONFIG)
    yield started
    started.end_at_teardown(graceful=False)


def test_a_consumer_member_joining_a_classic_group_in_its_first_rebalance_retries(
    held_server: ServerProcess, topic: str
) -> None:
    """A ConsumerGroupHeartbeat that would take over a classic group whose
    first rebalance has chosen no protocol yet is answered
    COORDINATOR_LOAD_IN_PROGRESS, which clients retry (Kafka 4.0 fails it
    with UNKNOWN_SERVER_ERROR, GROUP_ID_NOT_FOUND was answered here: both
    fatal to librdkafka; docs/design/0089). The classic group is left as
    it was, and librdkafka with group.protocol=consumer, joining while the
    rebalance is held open, takes the group over once it has formed and
    reads everything."""
    bootstrap = held_server.bootstrap
    group = f"forming-{topic}"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 4, 5)
    session = timedelta(seconds=3)
    protocols = [{"name": "cooperative-sticky", "metadata": _metadata(topic)}]
    joining: dict[str, Any] = {
        "group_id": group,
        "session_timeout": session,
        "rebalance_timeout": TIMEOUT,
        "protocol_type": "consumer",
        "protocols": protocols,
    }
    required = _ask(bootstrap, ApiKey.JOIN_GROUP, 5, member_id="", **joining)
    assert required.error_code == KafkaCode.MEMBER_ID_REQUIRED
    classic_id = required.member_id
    answers: list[Any] = []

    def classic_member() -> None:
        """Joins (answered when the held rebalance ends), leads and syncs,
        then sends nothing: its session ends after the takeover."""
        joined = _ask(bootstrap, ApiKey.JOIN_GROUP, 5, member_id=classic_id, **joining)
        answers.append(joined)
        everything = encode_assignment(Assignment([TopicPartition(topic, p) for p in range(4)]))
        answers.append(
            _sync(
                bootstrap,
                group,
                classic_id,
                joined.generation_id,
                [{"member_id": classic_id, "assignment": everything}],
            )
        )

    thread = threading.Thread(target=classic_member)
    thread.start()
    try:

        def classic_state() -> str:
            (described,) = _ask(bootstrap, ApiKey.DESCRIBE_GROUPS, 5, groups=[group]).groups
            return str(described.group_state)

        deadline = time.monotonic() + 10
        while classic_state() != "PreparingRebalance":
            assert time.monotonic() < deadline, "the classic member did not join"
            time.sleep(0.02)
        held = _consumer_heartbeat(
            bootstrap, group, "early-member", 0, subscribed_topic_names=[topic], topic_partitions=[]
        )
        assert held.error_code == KafkaCode.COORDINATOR_LOAD_IN_PROGRESS, held.error_message
        assert classic_state() == "PreparingRebalance"

        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                **quiet_librdkafka(),
            }
        )
        consumer.subscribe([topic])
        read: set[tuple[int, int]] = set()
        errors: list[Any] = []
        try:
            deadline = time.monotonic() + TIMEOUT.total_seconds()
            while len(read) < 20:
                assert time.monotonic() < deadline, f"read {len(read)} of 20; errors {errors}"
                message = consumer.poll(0.1)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    errors.append(error)
                    assert not error.fatal() and error.code() != KafkaError._FATAL, error
                    continue
                read.add((message.partition(), message.offset()))
            thread.join(TIMEOUT.total_seconds())
            joined, synced = answers
            # The classic group formed: its rebalance ended with the member leading it.
            assert (joined.error_code, joined.leader) == (KafkaCode.NONE, classic_id)
            # Its SyncGroup races librdkafka's retried heartbeat, both valid: the
            # classic group syncs first, or the takeover comes first and the
            # classic member, behind the consumer group's new epoch, is told to
            # join again.
            assert synced.error_code in (KafkaCode.NONE, KafkaCode.REBALANCE_IN_PROGRESS)
            members = _consumer_members(bootstrap, group)
            assert list(members.values()) == [1]  # the classic member's session ended
        finally:
            consumer.close()
    finally:
        thread.join(TIMEOUT.total_seconds())
