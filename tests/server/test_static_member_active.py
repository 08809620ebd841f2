"""A static member's new process (group.instance.id, a new member id)
joining a consumer group while its predecessor is still active (member
epoch not -2: it did not leave with a static leave), against ``tidelog
serve``, answered as Kafka's GroupMetadataManager answers it
(getOrMaybeSubscribeStaticConsumerGroupMember):

- by ConsumerGroupHeartbeat, the predecessor of the consumer protocol:
  UNRELEASED_INSTANCE_ID (throwIfInstanceIdIsUnreleased), the
  predecessor keeps its place; librdkafka reports it as fatal;
- by a classic JoinGroup (classicGroupJoinToConsumerGroup): the new
  process takes the place at once, with what it held, and the
  predecessor's next heartbeat naming the instance id is
  FENCED_INSTANCE_ID (throwIfInstanceIdIsFenced: the id now names
  another member id), not UNKNOWN_MEMBER_ID, on which a client joins
  again and takes the place back. (librdkafka names the instance id only
  when it joins: its next heartbeat is UNKNOWN_MEMBER_ID from Kafka too.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from confluent_kafka import KafkaError
from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.consumer_protocol import Subscription, decode_assignment, encode_subscription
from engine.protocol.kafka_code import KafkaCode
from tests.server.configured_servers import server_fixtures
from tests.server.confluent_helpers import create_topic, poll_until
from tests.server.conftest import ServerProcess
from tests.server.test_groups_kip848 import Member, describe
from tests.server.wire import Wire, build

SERVER_CONFIG = """
[engine]
group_initial_rebalance_delay_ms = 0
group_consumer_heartbeat_interval_ms = 250
group_consumer_min_heartbeat_interval_ms = 250
group_consumer_session_timeout_ms = 45000
"""

server, own_server = server_fixtures(SERVER_CONFIG, "staticactive")

TIMEOUT = timedelta(seconds=45)
"""Sessions and rebalance timeouts: longer than any test waits, so that no
predecessor's session ends while its successor is awaited."""


def _ask(bootstrap: str, key: ApiKey, version: int, **values: Any) -> Any:
    with Wire(bootstrap) as wire:
        return wire.request(build(load_request_schema(key, version), **values))


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


def _active_static_member(bootstrap: str, group: str, topic: str) -> int:
    """Member "first" (instance "host-x", the consumer protocol) joins and
    holds all 4 partitions: its member epoch."""
    joined = _consumer_heartbeat(
        bootstrap,
        group,
        "first",
        0,
        instance_id="host-x",
        subscribed_topic_names=[topic],
        topic_partitions=[],
    )
    assert joined.error_code == KafkaCode.NONE, joined.error_message
    (partitions,) = joined.assignment.topic_partitions
    assert set(partitions.partitions) == {0, 1, 2, 3}
    steady = _consumer_heartbeat(
        bootstrap,
        group,
        "first",
        joined.member_epoch,
        instance_id="host-x",
        topic_partitions=[{"topic_id": partitions.topic_id, "partitions": [0, 1, 2, 3]}],
    )
    assert steady.error_code == KafkaCode.NONE, steady.error_message
    return int(steady.member_epoch)


def _members(bootstrap: str, group: str) -> dict[str, int]:
    """The consumer group's members by id: their ConsumerGroupDescribe type
    (0 classic, 1 the consumer protocol)."""
    (described,) = _ask(bootstrap, ApiKey.CONSUMER_GROUP_DESCRIBE, 1, group_ids=[group]).groups
    assert described.error_code == KafkaCode.NONE
    return {m.member_id: m.member_type for m in described.members}


def test_a_heartbeat_join_beside_an_active_static_member_is_unreleased_instance_id(
    server: ServerProcess, topic: str
) -> None:
    bootstrap = server.bootstrap
    group = f"unreleased-{topic}"
    create_topic(bootstrap, topic, 4)
    epoch = _active_static_member(bootstrap, group, topic)
    refused = _consumer_heartbeat(
        bootstrap,
        group,
        "second",
        0,
        instance_id="host-x",
        subscribed_topic_names=[topic],
        topic_partitions=[],
    )
    assert refused.error_code == KafkaCode.UNRELEASED_INSTANCE_ID
    assert _members(bootstrap, group) == {"first": 1}
    kept = _consumer_heartbeat(bootstrap, group, "first", epoch, instance_id="host-x")
    assert (kept.error_code, kept.member_epoch) == (KafkaCode.NONE, epoch)


