"""The one-partition Produce path (handlers/produce.py's _produce_one)
makes its create check for a topic deleted under its append alone: a
Produce to a topic that stands makes no object for the check (a partial
of authorize.check_create_topic was made for every request and thrown
away), and one whose topic is deleted right after the path looked its
partition up is checked with the request's own context before the
append creates the topic again (Engine.submit_then_to)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
import native
from engine.clock import ManualClock
from engine.partition import Partition
from engine.protocol.apis import ApiKey
from engine.protocol.codec import Encoded
from engine.protocol.frames import RequestHeader
from engine.protocol.produce import PartitionData, ProduceRequest, TopicData
from engine.server import authorize
from engine.server.config import ServerConfig
from engine.server.context import Broker, RequestContext, ServerState
from engine.server.handlers import produce
from native import RecordSpec

HEADER = RequestHeader(ApiKey.PRODUCE, 9, 17, "client", 0)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ServerState]:
    opened = engine.open(
        tmp_path / "node",
        config=engine.EngineConfig(auto_create_topics=True),
        clock=ManualClock(),
    )
    try:
        opened.create_topic("t", 1)
        yield ServerState(opened, ServerConfig(), "cluster", Broker(0, "127.0.0.1", 9092))
    finally:
        opened.close()


def _request() -> ProduceRequest:
    batch = native.encode_batch([RecordSpec(1_700_000_000_000, None, b"v", ())])
    return ProduceRequest(None, -1, 30_000, [TopicData("t", [PartitionData(0, memoryview(batch))])])


def _produced(context: RequestContext) -> Any:
    async def answer() -> Any:
        response = produce.handle_produce(context, _request())
        assert isinstance(response, asyncio.Future)  # the one-partition path's own answer
        return await asyncio.wait_for(response, 30)

    return asyncio.run(answer())


def _accepted(answer: Any) -> bool:
    """Whether the answer is an accepted append's: written whole from its
    topic's template (an error is answered through the schema, a dict)."""
    return isinstance(answer, Encoded)


def test_a_produce_to_a_standing_topic_makes_no_create_check(
    state: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    partials: list[tuple[Any, ...]] = []
    checks: list[str] = []

    def counted_partial(*args: Any, **keywords: Any) -> Any:
        partials.append(args)
        return functools.partial(*args, **keywords)

    check = authorize.check_create_topic
    monkeypatch.setattr(produce, "partial", counted_partial)

    def counted_check(context: RequestContext, name: str) -> None:
        checks.append(name)
        check(context, name)

    monkeypatch.setattr(authorize, "check_create_topic", counted_check)
    answer = _produced(RequestContext(state, HEADER))
    assert _accepted(answer)
    assert state.engine.partition("t", 0).high_watermark == 1
    assert partials == []
    assert checks == []


def test_a_topic_deleted_under_the_append_is_checked_with_the_requests_context(
    state: ServerState, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = state.engine
    looked_up = opened.partition
    deleted: list[str] = []

    def found_then_deleted(name: str, index: int, **options: Any) -> Partition:
        found = looked_up(name, index, **options)
        if not deleted:  # the race with a DeleteTopics no client can time
            deleted.append(name)
            opened.delete_topic(name)
        return found

    asked: list[tuple[RequestContext, str]] = []
    check = authorize.check_create_topic

    def recorded_check(context: RequestContext, name: str) -> None:
        asked.append((context, name))
        check(context, name)

    monkeypatch.setattr(opened, "partition", found_then_deleted)
    monkeypatch.setattr(authorize, "check_create_topic", recorded_check)
    context = RequestContext(state, HEADER)
    answer = _produced(context)
    assert deleted == ["t"]
    assert asked == [(context, "t")]
    # Created again by the append, which went to the new topic's partition.
    assert _accepted(answer)
    assert "t" in opened.list_topics()
    assert looked_up("t", 0).high_watermark == 1
