"""A DescribeTopicPartitions about every topic of a large engine does not
hold up the server: it is answered on the admin thread, as a Metadata
request about as many topics is, so another connection's request is
answered while it is built. The lookup of one topic's shape is held (a
fault: a real lookup is only slow, never on cue) while an ApiVersions on
another connection must be answered. A real engine, its wire server in
this process."""

from __future__ import annotations

import select
import threading
from pathlib import Path

import pytest

import engine
from engine.internal_topics import INTERNAL_TOPICS
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from engine.server.handlers.metadata import MANY_TOPICS
from engine.types import NewTopic
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build, response_schema_for

TIMEOUT = 60.0
HELD_S = 10.0
"""How long the held lookup waits at most: on the event loop, it holds
every other connection's answer that long."""
TOPICS = [f"many-{i:05d}" for i in range(MANY_TOPICS + 1)]
HELD_TOPIC = TOPICS[0]


def answered(wire: Wire) -> bool:
    """Whether the server has sent anything on ``wire`` yet (without waiting)."""
    readable, _, _ = select.select([wire.sock], [], [], 0)
    return bool(readable)


def test_every_topic_of_a_large_engine_is_described_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.open(tmp_path / "node") as opened:
        opened.create_topics([NewTopic(name, 1) for name in TOPICS])
        looking, release = threading.Event(), threading.Event()
        shape_of = opened.topic_shape

        def held_shape(name: str) -> tuple[bytes, int]:
            if name == HELD_TOPIC:
                looking.set()
                release.wait(HELD_S)
            return shape_of(name)

        monkeypatch.setattr(opened, "topic_shape", held_shape)
        server = InProcessServer(opened)
        try:
            with (
                Wire(server.bootstrap, timeout=TIMEOUT) as slow,
                Wire(server.bootstrap, timeout=TIMEOUT) as other,
            ):
                request = build(
                    request_schema(ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0),
                    topics=[],
                    response_partition_limit=2000,
                    cursor=None,
                )
                slow.send(request)
                assert looking.wait(TIMEOUT), "the page never looked its first topic up"
                # The lookup is now held.
                versions = other.request(build(request_schema(ApiKey.API_VERSIONS, 3)))
                assert versions.error_code == KafkaCode.NONE
                assert not answered(slow), "ApiVersions waited for the page"
                release.set()
                _, page = slow.receive(response_schema_for(request))
            described = [t.name for t in page.topics if t.error_code == KafkaCode.NONE]
            assert described == sorted([*TOPICS, *INTERNAL_TOPICS])
            assert page.next_cursor is None
        finally:
            release.set()
            server.stop()
