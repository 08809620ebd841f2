"""An embedded group member whose group's write the store fails: the
coordinator answers NOT_COORDINATOR, which Kafka's consumer takes as its
coordinator gone for now (it marks it unknown, finds it again and sends
the request again). The member sends its join again after a backoff,
poll raising nothing meanwhile, and keeps its member id when the group
rebuilt after the failed write still has it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import engine
from engine.client.consumer import Consumer
from engine.types import TopicPartition
from s3stream import StoreFailed
from tests.engine.conftest import EngineFactory
from tests.engine.test_group_member_no_room import (
    MEMBER,
    RefusedGroupWrites,
    _read,
    three_records,
)

TIMEOUT = 20.0


def store_failed(stream_id: int) -> BaseException:
    return StoreFailed(OSError(5, f"stream {stream_id}: the object store is down"))


@pytest.fixture
def e(engine_factory: EngineFactory) -> engine.Engine:
    return three_records(engine_factory)


@pytest.fixture
def consumer(e: engine.Engine) -> Iterator[Consumer]:
    made = e.consumer("t", **MEMBER)
    yield made
    made.close()


def test_a_member_whose_rebalance_write_fails_rejoins_with_its_member_id_once_healed(
    e: engine.Engine, consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stable member rejoins (its topic grew); the group's writes fail
    (NOT_COORDINATOR) and are answered so several times, poll raising
    nothing; once the store takes writes again the member is in the group
    with the member id it had, and owns the new partition too."""
    assert _read(consumer, 3) == [b"a", b"b", b"c"]
    before = consumer.group_metadata()
    failing = RefusedGroupWrites(monkeypatch, e, "group", store_failed)
    e.create_partitions("t", 2)
    deadline = time.monotonic() + TIMEOUT
    while failing.refused < 3:  # failed, then sent again: poll raises nothing
        assert time.monotonic() < deadline, f"failed {failing.refused} times"
        assert consumer.poll(timeout=0.05) == []
    failing.heal()
    while consumer.assignment() != {TopicPartition("t", 0), TopicPartition("t", 1)}:
        assert time.monotonic() < deadline, f"assigned {consumer.assignment()}"
        consumer.poll(timeout=0.05)
    after = consumer.group_metadata()
    assert after.member_id == before.member_id
    assert after.generation_id > before.generation_id


def test_a_new_member_whose_join_fails_joins_once_healed(
    e: engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first join's group write fails: the member joins again after a
    backoff rather than raise NotCoordinator from poll for good."""
    failing = RefusedGroupWrites(monkeypatch, e, "group", store_failed)
    consumer = e.consumer("t", **MEMBER)
    try:
        deadline = time.monotonic() + TIMEOUT
        while failing.refused < 2:
            assert time.monotonic() < deadline, f"failed {failing.refused} times"
            assert consumer.poll(timeout=0.05) == []
        failing.heal()
        assert _read(consumer, 3) == [b"a", b"b", b"c"]
        assert consumer.assignment() == {TopicPartition("t", 0)}
    finally:
        consumer.close()
