"""DeleteTopics entries Kafka's ControllerApis refuses before it deletes
anything: neither a name nor an id, both, a name or an id given twice, a
name and the id of the same topic. Each is answered INVALID_REQUEST and
its topic is left in place; the other entries are carried out."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, build

INVALID_REQUEST = KafkaCode.INVALID_REQUEST
MAPPED = "The provided topic name maps to an ID that was already supplied."


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with engine.open(tmp_path / "node") as opened:
        for name in ("named-twice", "id-twice", "both", "name-and-id", "gone"):
            opened.create_topic(name, 1)
        running = InProcessServer(opened)
        try:
            yield opened, running
        finally:
            running.stop()


def _delete(bootstrap: str, entries: list[tuple[str | None, uuid.UUID | None]]) -> list[Any]:
    request = build(
        request_schema(ApiKey.DELETE_TOPICS, 6),
        topics=[{"name": name, "topic_id": topic_id} for name, topic_id in entries],
        timeout=datetime.timedelta(seconds=30),
    )
    with Wire(bootstrap) as wire:
        return sorted(
            (
                (r.name or "", r.error_code, r.error_message)
                for r in wire.request(request).responses
            ),
            key=lambda r: (r[0], r[2] or ""),
        )


def test_entries_kafka_refuses_are_answered_invalid_request_and_delete_nothing(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = served

    def topic_id(name: str) -> uuid.UUID:
        return uuid.UUID(bytes=opened.topic_id(name))

    answers = _delete(
        server.bootstrap,
        [
            (None, None),
            ("named-twice", None),
            ("named-twice", None),
            (None, topic_id("id-twice")),
            (None, topic_id("id-twice")),
            ("both", topic_id("both")),
            ("name-and-id", None),
            (None, topic_id("name-and-id")),
            ("gone", None),
        ],
    )
    assert answers == [
        ("", INVALID_REQUEST, "Duplicate topic id."),
        ("", INVALID_REQUEST, "Neither topic name nor id were specified."),
        ("both", INVALID_REQUEST, "You may not specify both topic name and topic id."),
        ("gone", KafkaCode.NONE, None),
        ("name-and-id", INVALID_REQUEST, MAPPED),  # the entry by id unanswered, as in Kafka
        ("named-twice", INVALID_REQUEST, "Duplicate topic name."),
    ]
    assert sorted(opened.list_topics()) == ["both", "id-twice", "name-and-id", "named-twice"]


def test_a_name_beside_its_topics_id_is_answered_once_with_the_id(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    """Kafka's ControllerApis.deleteTopics answers the entry by name, with
    the topic's id, and drops the entry by id from the answer."""
    opened, server = served
    given_id = uuid.UUID(bytes=opened.topic_id("name-and-id"))
    request = build(
        request_schema(ApiKey.DELETE_TOPICS, 6),
        topics=[{"name": "name-and-id", "topic_id": None}, {"name": None, "topic_id": given_id}],
        timeout=datetime.timedelta(seconds=30),
    )
    with Wire(server.bootstrap) as wire:
        responses = wire.request(request).responses
    assert [(r.name, r.topic_id, r.error_code) for r in responses] == [
        ("name-and-id", given_id, INVALID_REQUEST)
    ]
    assert "name-and-id" in opened.list_topics()