def test_a_classic_join_replaces_an_active_static_member_which_is_then_fenced(
    server: ServerProcess, topic: str
) -> None:
    bootstrap = server.bootstrap
    group = f"replaced-{topic}"
    create_topic(bootstrap, topic, 4)
    epoch = _active_static_member(bootstrap, group, topic)
    # A second member of the consumer protocol keeps the group a consumer
    # group once "first" is replaced by a classic process (replacing the
    # last one hands the group to a classic group, docs/groups.md).
    other = _consumer_heartbeat(
        bootstrap, group, "other", 0, subscribed_topic_names=[topic], topic_partitions=[]
    )
    assert other.error_code == KafkaCode.NONE, other.error_message
    joined = _ask(
        bootstrap,
        ApiKey.JOIN_GROUP,
        9,
        group_id=group,
        session_timeout=TIMEOUT,
        rebalance_timeout=TIMEOUT,
        member_id="",
        group_instance_id="host-x",
        protocol_type="consumer",
        protocols=[
            {"name": "range", "metadata": encode_subscription(Subscription([topic], None, []), 1)}
        ],
    )
    assert joined.error_code == KafkaCode.NONE
    assert joined.member_id not in ("", "first")
    assert _members(bootstrap, group) == {joined.member_id: 0, "other": 1}
    synced = _ask(
        bootstrap,
        ApiKey.SYNC_GROUP,
        5,
        group_id=group,
        generation_id=joined.generation_id,
        member_id=joined.member_id,
        group_instance_id="host-x",
        protocol_type="consumer",
        protocol_name="range",
        assignments=[],
    )
    assert synced.error_code == KafkaCode.NONE
    # Its share of what its predecessor held (the rest goes to "other").
    kept = {tp.partition for tp in decode_assignment(synced.assignment).partitions}
    assert len(kept) == 2 and kept <= {0, 1, 2, 3}
    # The predecessor, still running, is fenced: before this, UNKNOWN_MEMBER_ID.
    fenced = _consumer_heartbeat(bootstrap, group, "first", epoch, instance_id="host-x")
    assert fenced.error_code == KafkaCode.FENCED_INSTANCE_ID
    rejoin = _consumer_heartbeat(
        bootstrap,
        group,
        "first",
        0,
        instance_id="host-x",
        subscribed_topic_names=[topic],
        topic_partitions=[],
    )
    # A consumer-protocol process joining again replaces a classic holder
    # at once (a classic static member never sends a leave), as Kafka does.
    assert rejoin.error_code == KafkaCode.NONE
    assert _members(bootstrap, group) == {"first": 1, "other": 1}


class Watched:
    """A librdkafka member polled for the errors it is told of (a fatal
    error comes back from poll)."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.errors: list[KafkaError] = []

    @property
    def assignment(self) -> set[int]:
        return self.member.assignment

    def poll(self) -> None:
        message = self.member.consumer.poll(0.05)
        if message is not None and message.error() is not None:
            self.errors.append(message.error())

    def fatal(self, code: int) -> bool:
        """It was told a fatal error naming the broker's ``code``."""
        named = KafkaError(code).str()
        return any(e.code() == KafkaError._FATAL and named in e.str() for e in self.errors)

    def close(self) -> None:
        self.member.close()


def test_librdkafka_restarted_beside_its_active_predecessor(
    server: ServerProcess, topic: str
) -> None:
    """A static consumer of the consumer protocol started again while its
    predecessor's session is still open is refused, fatally
    (UNRELEASED_INSTANCE_ID); the predecessor keeps its partitions."""
    bootstrap = server.bootstrap
    group = f"restarted-{topic}"
    create_topic(bootstrap, topic, 4)
    first = Watched(Member(bootstrap, group, [topic], **{"group.instance.id": "host-x"}))
    second: Watched | None = None
    try:
        poll_until([first], lambda: len(first.assignment) == 4, "the first holds everything")
        second = Watched(Member(bootstrap, group, [topic], **{"group.instance.id": "host-x"}))
        refused = second
        poll_until(
            [first, refused],
            lambda: refused.fatal(KafkaError.UNRELEASED_INSTANCE_ID),
            "the second is refused",
        )
        assert first.assignment == {0, 1, 2, 3}
        assert first.errors == []
        assert refused.assignment == set()
        assert [m.group_instance_id for m in describe(bootstrap, group).members] == ["host-x"]
    finally:
        if second is not None:
            second.close()
        first.close()
