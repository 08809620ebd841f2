"""A static member (group.instance.id) restarting into a consumer group
that is at group.consumer.max.size, with librdkafka against ``tidelog
serve``: its new process, under a new member id, takes its predecessor's
place and is not counted as a new member, whether it speaks the consumer
protocol (ConsumerGroupHeartbeat; its predecessor left with epoch -2) or
the classic one (JoinGroup into the consumer group; a classic static
member sends no LeaveGroup when it stops). A member that is new is still
refused, GROUP_MAX_SIZE_REACHED (docs/design/0102).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaError

from tests.server.configured_servers import server_fixtures
from tests.server.confluent_helpers import create_topic, poll_until
from tests.server.conftest import ServerProcess
from tests.server.test_groups_kip848 import Member, consumer_conf, describe

SERVER_CONFIG = """
[engine]
group_consumer_heartbeat_interval_ms = 250
group_consumer_min_heartbeat_interval_ms = 250
group_consumer_session_timeout_ms = 30000
group_consumer_min_session_timeout_ms = 30000
group_consumer_max_size = 2
"""

server, own_server = server_fixtures(SERVER_CONFIG, "staticfull")


def _members(bootstrap: str, group: str) -> set[str | None]:
    return {m.group_instance_id for m in describe(bootstrap, group).members}


def _refused_as_full(bootstrap: str, group: str, topic: str, others: list[Member]) -> None:
    """A third, new member is refused: the group is full."""
    errors: list[KafkaError] = []
    newcomer = Consumer(consumer_conf(bootstrap, group, error_cb=errors.append))
    newcomer.subscribe([topic])
    try:

        def refused() -> bool:
            message = newcomer.poll(0.05)
            if message is not None and message.error() is not None:
                errors.append(message.error())
            # librdkafka reports it as fatal (_FATAL), naming the broker's error.
            return any(
                e.code() == KafkaError._FATAL and "reached maximum size" in e.str() for e in errors
            )

        poll_until(others, refused, "the newcomer is refused")
    finally:
        newcomer.close()


def test_a_static_consumer_protocol_member_restarts_into_a_full_group(
    server: ServerProcess, topic: str
) -> None:
    bootstrap = server.bootstrap
    group = f"full-{topic}"
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
        first.close()  # leaves with epoch -2: its place, and its partitions, are kept
        first = Member(bootstrap, group, [topic], **{"group.instance.id": "first"})
        poll_until([first, other], lambda: first.assignment == mine, "it comes back")
        assert len(describe(bootstrap, group).members) == 2
        _refused_as_full(bootstrap, group, topic, [first, other])
    finally:
        first.close()
        other.close()


def _classic(bootstrap: str, group: str, **conf: Any) -> dict[str, Any]:
    return consumer_conf(bootstrap, group, **conf) | {
        "group.protocol": "classic",
        # Longer than poll_until waits: the predecessor's session cannot
        # end (and make room) while its new process is awaited.
        "session.timeout.ms": 45_000,
        "max.poll.interval.ms": 45_000,
        "heartbeat.interval.ms": 250,
    }


class ClassicMember(Member):
    def __init__(self, bootstrap: str, group: str, topics: list[str], **conf: Any) -> None:
        self.consumer = Consumer(_classic(bootstrap, group, **conf))
        self.revoked = []
        self.records = []
        self.consumer.subscribe(topics, on_revoke=self._on_revoke)


def test_a_static_classic_member_restarts_into_a_full_consumer_group(
    server: ServerProcess, topic: str
) -> None:
    """The classic member's new process joins with no member id and its
    instance id: it was refused GROUP_MAX_SIZE_REACHED, and librdkafka
    joined again until its predecessor's session ended, though it only
    takes its predecessor's place."""
    bootstrap = server.bootstrap
    group = f"full-classic-{topic}"
    create_topic(bootstrap, topic, 4)
    other = Member(bootstrap, group, [topic])
    first: Member | None = None
    errors: list[KafkaError] = []
    try:
        poll_until([other], lambda: len(other.assignment) == 4, "the consumer group forms")
        first = ClassicMember(bootstrap, group, [topic], **{"group.instance.id": "first"})
        poll_until(
            [first, other],
            lambda: len(first.assignment) == 2 and len(other.assignment) == 2,
            "the partitions split",
        )
        assert _members(bootstrap, group) == {"first", None}
        first.close()  # a classic static member sends no LeaveGroup
        first = ClassicMember(
            bootstrap, group, [topic], **{"group.instance.id": "first", "error_cb": errors.append}
        )
        poll_until([first, other], lambda: len(first.assignment) == 2, "it comes back")
        assert _members(bootstrap, group) == {"first", None}
        assert errors == []
        _refused_as_full(bootstrap, group, topic, [first, other])
    finally:
        if first is not None:
            first.close()
        other.close()
